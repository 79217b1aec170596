"""Tiny models and projects built from a config (no downloads), shared by the tests.

A module of its own, not conftest.py: several test folders have a conftest, and
`from conftest import …` would pick whichever was imported first."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = ["the", "a", "of", "to", "in", "and", "is", "on", "for", "with", "market", "shares", "profit", "bank", "economy", "film", "music", "star", "award", "show", "election", "minister", "party", "vote", "government", "match", "team", "goal", "cup", "player", "phone", "software", "internet", "computer", "games", "business", "entertainment", "politics", "sports", "tech", "input", "answer", "classify", "topic", "article", "news", "one", "word"]


def build_tiny_model(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer trained on a few words, saved as safetensors."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([" ".join(WORDS)] * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    return folder


TOPICS = {
    "business": "market shares profit bank economy",
    "sports": "match team goal cup player",
    "tech": "phone software internet computer games",
}


def write_tiny_project(folder: Path, model_dir: Path, n_per_label: int = 20, extra: str = "") -> Path:
    """A classification project over three topics whose words the tiny tokenizer knows."""
    import random

    rng = random.Random(0)
    rows = []
    for label, words in TOPICS.items():
        vocab = words.split()
        for i in range(n_per_label):
            text = " ".join(rng.choice(vocab) for _ in range(6))
            rows.append({"id": f"{label}-{i}", "text": f"the {text}", "label": label})
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tunewise.yaml").write_text(
        f"""name: tiny
task:
  type: classification
  input_field: text
  target_field: label
  labels: [business, sports, tech]
  instruction: classify the topic
data:
  files: [data/rows.jsonl]
  split: {{train: 0.6, val: 0.2, test: 0.2}}
  seed: 1
model:
  base: {model_dir}
rungs: [zero-shot, lora]
train:
  epochs: 1
  batch_size: 4
  learning_rate: 0.01
  max_length: 64
  eval_steps: 2
  lora: {{r: 4, alpha: 8, dropout: 0.0}}
eval:
  batch_size: 8
  bootstrap: 200
{extra}"""
    )
    return folder


def build_tiny_encoder(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A 2-layer BERT with a WordPiece vocab of the tiny words: stands in for MiniLM in unit tests."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS), *"abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 ignores vocab_file here; a vocab dict works.
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=hidden * 2, max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder



"""Write a merged Llama-family model (SmolLM2, Llama, Mistral-style blocks) as an F32 GGUF file.

Written with the `gguf` package the way llama.cpp's converter writes Llama: hyperparameters under
``llama.*``, the byte-level BPE vocabulary, merges, special ids and the chat template under
``tokenizer.*``, and q/k projections permuted into llama.cpp's rotary layout (transformers undoes
that permutation when it reads the file back). F32 keeps the round trip exact; quantise afterwards
with llama.cpp's ``llama-quantize`` if you want a smaller file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tunewise.models.load import ModelError

LLAMA_FAMILY = {"llama", "mistral"}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_architecture(config) -> None:
    if config.model_type not in LLAMA_FAMILY:
        raise ModelError(f"GGUF export supports the Llama family ({', '.join(sorted(LLAMA_FAMILY))}); this model is "
                         f"'{config.model_type}': export --format safetensors and convert with llama.cpp's "
                         "convert_hf_to_gguf.py")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ModelError("GGUF export: rope scaling is not written by this exporter; use llama.cpp's converter")


def _rope_theta(cfg) -> float:
    rope = getattr(cfg, "rope_parameters", None) or {}
    return float(rope.get("rope_theta") or getattr(cfg, "rope_theta", None) or 10000.0)


def _vocab(folder: Path, n_vocab: int):
    import gguf

    tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    if tok["model"]["type"] != "BPE":
        raise ModelError(f"GGUF export: tokenizer model {tok['model']['type']} is not byte-level BPE")
    vocab = dict(tok["model"]["vocab"])
    special = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    vocab.update(special)
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:  # the embedding is wider than the vocabulary: padding rows
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if by_id[i] in special else gguf.TokenType.NORMAL)
    return tokens, types


def write_gguf(model, folder: Path, out: Path, name: str) -> Path:
    """``model`` (merged, fp32) with the tokenizer files in ``folder`` -> ``out`` (.gguf)."""
    import gguf

    cfg = model.config
    check_architecture(cfg)
    arch = gguf.MODEL_ARCH.LLAMA
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_rope_theta(cfg))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    tokens, types = _vocab(Path(folder), cfg.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(Path(folder), load_merges=True, n_vocab=len(tokens))
    special.add_to_gguf(writer, quiet=True)
    writer.add_add_bos_token(False)

    names = gguf.TensorNameMap(arch, cfg.num_hidden_layers)
    state = model.state_dict()
    tied = getattr(cfg, "tie_word_embeddings", False)
    for key, tensor in state.items():
        if key == "lm_head.weight" and tied:
            continue  # tied: llama.cpp and transformers reuse token_embd
        target = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ModelError(f"GGUF export: no GGUF name for tensor {key}")
        data = tensor.detach().float().cpu().numpy()
        if key.endswith("self_attn.q_proj.weight"):
            data = _permute(data, cfg.num_attention_heads)
        elif key.endswith("self_attn.k_proj.weight"):
            data = _permute(data, cfg.num_key_value_heads)
        writer.add_tensor(target, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)

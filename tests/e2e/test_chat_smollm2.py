"""Native chat rendering with the real bundled SmolLM2 tokenizer and its own template (no model run)."""

import json

import pytest

from tunewise.config import load_config
from tunewise.data.load import load_file
from tunewise.models.chat import IGNORE, PromptBuilder
from tunewise.models.load import load_tokenizer, resolve

pytestmark = pytest.mark.e2e

ROWS = [
    [{"role": "system", "content": "You are the shop's assistant."},
     {"role": "user", "content": [{"type": "text", "text": "Do you ship to Spain?"}]},
     {"role": "assistant", "content": "Yes, in 3 business days."},
     {"role": "user", "content": "And to Norway?"},
     {"role": "assistant", "content": "Norway takes 5 business days."}],
    [{"role": "user", "content": "Is the tent in stock?"},
     {"role": "assistant", "content": None, "tool_calls": [
         {"id": "c1", "type": "function", "function": {"name": "stock", "arguments": "{\"item\": \"tent\"}"}}]},
     {"role": "tool", "tool_call_id": "c1", "name": "stock", "content": "3 left"},
     {"role": "assistant", "content": "Yes, 3 tents are left."}],
]


def test_smollm2_template_renders_turns_and_training_matches_the_full_rendering(tmp_path):
    tok = load_tokenizer(resolve("smollm2-135m-instruct"))
    builder = PromptBuilder(load_config("examples/support-chat").task, tok)
    assert builder.end_of_answer == "<|im_end|>"
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in ROWS))
    loaded = load_file(path, schema="chat")
    assert not loaded.rejects
    for rec in loaded.records:
        ids, labels = builder.train_ids(rec)
        turns = builder.chat_messages(rec.meta["messages"])
        # Pieced together turn by turn, the ids equal the tokenized rendering of the whole chat.
        whole = tok(builder.render(turns, generation=False), add_special_tokens=False)["input_ids"]
        assert whole[: len(ids)] == ids and tok.decode(whole[len(ids):]).strip() == ""
        prompt = builder.prompt_ids(rec)
        assert ids[: len(prompt)] == prompt
        trained = tok.decode([t for t in labels if t != IGNORE])
        assert trained.endswith(rec.target + "<|im_end|>")
        assert "<|im_start|>" not in trained and "user" not in trained

"""Native chat: OpenAI-format rows render as real turns through the model's own template, the loss
falls on assistant turns only, the template's end of turn (not the EOS) closes answers and stops
generation, and content-part lists and tool-call turns load."""

from __future__ import annotations

import json

import pytest
import torch

from tunewise.config import load_config
from tunewise.data.load import DataError, load_file
from tunewise.models.chat import PromptBuilder, TemplateError
from tunewise.models.load import load, load_tokenizer
from tunewise.train.sft import IGNORE, PadCollator, check_loss_mask, tokenize_examples

SYSTEM = {"role": "system", "content": "you are the shop"}
MULTI = [SYSTEM, {"role": "user", "content": "the market"}, {"role": "assistant", "content": "the bank"},
         {"role": "user", "content": "the match"}, {"role": "assistant", "content": "the goal"}]


def _load(tmp_path, *rows) -> list:
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "messages": m}) + "\n" for i, m in enumerate(rows)))
    return load_file(path, schema="chat")


@pytest.fixture
def tok(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture
def builder(tiny_project, tok):
    return PromptBuilder(load_config(tiny_project).task, tok)


def _trained_text(tok, row) -> str:
    return tok.decode([t for t in row["labels"] if t != IGNORE])


def test_chat_rows_train_as_real_turns_with_loss_on_every_assistant_turn(tmp_path, builder, tok):
    loaded = _load(tmp_path, MULTI)
    (row,) = tokenize_examples(loaded.records, builder, 128)
    text = tok.decode(row["input_ids"])
    assert "<|im_start|>system\nyou are the shop\n\nclassify the topic<|im_end|>" in text
    assert "<|im_start|>user\nthe market<|im_end|>\n<|im_start|>assistant\nthe bank<|im_end|>" in text
    assert "<|im_start|>user\nthe match<|im_end|>\n<|im_start|>assistant\nthe goal<|im_end|>" in text
    assert "user: " not in text  # no flattened transcript
    assert _trained_text(tok, row) == "the bank<|im_end|>the goal<|im_end|>"


def test_each_trained_turn_sees_exactly_the_evaluation_prompt(tmp_path, builder):
    (rec,) = _load(tmp_path, MULTI).records
    ids, labels = builder.train_ids(rec)
    prompt = builder.prompt_ids(rec)  # what evaluation and serving feed the model
    assert ids[: len(prompt)] == prompt and labels[len(prompt) - 1] == IGNORE and labels[len(prompt)] != IGNORE
    assert rec.target == "the goal"
    first_turn = type(rec)(id="x", input="", target=None, meta={"messages": MULTI[:2]})
    first_prompt = builder.prompt_ids(first_turn)
    assert ids[: len(first_prompt)] == first_prompt and labels[len(first_prompt)] != IGNORE


def test_weight_zero_assistant_turn_is_context_only(tmp_path, builder, tok):
    weighted = [dict(m) for m in MULTI]
    weighted[2]["weight"] = 0
    (row,) = tokenize_examples(_load(tmp_path, weighted).records, builder, 128)
    assert _trained_text(tok, row) == "the goal<|im_end|>"


def _eot_tokenizer(tok):
    """The tiny tokenizer with a template closing turns with <|end|>, a token that is not the EOS."""
    tok.add_special_tokens({"additional_special_tokens": ["<|end|>"]})
    tok.chat_template = tok.chat_template.replace("'<|im_end|>'", "'<|end|>'")
    assert tok.eos_token == "<|im_end|>"
    return tok


def test_end_of_turn_that_is_not_eos_closes_answers_and_stops_generation(tmp_path, tiny_project, tok, monkeypatch):
    tok = _eot_tokenizer(tok)
    builder = PromptBuilder(load_config(tiny_project).task, tok)
    end = tok.convert_tokens_to_ids("<|end|>")
    assert builder.end_of_answer == "<|end|>" and builder.end_of_turn_id == end
    rows = tokenize_examples(_load(tmp_path, MULTI).records, builder, 128)
    assert _trained_text(tok, rows[0]) == "the bank<|end|>the goal<|end|>"
    check_loss_mask(PadCollator(tok.pad_token_id)(rows), builder.end_of_turn_id)

    from tunewise.rungs.base import LabelScorer, RunContext

    class Stub:  # emits an answer, the end of turn, then junk: the junk must be cut
        config = None

        def eval(self):
            return self

        def generate(self, input_ids, **kw):
            tail = tok("the bank", add_special_tokens=False)["input_ids"] + [end] + tok("the goal")["input_ids"]
            return torch.cat([input_ids, torch.tensor([tail] * len(input_ids))], dim=1)

    config = load_config(tiny_project, ["task.type=generation"])
    monkeypatch.setattr("tunewise.rungs.base.model_shape", lambda model: (1, 1, 1))  # the stub has no weights
    monkeypatch.setattr("tunewise.rungs.base.kv_bytes_per_position", lambda model: 1)  # ... nor a config
    rung = LabelScorer(config, RunContext(tmp_path, tmp_path, base=(Stub(), tok, None)))
    (pred,) = rung.generate(_load(tmp_path, MULTI).records)
    assert pred.output == "the bank"


def test_template_without_an_end_of_turn_token_is_refused(tiny_project, tok):
    tok.chat_template = tok.chat_template.replace("'<|im_end|>'", "'\\n\\n'")
    with pytest.raises(TemplateError, match="never learn to stop"):
        PromptBuilder(load_config(tiny_project).task, tok).check_template()


def test_content_part_lists_load_and_image_parts_refuse_the_file_naming_them(tmp_path):
    parts = [{"role": "user", "content": [{"type": "text", "text": "the market "}, {"type": "text", "text": "news"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "business"}]}]
    image = [{"role": "user", "content": [{"type": "text", "text": "what is it"},
                                          {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]},
             {"role": "assistant", "content": "a tent"}]
    (rec,) = _load(tmp_path, parts).records
    assert rec.meta["messages"][0]["content"] == "the market news" and rec.target == "business"
    with pytest.raises(DataError, match=r"chats.jsonl: multimodal rows \('image, audio or video content parts' in 1 of 2"):
        _load(tmp_path, parts, image)


TOOL_CHAT = [
    {"role": "user", "content": "the phone"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"item\": \"phone\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "name": "lookup", "content": "in stock"},
    {"role": "assistant", "content": "the phone is in stock"},
]


def test_tool_call_turns_load_and_render_as_json_text_without_tool_support(tmp_path, builder, tok):
    loaded = _load(tmp_path, TOOL_CHAT, TOOL_CHAT[:2])
    assert not loaded.rejects
    rec, call_only = loaded.records
    assert call_only.target == '{"tool_calls": [{"name": "lookup", "arguments": {"item": "phone"}}]}'
    (row,) = tokenize_examples([rec], builder, 256)
    text = tok.decode(row["input_ids"])
    call = '{"tool_calls": [{"name": "lookup", "arguments": {"item": "phone"}}]}'
    assert f"<|im_start|>assistant\n{call}<|im_end|>" in text
    assert "<|im_start|>user\nTool result (lookup): in stock<|im_end|>" in text
    assert _trained_text(tok, row).endswith("<|im_end|>the phone is in stock<|im_end|>")


def test_tool_calls_go_to_a_template_that_supports_them(tmp_path, tiny_project, tok):
    tok.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] }}"
        "{% for c in m.get('tool_calls', []) %}<call>{{ c.function.name }} {{ c.function.arguments | tojson }}</call>"
        "{% endfor %}{{ '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    builder = PromptBuilder(load_config(tiny_project).task, tok)
    (rec,) = _load(tmp_path, TOOL_CHAT).records
    text = tok.decode(builder.train_ids(rec)[0])
    assert '<|im_start|>assistant\n<call>lookup {"item": "phone"}</call><|im_end|>' in text
    assert "<|im_start|>tool\nin stock<|im_end|>" in text


@pytest.mark.parametrize(("messages", "reason"), [
    ([{"role": "user", "content": "u"}, {"role": "assistant", "content": None}],
     "messages[1].content must be a string, got null"),
    ([{"role": "user", "content": "u"}, {"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}],
     "messages[1].tool_calls[0].function.name must be a non-empty string"),
    ([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "v"}],
     "messages[2]: a chat must end with an assistant turn (the answer to learn and to score)"),
])
def test_malformed_chat_rows_name_the_field(tmp_path, messages, reason):
    loaded = _load(tmp_path, messages)
    assert [r.reason for r in loaded.rejects] == [reason]


def test_a_request_to_serve_renders_like_the_evaluation_prompt(tmp_path, builder):
    from tunewise.core import Record
    from tunewise.data.load import check_messages

    (rec,) = _load(tmp_path, MULTI).records
    request = check_messages(MULTI[:-1])  # what a client sends: the chat up to its question
    served = Record(id="req", input="", target=None, meta={"messages": request})
    assert builder.prompt_ids(served) == builder.prompt_ids(rec)
    with pytest.raises(ValueError, match=r"messages\[1\]\.content\[0\]\.type must be 'text'"):
        check_messages([SYSTEM, {"role": "user", "content": [{"type": "input_audio"}]}])


def test_redaction_reaches_tool_call_arguments(tmp_path):
    from tunewise.data.prepare import handle_pii

    chat = [dict(m) for m in TOOL_CHAT]
    chat[1] = {**chat[1], "tool_calls": [{"id": "c1", "type": "function", "function": {
        "name": "lookup", "arguments": "{\"email\": \"ann.lee@example.com\"}"}}]}
    chat[2] = {**chat[2], "content": "mail ann.lee@example.com"}
    (rec,) = _load(tmp_path, chat).records
    (kept,), _, _ = handle_pii([rec], "redact")
    rendered = json.dumps(kept.meta["messages"])
    assert "ann.lee" not in rendered and "[EMAIL]" in rendered


def test_a_template_that_refuses_a_turn_is_one_clear_error(tmp_path, tiny_project, tok):
    tok.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                         "{% endif %}" + tok.chat_template)
    builder = PromptBuilder(load_config(tiny_project).task, tok)
    (rec,) = _load(tmp_path, MULTI).records
    refused = r"refuses these turns \(system, user, assistant, user\): System role not supported"
    with pytest.raises(TemplateError, match=refused):
        builder.prompt_ids(rec)


def test_multi_turn_rows_keep_sparse_logits_and_padding_free_exact(tmp_path, builder, tiny_model_dir):
    from tunewise.train.sft import PackedCollator, sparse_causal_loss

    model = load(str(tiny_model_dir))[0]
    rows = tokenize_examples(_load(tmp_path, MULTI, TOOL_CHAT, MULTI[:3]).records, builder, 256)
    padded = PadCollator(builder.tokenizer.pad_token_id)(rows)
    full = model(**padded).loss
    torch.testing.assert_close(sparse_causal_loss(model, padded), full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse_causal_loss(model, PackedCollator()(rows)), full, rtol=1e-5, atol=1e-6)


def test_dpo_answers_close_with_the_end_of_turn_not_only_the_eos(tiny_project, tok):
    from tunewise.train.dpo import _render

    tok = _eot_tokenizer(tok)
    builder = PromptBuilder(load_config(tiny_project).task, tok)
    (row,) = _render([{"prompt": "the market", "chosen": "business", "rejected": "sports"}], builder)
    assert row["chosen"] == "business<|end|>" and row["rejected"] == "sports<|end|>"
    assert row["prompt"].endswith("<|im_start|>assistant\n")


def test_audit_checks_the_end_of_turn_not_the_eos_and_reads_tool_call_turns(tmp_path, tok):
    from tunewise.data.audit import chat_checks

    tool_turn = {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "refund", "arguments": "{}"}}]}
    loaded = _load(tmp_path, MULTI, [SYSTEM, {"role": "user", "content": "refund me"}, tool_turn,
                                     {"role": "tool", "tool_call_id": "c1", "content": "done"},
                                     {"role": "assistant", "content": "refunded"}])
    checks = chat_checks(loaded.records, loaded.rejects, _eot_tokenizer(tok))
    assert checks["eos_coverage"]["eos_token"] == "<|end|>"
    assert checks["eos_coverage"]["count"] == 0 and checks["empty_assistant_replies"]["count"] == 0
    assert checks["template_round_trip"]["count"] == 0


TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "stock of an item",
                                           "parameters": {"type": "object", "properties": {"item": {"type": "string"}}}}}]


def _tool_row(tmp_path):
    path = tmp_path / "tools.jsonl"
    path.write_text(json.dumps({"messages": TOOL_CHAT, "tools": json.dumps(TOOLS)}) + "\n")
    (rec,) = load_file(path).records
    return rec


def test_tool_definitions_reach_a_template_with_a_tools_argument(tmp_path, tiny_project, tok):
    tok.chat_template = (
        "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>{% endif %}"
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    builder = PromptBuilder(load_config(tiny_project).task, tok)
    rec = _tool_row(tmp_path)
    prompt = builder.record_prompt(rec)
    assert prompt.startswith("<tools>lookup;</tools>")
    ids, _ = builder.train_ids(rec)
    assert ids[: len(builder.prompt_ids(rec))] == builder.prompt_ids(rec)  # training sees the evaluation prompt
    assert builder.chat_prompt(TOOL_CHAT[:1], TOOLS).startswith("<tools>lookup;</tools>")  # serving's entry point


def test_tool_definitions_join_the_system_turn_when_the_template_ignores_them(tmp_path, builder, tok):
    rec = _tool_row(tmp_path)
    assert not builder.template_takes_tools
    prompt = builder.record_prompt(rec)
    assert "Tools you can call (JSON):" in prompt and '"name": "lookup"' in prompt
    text = tok.decode(builder.train_ids(rec)[0])
    assert '"description": "stock of an item"' in text

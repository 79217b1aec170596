"""Every schema read from fixtures written here: each row read, every field used or listed as
ignored, undesirable answers never kept as answers, multimodal rows refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunewise.data.load import UNDESIRABLE, DataError, load_file

TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def _json(tmp_path: Path, rows: list[dict], name: str = "d.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(rows, ensure_ascii=False) if name.endswith(".json")
                    else "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _load(tmp_path, rows, name="d.json", **kw):
    path = _json(tmp_path, rows, name)
    loaded = load_file(path, **kw)
    return loaded, loaded.uses[str(path)]


def test_sharegpt_with_tools_one_line_array(tmp_path):
    row = {"conversations": [
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})},
        {"from": "observation", "value": '{"temp": 3}'},
        {"from": "gpt", "value": "It is 3 degrees in Oslo."}], "tools": json.dumps(TOOLS), "system": "Be brief."}
    loaded, uses = _load(tmp_path, [row, {**row, "system": "Be kind."}])
    assert loaded.schemas and set(loaded.schemas.values()) == {"sharegpt"} and not loaded.rejects
    rec = loaded.records[0]
    assert [m["role"] for m in rec.meta["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert rec.meta["messages"][2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert rec.meta["tools"][0] == {"type": "function", "function": TOOLS[0]}
    assert rec.target == "It is 3 degrees in Oslo."
    assert {k: u["use"] is not None for k, u in uses.items()} == {"conversations": True, "tools": True, "system": True}


def test_sharegpt_custom_tags(tmp_path):
    row = {"dialog": [{"speaker": "me", "text": "hi"}, {"speaker": "bot", "text": "hello"}]}
    tags = {"messages": "dialog", "role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot"}
    loaded, _ = _load(tmp_path, [row], tags=tags)
    assert loaded.records[0].target == "hello" and loaded.records[0].input == "user: hi"


def test_sharegpt_unknown_role_is_rejected_by_name(tmp_path):
    loaded, _ = _load(tmp_path, [{"conversations": [{"from": "robot", "value": "x"}]}], schema="sharegpt")
    assert "conversations[0].from must be one of human, gpt" in loaded.rejects[0].reason


def test_openai_messages_tools_and_content_parts(tmp_path):
    row = {"messages": [{"role": "system", "content": "sys"},
                        {"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "Oslo?"}]},
                        {"role": "assistant", "content": None, "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
                        {"role": "tool", "tool_call_id": "c1", "content": "3C"},
                        {"role": "assistant", "content": "3 degrees."}],
           "tools": [{"type": "function", "function": TOOLS[0]}], "source": "crm"}
    loaded, uses = _load(tmp_path, [row], name="d.jsonl")
    rec = loaded.records[0]
    assert "user: Weather Oslo?" in rec.input and rec.target == "3 degrees." and rec.meta["tools"][0]["function"] == TOOLS[0]
    assert uses["source"] == {"rows": 1, "use": None}  # listed as ignored
    assert any("fields ignored: source (1 rows)" in n for n in loaded.notes)


def test_alpaca_system_history_and_input_kept_with_input_field_instruction(tmp_path):
    rows = [{"instruction": "Translate", "input": "chat", "output": "cat", "system": "You translate.",
             "history": [["Translate: chien", "dog"]]},
            {"instruction": "Translate", "input": "maison", "output": "house"}]
    loaded, uses = _load(tmp_path, rows, input_field="instruction", target_field="output")
    assert set(loaded.schemas.values()) == {"alpaca"}
    first, second = loaded.records
    assert [m["role"] for m in first.meta["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert first.meta["messages"][3]["content"] == "Translate\n\nchat" and first.target == "cat"
    assert second.input == "Translate\n\nmaison"  # the input column is not lost
    assert all(u["use"] for u in uses.values())


def test_prompt_completion_and_numeric_targets(tmp_path):
    loaded, _ = _load(tmp_path, [{"prompt": "2+2", "completion": 4}, {"prompt": "pi", "completion": 3.14}])
    assert [r.target for r in loaded.records] == ["4", "3.14"] and not loaded.rejects


@pytest.mark.parametrize("row", [
    {"prompt": "Q?", "chosen": "good", "rejected": "bad"},
    {"prompt": [{"role": "user", "content": "Q?"}], "chosen": [{"role": "assistant", "content": "good"}],
     "rejected": [{"role": "assistant", "content": "bad"}]},
    {"chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "good"}],
     "rejected": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "bad"}]},
    {"conversations": [{"from": "human", "value": "Q?"}], "chosen": {"from": "gpt", "value": "good"},
     "rejected": {"from": "gpt", "value": "bad"}},
    {"instruction": "Q?", "input": "", "chosen": "good", "rejected": "bad"},
], ids=["flat", "messages", "implicit-prompt", "sharegpt", "alpaca"])
def test_preference_in_every_form(tmp_path, row):
    loaded, uses = _load(tmp_path, [row])
    assert set(loaded.schemas.values()) == {"preference"} and not loaded.rejects
    rec = loaded.records[0]
    assert rec.target == "good" and rec.meta["rejected"] == "bad" and "Q?" in rec.input
    assert all(u["use"] for u in uses.values())


def test_kto_false_labels_excluded_with_a_line(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
             "label": i % 3 != 0} for i in range(9)]
    loaded, uses = _load(tmp_path, rows)
    assert set(loaded.schemas.values()) == {"kto"}
    assert [r.target for r in loaded.records] == ["a1", "a2", "a4", "a5", "a7", "a8"]
    assert [r.reason for r in loaded.rejects] == [UNDESIRABLE] * 3
    assert any("3 of 9 rows are undesirable answers (label: false): excluded" in n for n in loaded.notes)
    assert uses["label"]["use"].startswith("desirable")


def test_kto_prompt_completion_form(tmp_path):
    loaded, _ = _load(tmp_path, [{"prompt": "q", "completion": "a", "label": True},
                                 {"prompt": "q", "completion": "b", "label": False}], name="d.jsonl")
    assert [r.target for r in loaded.records] == ["a"] and len(loaded.rejects) == 1


def test_plain_text_corpus(tmp_path):
    loaded, uses = _load(tmp_path, [{"text": "A domain document."}, {"text": "Another one."}], name="d.jsonl")
    assert set(loaded.schemas.values()) == {"text"} and [r.input for r in loaded.records] == ["A domain document.", "Another one."]
    assert uses["text"]["use"].startswith("text")
    from tunewise.data.load import unusable_hints

    (hint,) = unusable_hints(loaded, "input", "target")
    assert "2 of 2 rows unusable" in hint and "plain-text rows (schema text) have no target" in hint


@pytest.mark.parametrize("row, named", [
    ({"messages": [{"role": "user", "content": "<image>Who?"}, {"role": "assistant", "content": "Kane"}],
      "images": ["1.jpg"]}, "'images' in 2 of 2 rows"),
    ({"messages": [{"role": "user", "content": "<image>Who?"}, {"role": "assistant", "content": "Kane"}]},
     "'<image> placeholder' in 2 of 2 rows"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                   {"role": "assistant", "content": "Kane"}]}, "content parts' in 2 of 2 rows"),
])
def test_multimodal_rows_refused_naming_field_and_count(tmp_path, row, named):
    path = _json(tmp_path, [row, row])
    with pytest.raises(DataError, match="multimodal") as e:
        load_file(path)
    assert named in str(e.value) and str(path) in str(e.value)


def test_chinese_answers_read_as_given(tmp_path):
    loaded, _ = _load(tmp_path, [{"instruction": "首都是哪里？", "input": "法国", "output": "巴黎"}])
    assert loaded.records[0].target == "巴黎" and loaded.records[0].input == "首都是哪里？\n\n法国"


def test_trl_conversational_prompt_completion_and_unpaired_preference(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": "What color is the sky?"}],
             "completion": [{"role": "assistant", "content": "It is blue."}]}]
    loaded, _ = _load(tmp_path, rows, name="pc.jsonl")
    assert set(loaded.schemas.values()) == {"prompt_completion"} and not loaded.rejects
    assert loaded.records[0].target == "It is blue." and loaded.records[0].meta["messages"][0]["role"] == "user"
    kto = [{**rows[0], "label": True}, {**rows[0], "completion": [{"role": "assistant", "content": "green"}], "label": False}]
    loaded, _ = _load(tmp_path, kto, name="kto.jsonl")
    assert [r.target for r in loaded.records] == ["It is blue."] and len(loaded.rejects) == 1


def test_audit_lists_every_field_in_json_and_html(tmp_path):
    from tunewise.data.audit import audit_project
    from tunewise.report.audit_html import render_audit

    rows = [{"instruction": f"Say {i}", "input": "", "output": f"{i}", "source": "web", "score": 0.5} for i in range(6)]
    path = _json(tmp_path, rows)
    audit, _, html = audit_project(tmp_path, data=[str(path)], json_path=tmp_path / "a.json", html_path=tmp_path / "a.html",
                                   render_html=render_audit)
    uses = audit["fields"][str(path)]
    assert uses["output"] == {"rows": 6, "use": "target"} and uses["score"] == {"rows": 6, "use": None}
    assert any("fields ignored: source (6 rows), score (6 rows)" in h for h in audit["hints"])
    page = html.read_text()
    assert "fields: what each is used for" in page and "<td>score</td><td>6</td><td>ignored</td>" in page


def test_keys_inside_turns_that_nothing_reads_are_listed_as_ignored(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "hi", "loss_weight": 0.0},
                          {"role": "assistant", "content": "hello", "thinking": "greet back", "loss_weight": 1.0}]}] * 2
    loaded, uses = _load(tmp_path, rows)
    assert uses["messages[].loss_weight"] == {"rows": 2, "use": None} and uses["messages[].thinking"]["use"] is None
    assert any("messages[].thinking (2 rows)" in n for n in loaded.notes)

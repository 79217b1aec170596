"""Loaders: every format and schema, reasons for every reject, and no traceback on any input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunewise.data.load import DataError, load_file, load_files


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_jsonl_rejects_name_line_and_reason(tmp_path):
    path = _write(tmp_path, "d.jsonl", '{"input": "a", "target": "x"}\nnot json\n\n[1]\n{"input": 3, "target": "x"}\n'
                  '{"input": "b"}\n')
    loaded = load_file(path)
    assert [r.input for r in loaded.records] == ["a", "b"]
    assert loaded.records[1].target is None  # kept: the audit counts missing targets
    assert [(r.line, r.reason) for r in loaded.rejects] == [
        (2, "bad JSON: Expecting value (column 1)"), (4, "expected a JSON object, got list"),
        (5, "field 'input' must be a string, got int")]
    assert all(r.file == str(path) for r in loaded.rejects)


def test_invalid_utf8_line_is_a_reject(tmp_path):
    path = _write(tmp_path, "d.jsonl", b'{"input": "a", "target": "x"}\n{"input": "\xff", "target": "x"}\n')
    loaded = load_file(path)
    assert len(loaded.records) == 1 and loaded.rejects[0].reason.startswith("invalid UTF-8")


def test_json_array_keeps_line_numbers(tmp_path):
    path = _write(tmp_path, "d.json", '[\n {"input": "a", "target": "x"},\n {"input": 1, "target": "y"}\n]')
    loaded = load_file(path)
    assert len(loaded.records) == 1 and loaded.rejects[0].line == 3


def test_json_array_on_one_line_keeps_every_row(tmp_path):
    rows = [{"input": f"q{i}", "target": f"a{i}"} for i in range(50)]
    loaded = load_file(_write(tmp_path, "d.json", json.dumps(rows)))
    assert not loaded.rejects and [r.input for r in loaded.records] == [f"q{i}" for i in range(50)]
    assert loaded.records[49].source.endswith(":50")  # the element number locates each row


def test_json_array_error_names_its_line(tmp_path):
    with pytest.raises(DataError, match=r"d.json: not a valid JSON array \(line 3"):
        load_file(_write(tmp_path, "d.json", '[\n {"input": "a"},\n {"input": }\n]'))


def test_csv_multiline_quoted_fields_and_tsv(tmp_path):
    csv_path = _write(tmp_path, "d.csv", 'text,label\n"two\nlines, quoted",a\nplain,b\nbad,row,extra\n')
    loaded = load_file(csv_path, "text", "label")
    assert [r.input for r in loaded.records] == ["two\nlines, quoted", "plain"]
    assert loaded.records[1].source.endswith(":4")  # line numbers count the embedded newline
    assert loaded.rejects[0].line == 5 and "columns" in loaded.rejects[0].reason
    tsv = load_file(_write(tmp_path, "d.tsv", "text\tlabel\nhello\tx\n"), "text", "label")
    assert tsv.records[0].target == "x"


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"prompt": ["p1", "p2"], "completion": ["c1", None]}), path)
    loaded = load_file(path)
    assert loaded.schemas[str(path)] == "prompt_completion"
    assert [(r.input, r.target) for r in loaded.records] == [("p1", "c1"), ("p2", None)]


@pytest.mark.parametrize(("row", "schema", "expected"), [
    ({"input": "i", "target": "t"}, "input_target", ("i", "t")),
    ({"prompt": "p", "completion": "c"}, "prompt_completion", ("p", "c")),
    ({"instruction": "do", "input": "this", "output": "done"}, "alpaca", ("do\n\nthis", "done")),
    ({"prompt": "p", "chosen": "good", "rejected": "bad"}, "preference", ("p", "good")),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                   {"role": "assistant", "content": "a"}]}, "chat", ("system: s\nuser: u", "a")),
])
def test_schema_detection(tmp_path, row, schema, expected):
    path = _write(tmp_path, "d.jsonl", json.dumps(row) + "\n")
    loaded = load_file(path)
    assert loaded.schemas[str(path)] == schema
    assert (loaded.records[0].input, loaded.records[0].target) == expected


@pytest.mark.parametrize(("messages", "reason"), [
    ([{"role": "user", "content": "hi"}], "chat has no assistant turn"),
    ([], "field 'messages' must be a non-empty list"),
    ([{"role": "user", "content": "u"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}],
     "messages[1]: a system message may only come first"),
    ([{"role": "bot", "content": "u"}], "messages[0].role must be one of system, user, assistant, tool, got 'bot'"),
    ([{"role": "assistant", "content": "a"}], "the first non-system message must be from the user"),
    ([{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}], "messages[0].content must be a string or a list of text parts, got int"),
])
def test_chat_rules(tmp_path, messages, reason):
    path = _write(tmp_path, "d.jsonl", json.dumps({"messages": messages}) + "\n")
    loaded = load_file(path, schema="chat")
    assert not loaded.records and loaded.rejects[0].reason == reason


def test_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        load_files(["missing.jsonl"], tmp_path, "input", "target")
    with pytest.raises(DataError, match="unknown data format"):
        load_file(_write(tmp_path, "d.xlsx", "x"))
    with pytest.raises(DataError, match="expected a JSON array"):
        load_file(_write(tmp_path, "d.json", '{"input": "a"}'))
    with pytest.raises(DataError, match="cannot read as Parquet"):
        load_file(_write(tmp_path, "d.parquet", b"not parquet"))
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(DataError, match="cannot read"):
        load_file(tmp_path / "dir.jsonl")


def test_ids_are_unique_across_files(tmp_path):
    _write(tmp_path, "a.jsonl", '{"id": 1, "input": "a", "target": "x"}\n{"id": 1, "input": "b", "target": "x"}\n')
    _write(tmp_path, "b.csv", "id,input,target\n1,c,y\n")
    loaded = load_files(["a.jsonl", "b.csv"], tmp_path, "input", "target")
    assert [r.id for r in loaded.records] == ["a.jsonl:1", "b.csv:1"]
    assert loaded.rejects[0].reason == "duplicate id '1'"


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
KEYS = st.sampled_from(["input", "target", "id", "messages", "prompt", "completion", "chosen", "rejected",
                        "instruction", "output", "role", "content"])
ROW = st.dictionaries(KEYS, JSON | st.lists(st.dictionaries(KEYS, JSON, max_size=3), max_size=3), max_size=5)


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".parquet"]))
def test_fuzz_random_bytes_never_traceback(tmp_path, data, suffix):
    path = _write(tmp_path, f"f{suffix}", data)
    try:
        loaded = load_file(path)
    except DataError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert all(r.reason for r in loaded.rejects)


@FUZZ
@given(rows=st.lists(ROW | JSON, max_size=6), schema=st.sampled_from([None, "chat", "preference", "alpaca", "sharegpt", "kto", "text"]))
def test_fuzz_random_json_rows_load_or_reject(tmp_path, rows, schema):
    path = _write(tmp_path, "f.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    try:
        loaded = load_file(path, schema=schema)
    except DataError as e:  # the one refusal of a whole file of objects: images, audio, video
        assert "multimodal" in str(e) and "\n" not in str(e)
        return
    assert len(loaded.records) + len(loaded.rejects) == sum(1 for r in rows if json.dumps(r).strip())
    for rec in loaded.records:
        assert isinstance(rec.input, str) and (rec.target is None or isinstance(rec.target, str))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]))
def test_fuzz_cli_audit_never_tracebacks(tmp_path, data, suffix):
    from typer.testing import CliRunner

    from tunewise.cli import app

    path = _write(tmp_path, f"f{suffix}", data)
    result = CliRunner().invoke(app, ["audit", str(tmp_path), "--data", str(path), "--json", str(tmp_path / "a.json"),
                                      "--html", str(tmp_path / "a.html")])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output

"""When most rows are unusable the user is told why: wrong field names, a binary file, labels outside
task.labels, extraction targets written as JSON objects; rejects are always written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.config import ProjectConfig, load_config
from tunewise.core import Prediction, Record
from tunewise.data.audit import unknown_labels
from tunewise.data.load import DataError, load_file, nearest_label
from tunewise.data.prepare import prepare_project
from tunewise.evaluate.text_metrics import evaluate_extraction

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def _project(folder: Path, rows: list[dict] | str | bytes, task: str, name: str = "d.jsonl") -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    if isinstance(rows, list):
        rows = "".join(json.dumps(r) + "\n" for r in rows)
    path = folder / "data" / name
    path.write_bytes(rows if isinstance(rows, bytes) else rows.encode())
    (folder / "tunewise.yaml").write_text(f"name: t\ntask: {task}\ndata: {{files: [data/{name}], seed: 1}}\n"
                                          "model: {base: no-such-model}\naudit: {mislabels: false}\n")
    return folder


def _topics(n: int = 40, label: str = "category") -> list[dict]:
    return [{"id": str(i), "text": f"story {i} about the {['match', 'market'][i % 2]} and more words", label:
             ["sport", "business"][i % 2]} for i in range(n)]


CLASSIFY = "{type: classification, input_field: input, target_field: label, labels: [sport, business]}"


def _audit(project: Path):
    result = CliRunner().invoke(app, ["audit", str(project)])
    audits = sorted((project / ".tunewise" / "audits").glob("*/audit.json"))
    return result, (json.loads(audits[-1].read_text()) if audits else None)


# ---------------------------------------------------------------- wrong fields, binary files

def test_wrong_fields_fail_the_audit_naming_the_fields_the_file_has(tmp_path):
    result, audit = _audit(_project(tmp_path, _topics(), CLASSIFY))
    assert result.exit_code == 1, result.output
    line = result.output.split("error: ", 1)[1].replace("\n", "")
    assert "40 of 40 rows unusable" in line
    assert "no row has the field 'input' (task.input_field); nearest: 'text'" in line
    assert "no row has the field 'label' (task.target_field); nearest: 'category'" in line
    assert "the rows' fields: id, text, category" in line and "Traceback" not in result.output
    assert audit["usable_rows"] == 0 and audit["hints"] and "nearest: 'text'" in audit["hints"][0]
    rejects = (tmp_path / ".tunewise" / "audits").glob("*/rejects.jsonl")
    assert len(next(rejects).read_text().splitlines()) == 40


def test_wrong_target_field_alone_and_a_typo(tmp_path):
    task = "{type: classification, input_field: text, target_field: lable, labels: [sport, business]}"
    result, audit = _audit(_project(tmp_path, _topics(label="label"), task))
    assert result.exit_code == 1
    assert "40 without a target" in result.output and "nearest: 'label' (a similar name)" in audit["hints"][0]


def test_most_rows_unusable_is_a_hint_not_a_failure(tmp_path):
    rows = _topics(label="label")
    for r in rows[30:]:
        r["target"] = r.pop("label")
    result, audit = _audit(_project(tmp_path, rows, "{type: classification, input_field: text, labels: [sport, business]}"))
    assert result.exit_code == 0, result.output
    assert audit["usable_rows"] == 10
    assert audit["hints"] == [(f"{tmp_path / 'data' / 'd.jsonl'}: 30 of 40 rows unusable (0 rejected, 30 without a target); "
                              "only 10 rows have the field 'target' (task.target_field); nearest: 'label' (its values "
                              "match task.labels); the rows' fields: id, text, label, target"),
                             f"{tmp_path / 'data' / 'd.jsonl'}: schema input_target; fields ignored: label (30 rows)"]
    assert "hint:" in result.output


def test_audit_without_config_names_the_flags(tmp_path, monkeypatch):
    (tmp_path / "d.csv").write_text("sentence,class\n" + "".join(f"line {i} of text here,{i % 3}\n" for i in range(12)))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["audit", "--data", "d.csv"])
    assert result.exit_code == 1
    text = result.output.replace("\n", "")
    assert "no row has the field 'input' (--input-field); nearest: 'sentence'" in text
    assert "no row has the field 'target' (--target-field); nearest: 'class'" in text


def test_a_semicolon_separated_csv_is_named(tmp_path):
    project = _project(tmp_path, "text;label\n" + "".join(f"row {i};sport\n" for i in range(6)),
                       "{type: classification, input_field: text, target_field: label, labels: [sport, business]}", "d.csv")
    result = CliRunner().invoke(app, ["prepare", str(project)])
    assert result.exit_code == 1
    assert ("the header is one column 'text;label': the file looks ';'-separated, but .csv is read as "
            "comma-separated") in result.output.replace("\n", "")


def test_malformed_rows_hint_gives_the_commonest_reason(tmp_path):
    rows = "".join('{"input": "a", "target": "sport"' + "\n" for _ in range(5)) + '{"input": "b", "target": "sport"}\n'
    _, audit = _audit(_project(tmp_path, rows, "{type: generation}"))
    assert audit["hints"][0].endswith("commonest reason (5 rows, first at line 1): bad JSON: Expecting ',' delimiter (column 33)")


def test_a_latin1_file_groups_its_rejects_and_says_so(tmp_path):
    rows = b"".join(b'{"input": "caf\xe9 number %d ordered", "target": "sport"}\n' % i for i in range(1, 12))
    _, audit = _audit(_project(tmp_path, rows, "{type: generation}"))
    assert audit["hints"][0].endswith("commonest reason (11 rows, first at line 1): invalid UTF-8 at byte 14; the file "
                                      "may be Latin-1 or Windows-1252: save it as UTF-8")


@pytest.mark.parametrize("name,data,says", [
    ("d.jsonl", PNG, "a binary file, not jsonl text (NUL bytes)"),
    ("d.csv", PNG, "a binary file, not csv text (NUL bytes)"),
    ("d.json", bytes(range(128, 256)) * 8, "a binary file, not json text"),
    ("d.csv", "text,label\nhello,sport\n".encode("utf-16"), "UTF-16 text (byte-order mark); save it as UTF-8"),
], ids=["png-as-jsonl", "png-as-csv", "high-bytes-json", "utf16-csv"])
def test_binary_file_is_one_line_naming_it(tmp_path, name, data, says):
    project = _project(tmp_path, data, CLASSIFY, name)
    for command in ("audit", "prepare"):
        result = CliRunner().invoke(app, [command, str(project)])
        assert result.exit_code == 1
        assert result.output.startswith(f"error: {project / 'data' / name}: {says}"), result.output
        assert result.output.count("\n") <= 3 and "Traceback" not in result.output


def test_a_few_bad_bytes_stay_row_rejects(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"input": "caf\xe9", "target": "x"}\n' + b'{"input": "ok", "target": "x"}\n' * 20)
    loaded = load_file(path)
    assert len(loaded.records) == 20 and loaded.rejects[0].reason.startswith("invalid UTF-8")


def test_prepare_with_nothing_usable_writes_rejects_and_no_dataset(tmp_path):
    project = _project(tmp_path, _topics(), CLASSIFY)
    result = CliRunner().invoke(app, ["prepare", str(project)])
    assert result.exit_code == 1
    line = result.output.replace("\n", "")
    assert line.startswith("error: no usable rows left in data/d.jsonl: 40 rows read, 40 rejected while loading")
    assert "nearest: 'text'" in line
    where = Path(line.rsplit("rejects: ", 1)[1].strip())
    assert where.parent.parent == project / ".tunewise" / "rejects"
    assert [json.loads(x)["reason"] for x in where.read_text().splitlines()] == ["missing field 'input'"] * 40
    assert not (project / ".tunewise" / "datasets").exists()


def test_prepare_names_the_labels_it_dropped_everything_for(tmp_path):
    rows = _topics(label="label")
    for r in rows:
        r["label"] = r["label"].title()
    project = _project(tmp_path, rows, "{type: classification, input_field: text, target_field: label, labels: [sport, business]}")
    with pytest.raises(DataError, match=r"40 dropped by cleaning \(unusable_rows 40\); commonest: ") as e:
        prepare_project(load_config(project), project)
    assert "label 'Business' is not in task.labels (nearest: 'business') (20)" in str(e.value)
    assert Path(str(e.value).rsplit("rejects: ", 1)[1]).read_text().count("nearest: 'sport'") == 20


def test_prepare_records_a_hint_when_most_rows_are_dropped(tmp_path):
    rows = _topics(label="label")
    for r in rows[:25]:
        r["label"] = r["label"].upper()
    project = _project(tmp_path, rows, "{type: classification, input_field: text, target_field: label, labels: [sport, business]}")
    result = CliRunner().invoke(app, ["prepare", str(project)])
    assert result.exit_code == 0, result.output
    manifest_path = next((project / ".tunewise" / "datasets").glob("*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    assert manifest["hints"] == [("25 of 40 rows dropped as unusable: label 'SPORT' is not in task.labels (nearest: "
                                 "'sport') (13), label 'BUSINESS' is not in task.labels (nearest: 'business') (12)")]
    assert "hint: 25 of 40 rows dropped" in result.output
    assert "- 25 of 40 rows dropped as unusable" in (Path(manifest_path).parent / "DATACARD.md").read_text()


# ---------------------------------------------------------------- extraction targets as JSON

def _books(n: int = 20) -> list[dict]:
    return [{"id": str(i), "input": f"Book {i} was written by Ana Ruiz {i}",
             "fields": {"work": f"Book {i}", "author": f"Ana Ruiz {i}", "tags": ["novel", "é"]}} for i in range(n)]


EXTRACT = "{type: extraction, target_field: fields, json_schema: schema.json}"


def test_object_and_array_targets_load_as_canonical_json(tmp_path):
    rows = [{"input": "a", "target": {"b": 1, "a": {"d": "é", "c": None}}},
            {"input": "b", "target": '{ "a" :{"c":null,"d":"\\u00e9"},  "b":1}'},
            {"input": "c", "target": [{"y": 2, "x": 1}]},
            {"input": "d", "target": "not json"}, {"input": "e", "target": "7"}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_file(path, json_targets=True)
    canonical = '{"a": {"c": null, "d": "é"}, "b": 1}'
    assert [r.target for r in loaded.records] == [canonical, canonical, '[{"x": 1, "y": 2}]']
    assert [r.reason for r in loaded.rejects] == [
        "field 'target' must be a JSON object or array (an extraction target): Expecting value",
        "field 'target' must be a JSON object or array (an extraction target), got int"]
    plain = load_file(path)  # without a task type: objects still load (canonical), text stays as written
    assert [r.target for r in plain.records][:2] == [canonical, rows[1]["target"]] and not plain.rejects


def test_extraction_project_with_object_targets_audits_and_prepares(tmp_path):
    project = _project(tmp_path, _books(), EXTRACT)
    (project / "schema.json").write_text('{"type": "object"}')
    result, audit = _audit(project)
    assert result.exit_code == 0, result.output
    assert audit["rows"] == 20 and not audit["rejected"] and audit["usable_rows"] == 20 and not audit["hints"]
    folder, manifest = prepare_project(load_config(project), project)
    assert manifest["counts"]["rejected"] == 0
    targets = [json.loads(x)["target"] for n in ("train", "val", "test") for x in (folder / f"{n}.jsonl").read_text().splitlines()]
    assert len(targets) == 20
    assert '{"author": "Ana Ruiz 3", "tags": ["novel", "é"], "work": "Book 3"}' in targets


def test_extraction_scores_canonical_object_and_array_targets():
    config = ProjectConfig.model_validate({"task": {"type": "extraction"}, "data": {"files": ["x"]},
                                           "model": {"base": "m"}, "eval": {"bootstrap": 100}})
    recs = [Record("1", "Anna lives in Oslo", '{"city": "Oslo", "name": "Anna", "place": {"ü": 1}}'),
            Record("2", "Tom and Li", '[{"name": "Li"}, {"name": "Tom"}]'),
            Record("3", "Eve", '["Eve"]')]
    preds = [Prediction("1", 'answer: {"name": "Anna", "place": {"ü": 1}, "city": "Oslo"}'),
             Prediction("2", 'Here: [{"name": "Tom"}, {"name": "Bo"}]'),
             Prediction("3", '["Eve"]')]
    _, items = evaluate_extraction(config, recs, preds, {})
    assert np.allclose(items["field_f1"], [1.0, 0.5, 1.0])


# ---------------------------------------------------------------- labels outside task.labels

def test_unknown_labels_check_counts_examples_and_nearest(tmp_path):
    lines = "text,label\n" + "".join(f"row {i} about things,{['Sport', 'business', 'sprot ', 'weather'][i % 4]}\n"
                                     for i in range(16))
    project = _project(tmp_path, lines, "{type: classification, input_field: text, target_field: label, "
                                        "labels: [sport, business]}", "d.csv")
    result, audit = _audit(project)
    assert result.exit_code == 0, result.output
    check = audit["checks"]["unknown_labels"]
    source = str(project / "data" / "d.csv")
    assert check["count"] == 12 and list(check["labels"]) == ["Sport", "sprot ", "weather"]
    assert check["labels"]["Sport"]["nearest"] == "sport" and check["labels"]["sprot "]["nearest"] == "sport"
    assert check["labels"]["weather"]["nearest"] is None
    assert check["labels"]["Sport"]["examples"] == [f"{source}:{n}" for n in (2, 6, 10, 14)]
    assert "'Sport' 4 (-> 'sport')" in result.output
    assert audit["hints"] == [("12 of 16 rows have a label outside task.labels (sport, business): 'Sport' (4 rows, nearest "
                              "'sport'), 'sprot ' (4 rows, nearest 'sport'), 'weather' (4 rows)")]
    html = next((project / ".tunewise" / "audits").glob("*/audit.html")).read_text()
    assert "hint: 12 of 16 rows have a label outside task.labels" in html
    export = CliRunner().invoke(app, ["review", "export", str(project)])
    assert export.exit_code == 0, export.output
    review = (project / ".tunewise" / "reviews" / "review.csv").read_text()
    assert "unknown_label" in review and ",Sport,sport," in review


def test_unknown_labels_without_task_labels_is_skipped():
    assert unknown_labels([Record("1", "a", "x")], [])["skipped"] == "no task.labels given"
    assert nearest_label("  Sport ", ["sport", "business"]) == "sport" and nearest_label("zzz", ["sport"]) is None


def test_review_import_refuses_labels_outside_task_labels(tmp_path):
    project = _project(tmp_path, _topics(label="label"), "{type: classification, input_field: text, target_field: label, "
                                                         "labels: [sport, business]}")
    good = 'id,input,corrected_target\n1,"two\nlines",business\n2,x,DROP\n'
    bad = good + '3,"three\nline\ninput",Sport\n4,x,sport\n5,x,Weather\n'
    (tmp_path / "bad.csv").write_text(bad)
    (tmp_path / "good.csv").write_text(good)
    runner = CliRunner()
    refused = runner.invoke(app, ["review", "import", str(tmp_path / "bad.csv"), str(project)])
    assert refused.exit_code == 1
    assert refused.output.replace("\n", "") == (
        f"error: {tmp_path / 'bad.csv'}:5: corrected_target 'Sport' is not in task.labels (sport, business); nearest: "
        "'sport'; 2 such rows (lines 5, 9); nothing was imported")
    assert not (project / ".tunewise" / "reviews" / "corrections.json").exists()
    ok = runner.invoke(app, ["review", "import", str(tmp_path / "good.csv"), str(project)])
    assert ok.exit_code == 0 and "recorded 2 corrections" in ok.output


def test_hints_never_propose_tool_json_or_turn_lists(tmp_path):
    from tunewise.data.load import load_file, unusable_hints

    tools = json.dumps([{"name": "f", "description": "a long description of a tool " * 5, "parameters": {}}])
    rows = [{"tools": tools, "turns": [{"role": "user", "content": "hi"}], "note": f"short note {i}"} for i in range(6)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_file(path, "input", "target", schema="input_target")
    (hint,) = unusable_hints(loaded, "input", "target")
    assert "nearest: 'note'" in hint and "nearest: 'tools'" not in hint and "nearest: 'turns'" not in hint

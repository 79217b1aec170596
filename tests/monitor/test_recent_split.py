"""data.recent_test: labelled production rows become a separate split; the frozen test split never moves."""

from __future__ import annotations

import json

from tunewise.config import load_config
from tunewise.data.prepare import load_prepared, prepare_project


def test_recent_rows_are_a_separate_split_and_leave_the_dataset_alone(tiny_project):
    config = load_config(tiny_project)
    before, _ = prepare_project(config, tiny_project)
    first = json.loads((tiny_project / "data" / "rows.jsonl").read_text().splitlines()[0])
    (tiny_project / "recent.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"id": "served-1", "text": "the cup final on the phone network", "label": "sports", "served_output": "tech"},
        {"id": "served-2", "text": first["text"], "label": first["label"]},  # already in the dataset
        {"id": "served-3", "text": "the bank market", "label": "weather"},   # not a task label
    ]) + "\n")
    recent_config = load_config(tiny_project, ["data.recent_test=recent.jsonl"])
    after, manifest = prepare_project(recent_config, tiny_project)
    assert after != before
    for name in ("train", "val", "test"):
        assert (after / f"{name}.jsonl").read_text() == (before / f"{name}.jsonl").read_text()
    rows = [json.loads(x) for x in (after / "recent_test.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["served-1"] and rows[0]["meta"]["served_output"] == "tech"
    reasons = [json.loads(x)["reason"] for x in (after / "rejects.jsonl").read_text().splitlines()]
    assert any("recent test file" in r and "repeats dataset row" in r for r in reasons)
    assert any("recent test file" in r and "weather" in r for r in reasons)
    assert manifest["counts"]["recent_test"] == 1 and manifest["recent_test"] == "recent.jsonl"
    assert "labelled production requests" in (after / "DATACARD.md").read_text()
    # Without the key the earlier dataset is still the one this config prepared (its fingerprint is unchanged).
    assert load_prepared(config, tiny_project)[-1] == before

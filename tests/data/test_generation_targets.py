"""Generation targets: different answers to one input are alternatives (kept, all references in
scoring); only classification labels conflict; the data card shows labels only for classification."""

from __future__ import annotations

import json

import pytest

from tunewise.config import ProjectConfig, load_config
from tunewise.core import Prediction, Record
from tunewise.data.audit import audit_project
from tunewise.data.prepare import prepare_project
from tunewise.evaluate.text_metrics import evaluate_generation


def _project(tmp_path, task: str, rows: list[dict]):
    (tmp_path / "data").mkdir(parents=True)
    (tmp_path / "data" / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tunewise.yaml").write_text(
        f"task: {task}\ndata: {{files: [data/d.jsonl], split: {{train: 0.6, val: 0.2, test: 0.2}}}}\n"
        "model: {base: m}\nrungs: [zero-shot]\n")
    return tmp_path


def _rows(n: int) -> list[dict]:
    rows = [{"input": f"question number {i} about topic {i * 7}", "target": f"answer {i}"} for i in range(n)]
    return rows + [{"input": "How do I reset my password?", "target": "Use the reset link on the login page."},
                   {"input": "How do I reset my password?", "target": "Click 'Forgot password' and follow the email."}]


def test_generation_keeps_alternatives_and_the_card_shows_answer_lengths(tmp_path):
    project = _project(tmp_path, "{type: generation}", _rows(30))
    folder, manifest = prepare_project(load_config(project), project)
    steps = {s["step"]: s for s in manifest["steps"]}
    assert steps["conflicting_targets"]["dropped"] == 0 and "alternatives" in steps["conflicting_targets"]["note"]
    kept = [json.loads(line) for n in ("train", "val", "test") for line in (folder / f"{n}.jsonl").read_text().splitlines()]
    assert sum(r["input"] == "How do I reset my password?" for r in kept) == 2
    card = (folder / "DATACARD.md").read_text()
    assert "## Labels per split" not in card and "## Answer length per split (words)" in card
    assert manifest["labels"] == {} and manifest["answer_words"]["train"]["answers"] > 0
    assert "| `" in card and "| `input` |" in card  # the fields table
    audit, _, _ = audit_project(project)
    assert audit["checks"]["conflicting_targets"]["count"] == 0
    assert audit["checks"]["conflicting_targets"]["alternatives"] == 1


def test_classification_labels_still_conflict(tmp_path):
    rows = [{"input": f"text {i} words here", "target": ["a", "b"][i % 2]} for i in range(30)]
    rows += [{"input": "same text", "target": "a"}, {"input": "same text", "target": "b"}]
    project = _project(tmp_path, "{type: classification, labels: [a, b]}", rows)
    _, manifest = prepare_project(load_config(project), project)
    assert {s["step"]: s["dropped"] for s in manifest["steps"]}["conflicting_targets"] == 2
    assert "## Labels per split" in (project / ".tunewise" / "datasets" / manifest["hash"][:16] / "DATACARD.md").read_text()


def test_every_alternative_is_a_reference_in_scoring():
    config = ProjectConfig.model_validate({"task": {"type": "generation"}, "data": {"files": ["x.jsonl"]},
                                           "model": {"base": "m"}, "eval": {"bootstrap": 100}})
    recs = [Record("1", "reset password?", "Use the reset link on the login page."),
            Record("2", "reset password?", "Click forgot password and follow the email."),
            Record("3", "other", "Something else entirely.")]
    preds = [Prediction("1", "Click forgot password and follow the email."),
             Prediction("2", "Use the reset link on the login page."), Prediction("3", "No idea.")]
    _, items = evaluate_generation(config, recs, preds)
    assert items["exact_match"].tolist() == [1.0, 1.0, 0.0]
    assert items["content_f1"].tolist()[:2] == [1.0, 1.0] and items["rouge_l"].tolist()[:2] == pytest.approx([1.0, 1.0])

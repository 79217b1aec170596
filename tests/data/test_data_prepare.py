"""prepare: policy applied, deterministic hash, leak-free group-aware split; review loop; ladder wiring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from planted_data import build
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.config import load_config
from tunewise.data.dedup import near_pairs, normalise
from tunewise.data.prepare import load_prepared, prepare_project


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    return build(tmp_path / "p", tiny_model_dir)


def _rows(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]


def test_prepare_policy_and_outputs(project):
    folder, manifest = prepare_project(load_config(project), project)
    assert folder == project / ".tunewise" / "datasets" / manifest["hash"][:16]
    assert {p.name for p in folder.iterdir()} == {"train.jsonl", "val.jsonl", "test.jsonl", "rejects.jsonl",
                                                  "manifest.json", "DATACARD.md"}
    steps = {s["step"]: s["dropped"] for s in manifest["steps"]}
    # 2 empty inputs + 2 missing targets; 3 exact duplicates; the two conflicting pairs are ties
    # (1 vs 1), so all 4 rows go; 2 near-duplicates; 2 over-long; 2 train rows leak into the test file.
    assert steps == {"reviews": 0, "unusable_rows": 4, "exact_duplicates": 3, "conflicting_targets": 4,
                     "near_duplicates": 2, "pii": 0, "too_long": 2, "leakage": 3}
    train = _rows(folder, "train") + _rows(folder, "val")
    assert len(train) == 132 - 4 - 3 - 4 - 2 - 2 - 3 == manifest["counts"]["train"] + manifest["counts"]["val"]
    texts = " ".join(r["input"] for r in train)
    for placeholder in ("[EMAIL]", "[PHONE]", "[CREDIT_CARD]", "[IBAN]", "[SSN]", "[IP_ADDRESS]", "[SECRET]"):
        assert placeholder in texts
    assert "jane.doe@example.org" not in texts and "4111111111111112" in texts
    rejects = _rows(folder, "rejects")
    assert len(rejects) == 3 + 4 + 3 + 4 + 2 + 2 + 3 == manifest["counts"]["rejected"]
    assert any("exact duplicate of row" in r["reason"] for r in rejects)
    card = (folder / "DATACARD.md").read_text()
    assert "near_duplicates" in card and "typed placeholders" in card and manifest["hash"] in card
    assert manifest["sources"].keys() == {"data/train.jsonl", "data/test.jsonl"}


def test_prepare_is_deterministic_and_leak_free(project):
    config = load_config(project)
    folder1, m1 = prepare_project(config, project)
    snapshot = {p.name: p.read_bytes() for p in folder1.iterdir()}
    folder2, m2 = prepare_project(config, project)
    assert m1["hash"] == m2["hash"] and {p.name: p.read_bytes() for p in folder2.iterdir()} == snapshot
    test = {normalise(r["input"]) for r in _rows(folder1, "test")}
    train = _rows(folder1, "train") + _rows(folder1, "val")
    assert not test & {normalise(r["input"]) for r in train}
    texts = [r["input"] for r in train] + [r["input"] for r in _rows(folder1, "test")]
    assert not [p for p in near_pairs(texts, 0.8) if p[0] < len(train) <= p[1]]
    other = load_config(project, ["data.seed=4"])
    assert prepare_project(other, project)[1]["hash"] != m1["hash"]


def test_near_duplicate_clusters_never_straddle_splits(tmp_path, tiny_model_dir):
    project = build(tmp_path / "p", tiny_model_dir)
    config = load_config(project, ["prepare.near_duplicates=keep", "data.test_file=null", "prepare.too_long=keep"])
    folder, _ = prepare_project(config, project)
    parts = {n: _rows(folder, n) for n in ("train", "val", "test")}
    where = {normalise(r["input"]): n for n, rows in parts.items() for r in rows}
    everything = [(n, r["input"]) for n, rows in parts.items() for r in rows]
    for i, j, _ in near_pairs([t for _, t in everything], 0.8):
        assert everything[i][0] == everything[j][0]
    assert len(where) == sum(len(v) for v in parts.values())  # identical inputs were deduplicated
    assert {r["id"] for r in parts["train"] + parts["val"] + parts["test"]} >= {"near0", "bus10"}


def test_pii_drop_and_keep_policies(project):
    _, dropped = prepare_project(load_config(project, ["prepare.pii=drop"]), project)
    assert {s["step"]: s["dropped"] for s in dropped["steps"]}["pii"] == 7
    folder, _ = prepare_project(load_config(project, ["prepare.pii=keep"]), project)
    rows = _rows(folder, "train") + _rows(folder, "val")
    assert sum("pii_warning" in r["meta"] for r in rows) == 7


def test_review_loop_and_ladder_uses_prepared(project):
    runner = CliRunner()
    out = runner.invoke(app, ["review", "export", str(project), "--set", "audit.mislabels=false"])
    assert out.exit_code == 0, out.output
    csv_path = project / ".tunewise" / "reviews" / "review.csv"
    text = csv_path.read_text()
    assert text.startswith("id,source,flags,input,target,suggested_target,corrected_target")
    assert "exact_duplicate" in text and "review_sample" in text
    lines = text.splitlines()
    # Fix the two conflicts and drop a mislabel by hand.
    fixed = [lines[0], "conf0,,,,,,business", "conf1,,,,,,business", "mis0,,,,,,DROP"]
    (project / "fixed.csv").write_text("\n".join(fixed) + "\n")
    imported = runner.invoke(app, ["review", "import", str(project / "fixed.csv"), str(project)])
    assert imported.exit_code == 0 and "recorded 3 corrections" in imported.output
    bad = runner.invoke(app, ["review", "import", str(project / "nope.csv"), str(project)])
    assert bad.exit_code == 1 and "nope.csv: cannot read" in bad.output
    config = load_config(project)
    assert load_prepared(config, project) is None
    prepared = runner.invoke(app, ["prepare", str(project)])
    assert prepared.exit_code == 0, prepared.output
    train, val, _, rejects, _, folder = load_prepared(config, project)
    manifest = json.loads((folder / "manifest.json").read_text())
    steps = {s["step"]: s["dropped"] for s in manifest["steps"]}
    assert steps["reviews"] == 1 and steps["conflicting_targets"] == 0 and manifest["reviews_applied"] == 3
    assert "mis0" not in {r.id for r in train + val}
    assert any(r.reason.endswith("dropped by a reviewer") for r in rejects)
    from tunewise.ladder import load_splits

    splits = load_splits(config, project)
    assert splits.dataset_dir == folder and len(splits.test) == 5 and splits.train == train
    assert load_prepared(load_config(project, ["data.seed=9"]), project) is None  # another config


def test_prepared_dataset_survives_unrelated_config_changes(project):
    prepare_project(load_config(project), project)
    assert load_prepared(load_config(project, ["audit.review_sample=5", "train.epochs=3"]), project) is not None
    assert load_prepared(load_config(project, ["prepare.pii=keep"]), project) is None


def test_chat_project_audit_and_prepare(tmp_path, tiny_model_dir):
    from tunewise.data.audit import audit_project

    def chat(i: int, reply: str) -> str:
        return json.dumps({"messages": [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": f"question number {i} from a@b.io"},
                                        {"role": "assistant", "content": reply}]})

    rows = [chat(i, f"answer {i}") for i in range(12)] + [chat(12, " "),
                                                          json.dumps({"messages": [{"role": "user", "content": "hi"}]})]
    (tmp_path / "chat.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "tunewise.yaml").write_text(
        f"task: {{type: generation}}\ndata: {{files: [chat.jsonl], split: {{train: 0.5, val: 0.25, test: 0.25}}}}\n"
        f"model: {{base: {tiny_model_dir}}}\n")
    audit, _, _ = audit_project(tmp_path)
    checks = audit["checks"]
    assert audit["schemas"] == {str(tmp_path / "chat.jsonl"): "chat"} and audit["rows"] == 13
    assert [checks[c]["count"] for c in ("template_round_trip", "eos_coverage", "empty_assistant_replies",
                                         "assistant_coverage", "missing_targets", "pii")] == [0, 1, 1, 1, 1, 13]
    folder, manifest = prepare_project(load_config(tmp_path), tmp_path)
    kept = _rows(folder, "train") + _rows(folder, "val") + _rows(folder, "test")
    assert len(kept) == 12 and manifest["schema"] == {"chat.jsonl": "chat"}
    assert all("[EMAIL]" in r["meta"]["messages"][1]["content"] for r in kept)

"""The audit on a dataset with planted defects: exact counts for every check; CLI, gate, HTML."""

from __future__ import annotations

import json

import pytest
from planted_data import EXPECTED, build
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.core import Record
from tunewise.data import audit as au
from tunewise.data.load import Loaded
from tunewise.data.mislabels import suspected_mislabels, tfidf_embedder
from tunewise.data.review import annotator_agreement, fleiss_kappa
from tunewise.report.audit_html import render_audit


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tiny_model_dir):
    project = build(tmp_path_factory.mktemp("planted"), tiny_model_dir)
    audit, json_path, html_path = au.audit_project(project, embed=tfidf_embedder, render_html=render_audit)
    return project, audit, json_path, html_path


def test_planted_defects_exact_counts(planted):
    _, audit, _, _ = planted
    checks = audit["checks"]
    assert audit["rows"] == EXPECTED["rows"]
    assert len(audit["rejected"]) == EXPECTED["rejected"]
    assert sorted(r["line"] for r in audit["rejected"]) == [6, 10, 135]
    for name in ("exact_duplicates", "near_duplicates", "conflicting_targets", "empty_inputs", "missing_targets",
                 "too_long", "class_balance", "pii", "leakage", "review_sample"):
        assert checks[name]["count"] == EXPECTED[name], name
    assert {it["id"] for it in checks["exact_duplicates"]["items"]} == {"dup0", "dup1", "dup2"}
    assert {p["b"] for p in checks["near_duplicates"]["pairs"]} == {"near0", "near1"}
    # words and word pairs: 56 of 60 shared (a topic word repeats in near0's 30-word source)
    assert checks["near_duplicates"]["pairs"][0]["similarity"] == pytest.approx(56 / 60, abs=1e-3)
    assert sorted(checks["empty_inputs"]["ids"]) == ["empty0", "empty1"]
    assert sorted(checks["missing_targets"]["ids"]) == ["notarget0", "notarget1"]
    assert sorted(checks["too_long"]["ids"]) == ["long0", "long1"]
    assert checks["too_long"]["tokenizer"] != "" and "estimate" not in checks["too_long"]["tokenizer"]
    assert checks["class_balance"]["below_min"] == ["weather"]
    assert checks["pii"]["by_type"] == dict.fromkeys(checks["pii"]["by_type"], 1)  # each type once
    assert "notpii" not in {f["id"] for f in checks["pii"]["findings"]}  # fails Luhn: not a card
    assert (checks["leakage"]["exact"], checks["leakage"]["near"]) == (EXPECTED["leak_exact"], EXPECTED["leak_near"])
    # 3 planted mislabels + the 4 rows of the two conflicting groups (same text, other label).
    flagged = {it["id"] for it in checks["suspected_mislabels"]["items"]}
    assert flagged == {"mis0", "mis1", "mis2", "conf0", "conf1", "bus20", "bus21"}
    assert all(it["suggested"] == "sports" for it in checks["suspected_mislabels"]["items"] if it["id"].startswith("mis"))
    assert len(set(checks["review_sample"]["ids"])) == 50
    assert {"weather"} <= {audit_label for audit_label in _labels_of(planted, checks["review_sample"]["ids"])}


def _labels_of(planted, ids):
    project = planted[0]
    rows = [json.loads(line) for line in (project / "data" / "train.jsonl").read_bytes().decode("utf-8", "replace").splitlines()
            if line.startswith("{") and line.endswith("}") and "bad" not in line]
    return {r.get("label") for r in rows if r.get("id") in set(ids)}


def test_audit_files_are_written(planted):
    _, audit, json_path, html_path = planted
    on_disk = json.loads(json_path.read_text())
    assert on_disk["checks"].keys() == audit["checks"].keys()
    assert set(on_disk) >= {"rows", "rejected", "checks"}
    html = html_path.read_text()
    assert "<script" not in html and "http" not in html and "exact_duplicates" in html
    assert (json_path.parent / "rejects.jsonl").read_text().count("\n") == 3


def test_cli_audit_gate_and_paths(planted, tmp_path):
    project = planted[0]
    runner = CliRunner()
    args = ["audit", str(project), "--set", "audit.mislabels=false", "--json", str(tmp_path / "a.json"),
            "--html", str(tmp_path / "a.html")]
    ok = runner.invoke(app, args + ["--fail-on", "leakage"], catch_exceptions=False)
    assert ok.exit_code == 1 and "audit gate failed: leakage=3" in ok.output
    assert (tmp_path / "a.json").exists() and (tmp_path / "a.html").exists()
    assert runner.invoke(app, args + ["--fail-on", "suspected_mislabels"]).exit_code == 0
    bad = runner.invoke(app, args + ["--fail-on", "nonsense"])
    assert bad.exit_code == 2 and "unknown check" in bad.output  # a usage error, before the audit


def test_cli_audit_without_project(tmp_path, monkeypatch):
    (tmp_path / "d.csv").write_text("q,a\nhello there,x\nhello there,x\n,y\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.csv").write_text("q,a\nHELLO  there,x\nsomething else,y\n")
    result = CliRunner().invoke(app, ["audit", "--data", "d.csv", "--input-field", "q", "--target-field", "a",
                                      "--test", "t.csv", "--max-tokens", "3"])
    assert result.exit_code == 0, result.output
    audit = json.loads(next((tmp_path / ".tunewise" / "audits").glob("*/audit.json")).read_text())
    assert audit["checks"]["exact_duplicates"]["count"] == 1 and audit["checks"]["empty_inputs"]["count"] == 1
    assert audit["checks"]["too_long"]["count"] == 2  # "hello there\nx": 13 characters, ~4 tokens > 3
    assert (audit["checks"]["leakage"]["count"], audit["checks"]["leakage"]["exact"]) == (1, 1)
    missing = CliRunner().invoke(app, ["audit", "--data", "nope.jsonl"])
    assert missing.exit_code == 1 and "nope.jsonl: no such data file" in missing.output


def _chat(i: int, reply: str = "fine", system: bool = False) -> Record:
    msgs = ([{"role": "system", "content": "be kind"}] if system else []) + [
        {"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": reply}]
    return Record(str(i), "", reply or None, {"messages": msgs})


def test_chat_checks(tiny_model_dir):
    from tunewise.data.load import Reject
    from tunewise.models.load import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    recs = [_chat(0), _chat(1, ""), _chat(2, system=True)]
    rejects = [Reject("f", 9, "chat has no assistant turn")]
    out = au.chat_checks(recs, rejects, tok)
    assert out["empty_assistant_replies"]["ids"] == ["1"]
    assert out["assistant_coverage"]["count"] == 1 and out["assistant_coverage"]["coverage"] == 0.75
    assert out["template_round_trip"]["count"] == 0 and out["eos_coverage"]["count"] == 1  # the empty reply
    tok.chat_template = ("{% for m in messages %}{% if m['role'] != 'system' %}<|im_start|>{{ m['role'] }}\n"
                         "{{ m['content'] }}{% if m['role'] == 'user' %}<|im_end|>{% endif %}\n{% endif %}{% endfor %}")
    broken = au.chat_checks(recs, [], tok)
    assert broken["template_round_trip"]["ids"] == ["2"]  # the system turn is lost
    assert broken["eos_coverage"]["count"] == 3  # no EOS after any assistant reply


def test_mislabels_with_real_minilm():
    texts = [f"the striker scored a goal in the football match {i}" for i in range(10)] + \
            [f"the central bank raised interest rates and stocks fell {i}" for i in range(10)] + \
            [f"the new smartphone has a faster chip and better camera {i}" for i in range(10)]
    labels = ["sports"] * 10 + ["business"] * 10 + ["tech"] * 10
    labels[3], labels[14] = "tech", "sports"
    result = suspected_mislabels([str(i) for i in range(30)], texts, labels, folds=5)
    found = {it["id"]: it["suggested"] for it in result["items"]}
    assert found == {"3": "sports", "14": "business"}


def test_kappa():
    # The worked example of Fleiss (1971) as on Wikipedia: 10 items, 14 raters, kappa 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    ratings = [[str(c) for c, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(ratings) == pytest.approx(0.210, abs=1e-3)
    recs = [Record(f"{a}{i}", f"item {i}", lab, {"who": a}) for i, (x, y) in
            enumerate([("p", "p"), ("p", "n"), ("n", "n"), ("n", "n"), ("p", "p"), ("n", "p")]) for a, lab in (("A", x), ("B", y))]
    out = annotator_agreement(recs, "who")
    assert (out["method"], out["items"], out["count"], out["kappa"]) == ("Cohen", 6, 2, pytest.approx(1 / 3, abs=1e-3))


def test_gate_counts_rejected():
    audit = au.run_audit(Loaded([Record("1", "a", "x")]), au.AuditSettings(mislabels=False, task_type="generation"))
    au.gate(audit, ["exact_duplicates", "rejected"])
    with pytest.raises(au.AuditGateFailed, match="review_sample=1"):
        au.gate(audit, ["review_sample"])


def test_audit_runs_without_a_loadable_base_model(tmp_path):
    project = build(tmp_path / "p", tmp_path / "no-such-model")
    result = CliRunner().invoke(app, ["audit", str(project), "--set", "audit.mislabels=false"])
    assert result.exit_code == 0, result.output
    assert "base model tokenizer unavailable" in result.output
    audit = json.loads(next((project / ".tunewise" / "audits").glob("*/audit.json")).read_text())
    assert audit["checks"]["too_long"]["tokenizer"].startswith("estimate")

"""The whole loop on the bundled data and the real MiniLM, at small scale: served log → drift verdict →
review CSV → labelled rows → a new dataset version with a recent test split → a ladder comparing the
old and the new dataset's runs on the same frozen test split."""

from __future__ import annotations

import csv
import inspect
import json
import random

import pytest
from typer.testing import CliRunner

from tunewise.cli import app

pytestmark = pytest.mark.e2e
runner = CliRunner()


def test_served_log_to_recent_test_split_and_ladder(tmp_path):
    pytest.importorskip("sentence_transformers")
    import sklearn.linear_model as lm

    from tunewise.examples import bbc_rows

    rows = bbc_rows()
    random.Random(0).shuffle(rows)
    project = tmp_path / "bbc"
    (project / "data").mkdir(parents=True)
    (project / "data" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:150]))
    (project / "tunewise.yaml").write_text("""name: bbc-loop
task: {type: classification, input_field: text, target_field: label,
       labels: [business, entertainment, politics, sports, tech]}
data: {files: [data/a.jsonl], split: {train: 0.6, val: 0.1, test: 0.3}, seed: 0}
model: {base: smollm2-135m-instruct}
encoder: {max_seq_length: 32}
eval: {bootstrap: 200}
monitor: {min_window: 30, permutations: 500}
""")
    assert runner.invoke(app, ["prepare", str(project)]).exit_code == 0
    old = runner.invoke(app, ["ladder", str(project), "--rungs", "embedding-classifier", "-q"])
    assert old.exit_code == 0, old.output

    held = rows[150:210]
    docs = [" ".join(inspect.getdoc(getattr(lm, n)).split()[:120]) for n in lm.__all__][:30]
    stable = project / "stable.jsonl"
    stable.write_text("".join(json.dumps({"ts": f"2026-01-0{1 + i // 30}T09:{i % 30:02d}:00Z", "input": r["text"]})
                              + "\n" for i, r in enumerate(held)))
    res = runner.invoke(app, ["monitor", str(project), "--log", str(stable)])
    assert res.exit_code == 0, res.output
    shifted = project / "shifted.jsonl"
    texts = [r["text"] for r in held[:30]] + docs
    answers = [r["label"] for r in held[:30]] + ["tech"] * len(docs)  # what the server answered
    lines = [json.dumps({"ts": f"2026-01-0{1 + i // 30}T09:{i % 30:02d}:00Z", "input": t, "output": a})
             for i, (t, a) in enumerate(zip(texts, answers, strict=True))]
    shifted.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["monitor", str(project), "--log", str(shifted), "--export-review", "8"])
    result = json.loads(max((project / ".tunewise" / "monitor").glob("2*/monitor.json")).read_text())
    # The second window is scikit-learn docstrings: out of distribution in the latest window, so retrain.
    assert (res.exit_code, result["verdict"]) == (3, "retrain"), res.output
    assert not result["windows"][0]["alarms"] and {"embedding", "ood"} <= set(result["windows"][1]["alarms"])

    # A reviewer labels the exported requests (news articles by their topic; docstrings are dropped).
    review = max((project / ".tunewise" / "monitor").glob("2*/review.csv"))
    by_text = {r["text"][:80]: r["label"] for r in held}
    out = list(csv.DictReader(review.open()))
    for r in out:
        r["corrected_target"] = by_text.get(r["input"][:80], "DROP")
    sampled = [r for r in out if "random_sample" in r["flags"].split(";")]
    labelled = [r for r in sampled if r["corrected_target"] != "DROP"]
    # The random sample (8 of the 60 distinct inputs, seeded) holds news articles: they become the recent rows.
    assert len(sampled) == 8 and labelled
    with review.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    assert runner.invoke(app, ["review", "import", str(review), str(project)]).exit_code == 0
    recent = ["--set", "data.recent_test=.tunewise/reviews/recent.jsonl"]
    assert runner.invoke(app, ["prepare", str(project), *recent]).exit_code == 0
    new = runner.invoke(app, ["ladder", str(project), "--rungs", "embedding-classifier", "-q", *recent])
    assert new.exit_code == 0, new.output
    reports = sorted((project / ".tunewise" / "reports").glob("*/ladder.json"))
    old_l, new_l = (json.loads(p.read_text()) for p in reports)
    assert old_l["test_hash"] == new_l["test_hash"]  # the frozen test split did not move
    assert old_l["dataset_dir"] != new_l["dataset_dir"] and new_l["n_recent"] == len(labelled)
    rung = new_l["rungs"][0]
    served = rung["recent_vs_served"]  # the deployed model's served answers against the refitted rung, same rows
    # The server answered every news article with its true topic, and only news articles were labelled.
    assert served["n"] == len(labelled) and served["served_accuracy"] == 1.0
    assert served["rung_accuracy"] == rung["recent_metrics"]["accuracy"]
    assert rung["metrics"]["accuracy"] == pytest.approx(old_l["rungs"][0]["metrics"]["accuracy"])

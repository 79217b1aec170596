"""`tunewise monitor` end to end on the tiny project and a config-built tiny encoder (no downloads):
silent on fresh rows like the training data, alarming on a shift; the review export and the loop
back into `prepare`."""

from __future__ import annotations

import csv
import json
import random

import pytest
from tiny import TOPICS, write_tiny_project
from typer.testing import CliRunner

from tunewise.cli import app

runner = CliRunner()
OTHER = ["film", "music", "star", "award", "show", "election", "minister", "party", "vote", "government"]


@pytest.fixture
def project(tmp_path, tiny_model_dir, tiny_encoder_dir):
    folder = write_tiny_project(tmp_path / "proj", tiny_model_dir, n_per_label=50,
                                extra=f"encoder: {{model: {tiny_encoder_dir}, max_seq_length: 16}}\n"
                                      "monitor: {min_window: 30, permutations: 300}\n")
    assert runner.invoke(app, ["prepare", str(folder)]).exit_code == 0
    return folder


def stream(path, texts, per_hour=30):
    path.write_text("".join(json.dumps({"ts": f"2026-01-01T{i // per_hour:02d}:{i % per_hour:02d}:00Z", "input": t})
                            + "\n" for i, t in enumerate(texts)))
    return path


def fresh_rows(n, seed):
    rng = random.Random(seed)
    labels = list(TOPICS)
    out = []
    for i in range(n):
        vocab = TOPICS[labels[i % 3]].split()
        out.append("the " + " ".join(rng.choice(vocab) for _ in range(6)))
    return out


def latest(project):
    folder = max((project / ".tunewise" / "monitor").glob("2*"))
    return folder, json.loads((folder / "monitor.json").read_text())


def test_in_distribution_stream_is_stable(project, tmp_path):
    log = stream(tmp_path / "log.jsonl", fresh_rows(90, seed=7))
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log)])
    folder, result = latest(project)
    assert res.exit_code == 0, res.output
    assert result["verdict"] == "stable" and result["unit"] == "hour" and len(result["windows"]) == 3
    assert "embedding-classifier" in result["predictions"]  # the log has no probabilities: the monitor ran the rung
    html = (folder / "monitor.html").read_text()
    assert "<svg" in html and "stable" in html and "http" not in html.split("<svg", 1)[0]


def test_shifted_stream_alarms_and_exports_rows_to_review(project, tmp_path):
    rng = random.Random(3)
    shifted = fresh_rows(60, seed=8) + [" ".join(rng.choice(OTHER) for _ in range(7)) for _ in range(60)]
    log = stream(tmp_path / "log.jsonl", shifted)
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log), "--export-review", "5"])
    folder, result = latest(project)
    # Out-of-vocabulary rows in the last window: the rung is off its training distribution, so retrain (3).
    assert (res.exit_code, result["verdict"], result["exit_code"]) == (3, "retrain", 3), res.output
    late = result["windows"][-1]
    assert {"embedding", "new_vocab"} <= set(late["alarms"])
    assert not result["windows"][0]["alarms"]
    rows = list(csv.DictReader((folder / "review.csv").open()))
    assert list(rows[0]) == ["id", "source", "flags", "input", "target", "suggested_target", "corrected_target"]
    assert all(r["id"].startswith("served-") for r in rows)
    # The 5 most worth labelling first (the drifted inputs), then a random sample of 5 (seeded; here from
    # both halves of the log), the only rows that may become test rows.
    top, sampled = rows[:5], rows[5:]
    assert {k: v for k, v in result["review_export"].items() if k != "path"} == {"rows": 10, "random_sample": 5,
                                                                                 "ranked": 5}
    assert all(any(w in r["input"].split() for w in OTHER) for r in top)
    assert not any("random_sample" in r["flags"] for r in top) and all("random_sample" in r["flags"] for r in sampled)
    assert {any(w in r["input"].split() for w in OTHER) for r in sampled} == {True, False}

    # The loop: label rows, import them: the sampled ones become the recent test split, the others
    # training rows; prepare a new dataset version with the recent test split.
    for r, label in zip(rows, ["tech", "DROP", "", "", "", "", "", "sports", "business", ""], strict=True):
        r["corrected_target"] = label
    filled = tmp_path / "filled.csv"
    with filled.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    res = runner.invoke(app, ["review", "import", str(filled), str(project)])
    assert res.exit_code == 0, res.output
    assert "2 random-sample row(s) to .tunewise/reviews/recent.jsonl" in res.output
    assert "1 row(s) picked for being far or unsure to .tunewise/reviews/served_ranked.jsonl" in res.output
    reviews = project / ".tunewise" / "reviews"
    recent = [json.loads(x) for x in (reviews / "recent.jsonl").read_text().splitlines()]
    assert [(x["label"], x["sample"]) for x in recent] == [("sports", "random"), ("business", "random")]
    ranked = [json.loads(x) for x in (reviews / "served_ranked.jsonl").read_text().splitlines()]
    assert [(x["label"], x["sample"]) for x in ranked] == [("tech", "ranked")]
    # The log held no answers: the suggestion is the monitor's own, so it is not kept as the served answer.
    assert all("suggested_by_monitor" in r["flags"] for r in rows)
    assert all(x["served_output"] is None for x in recent + ranked)
    res = runner.invoke(app, ["prepare", str(project), "--set", "data.recent_test=.tunewise/reviews/recent.jsonl"])
    assert res.exit_code == 0, res.output
    folder = project / ".tunewise" / "datasets" / res.output.split()[1].rstrip(":")
    assert len((folder / "recent_test.jsonl").read_text().splitlines()) == 2
    assert "labelled production requests" in (folder / "DATACARD.md").read_text()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["recent_test"] == 2 and ".tunewise/reviews/recent.jsonl" in manifest["sources"]


def test_labelled_requests_are_scored_against_the_ladder_figure(project, tmp_path):
    texts = fresh_rows(60, seed=9)
    log = stream(tmp_path / "log.jsonl", texts)
    labels = [list(TOPICS)[i % 3] for i in range(60)]
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels, strict=True)))
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log), "--labeled", str(labelled)])
    _, result = latest(project)
    # Rows like the training data, labelled as the tiny model labels them: nothing to act on.
    assert (res.exit_code, result["verdict"]) == (0, "stable"), res.output
    fresh = result["labelled"]
    assert fresh["n"] == 60 and 0 <= fresh["accuracy_ci"][0] <= fresh["accuracy"] <= fresh["accuracy_ci"][1]
    assert fresh["p_value"] >= 0.05 and "unpaired" in fresh["test"] and fresh["ranked_left_out"] == 0
    assert all("cbpe_error" in w["labelled"] for w in result["windows"])


def test_labelled_rows_picked_for_being_far_or_unsure_never_judge_the_model(project, tmp_path):
    texts = fresh_rows(60, seed=9)
    log = stream(tmp_path / "log.jsonl", texts)
    labelled = tmp_path / "labelled.jsonl"
    # The first 10 as served_ranked.jsonl holds them: picked by the model's own scores, so biased low.
    labelled.write_text("".join(json.dumps({"text": t, "label": list(TOPICS)[i % 3], **({"sample": "ranked"} if i < 10
                                            else {})}) + "\n" for i, t in enumerate(texts)))
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log), "--labeled", str(labelled)])
    folder, result = latest(project)
    said = " ".join(res.output.split())  # the console wraps long lines
    assert res.exit_code == 0, res.output
    assert "10 row(s) of" in said and "left out of the accuracy check" in said
    assert (result["labelled"]["n"], result["labelled"]["ranked_left_out"]) == (50, 10)
    assert "10 labelled row(s) picked for being far or unsure were left out" in (folder / "monitor.html").read_text()
    only = tmp_path / "ranked.jsonl"
    only.write_text("".join(json.dumps({"text": t, "label": "tech", "sample": "ranked"}) + "\n" for t in texts[:5]))
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log), "--labeled", str(only)])
    assert res.exit_code == 1 and "every row was picked for being far from the training data" in " ".join(
        res.output.split())


def test_bad_label_in_labelled_file_is_one_line(project, tmp_path):
    log = stream(tmp_path / "log.jsonl", fresh_rows(30, seed=1))
    bad = tmp_path / "labelled.jsonl"
    bad.write_text(json.dumps({"text": "the bank", "label": "weather"}) + "\n")
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log), "--labeled", str(bad)])
    assert res.exit_code == 1 and "labelled.jsonl:1: field 'label'" in res.output and "Traceback" not in res.output


def test_monitor_needs_a_prepared_dataset(tmp_path, tiny_model_dir):
    folder = write_tiny_project(tmp_path / "p", tiny_model_dir)
    log = stream(tmp_path / "log.jsonl", ["the bank"])
    res = runner.invoke(app, ["monitor", str(folder), "--log", str(log)])
    assert res.exit_code == 1 and "tunewise prepare" in res.output


def test_sqlite_log_with_the_served_rungs_probabilities(project, tmp_path):
    import sqlite3

    assert runner.invoke(app, ["ladder", str(project), "--rungs", "embedding-classifier", "-q"]).exit_code == 0
    db = tmp_path / "requests.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE requests (ts TEXT, model TEXT, input TEXT, output TEXT, latency_ms REAL, probs TEXT)")
    labels = list(TOPICS)
    for i, text in enumerate(fresh_rows(60, seed=11)):
        probs = {lab: 0.8 if k == i % 3 else 0.1 for k, lab in enumerate(labels)}
        con.execute("INSERT INTO requests VALUES (?,?,?,?,?,?)", (f"2026-01-01T{i // 30:02d}:{i % 30:02d}:00Z",
                    "embedding-classifier", text, labels[i % 3], 3.0, json.dumps(probs)))
    con.commit()
    con.close()
    res = runner.invoke(app, ["monitor", str(project), "--log", str(db)])
    _, result = latest(project)
    # Rows like the training data: stable, no window alarms. (A binomial test of the out-of-distribution
    # rate against a nominal 1% made this stream "watch" with the tiny encoder; see drift.ood_rate.)
    assert (res.exit_code, result["exit_code"], result["verdict"]) == (0, 0, "stable"), res.output
    assert [w["alarms"] for w in result["windows"]] == [[], []] and "stable" in res.output
    assert result["predictions"].startswith("probabilities from the request log")
    assert result["reference"]["ladder"]["report"] is not None and result["n_requests"] == 60
    assert result["windows"][0]["confidence"]["mean"] == pytest.approx(0.8)


def test_too_few_requests_says_nothing_was_tested(project, tmp_path):
    log = stream(tmp_path / "log.jsonl", fresh_rows(12, seed=2))
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log)])
    _, result = latest(project)
    assert res.exit_code == 0 and "nothing was tested" in res.output
    assert not result["windows"][0]["tested"] and "too few requests" in result["windows"][0]["reasons"][0]


def test_odd_rows_are_skipped_said_in_one_line_and_recorded(project, tmp_path):
    log = stream(tmp_path / "log.jsonl", fresh_rows(57, seed=3))
    with log.open("a") as f:
        f.write(json.dumps({"ts": "2026-01-01T02:00:00Z", "input": ""}) + "\n" + '{"ts": "2026-01-01T02:01:00Z", "inp\n')
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log)])
    _, result = latest(project)
    assert res.exit_code == 0, res.output
    assert "skipped 2 of 59 request(s) it cannot use: 1 empty input, 1 not JSON (cut short?)" in res.output
    assert result["n_requests"] == 57
    assert result["skipped"]["counts"] == {"empty input": 1, "not JSON (cut short?)": 1}
    assert "log.jsonl:58: field 'input'" in result["skipped"]["first"]["empty input"]

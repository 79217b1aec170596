"""Which rows to label next: the strategies alone, and `review export --pool` on a tiny project."""

from __future__ import annotations

import csv
import io
import json
import random

import numpy as np
import pytest
from tiny import TOPICS, write_tiny_project
from typer.testing import CliRunner

from tunewise.data.select import k_center_greedy, least_confident, random_pick


def test_least_confident_picks_the_lowest_top_probabilities():
    proba = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8], [0.5, 0.5], [0.7, 0.3]])
    assert least_confident(proba, 2) == [3, 1]
    assert least_confident(proba, 5) == [3, 1, 4, 2, 0]


def test_k_center_greedy_fills_the_gaps_the_labelled_rows_leave():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    pool = np.concatenate([c + rng.normal(0, 0.1, (20, 2)) for c in centres])
    covered = centres[:2] + 0.05  # the first two clusters are labelled already
    picks = k_center_greedy(pool, covered, 2)
    assert sorted(p // 20 for p in picks) == [2, 3]  # one from each uncovered cluster
    alone = k_center_greedy(pool, None, 4, seed=1)
    assert sorted(p // 20 for p in alone) == [0, 1, 2, 3] and len(set(alone)) == 4
    assert random_pick(80, 5, seed=1) == random_pick(80, 5, seed=1) != random_pick(80, 5, seed=2)


@pytest.fixture
def pool_project(tmp_path, tiny_model_dir, tiny_encoder_dir):
    project = write_tiny_project(tmp_path / "proj", tiny_model_dir, n_per_label=20,
                                 extra=f"encoder: {{model: {tiny_encoder_dir}}}\n")
    rng = random.Random(5)
    words = {k: v.split() for k, v in TOPICS.items()}
    rows = []
    for i in range(40):
        a, b = rng.sample(sorted(words), 2)
        mix = rng.randint(0, 6)  # from one clear topic to an even mix of two
        text = " ".join([rng.choice(words[a]) for _ in range(6 - mix)] + [rng.choice(words[b]) for _ in range(mix)])
        rows.append({"uid": f"p{i}", "text": f"the {text} news {i}"})
    labelled = json.loads((project / "data" / "rows.jsonl").read_text().splitlines()[0])["text"]
    rows += [{"uid": "copy-of-p3", "text": rows[3]["text"]},
             {"uid": "copy-of-labelled", "text": labelled},
             {"uid": "pii", "text": "the market shares profit bank write to alice.smith@example.com today"},
             {"uid": "blank", "text": "   "}]
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return project, tmp_path / "pool.jsonl"


def _export(project, pool, *args):
    from tunewise.cli import app

    out = project / "picked.csv"
    result = CliRunner().invoke(app, ["review", "export", str(project), "--pool", str(pool), "--out", str(out),
                                      "--set", "data.id_field=uid", *args])
    return result, (list(csv.DictReader(io.StringIO(out.read_text()))) if out.exists() else [])


def test_uncertainty_picks_what_the_model_scores_lowest_without_duplicates_or_pii(pool_project):
    from tunewise.config import load_config
    from tunewise.data.dedup import near_pairs
    from tunewise.data.pii import find_pii
    from tunewise.data.resolve import resolve_splits
    from tunewise.data.select import drop_near_duplicates, read_pool, redact_rows
    from tunewise.rungs.table import build_rung

    project, pool = pool_project
    result, picked = _export(project, pool, "-n", "8", "--strategy", "uncertainty")
    assert result.exit_code == 0, result.output
    assert len(picked) == 8 and "picked 8 of 44 pool rows" in result.output and "1 empty" in result.output
    ids = [r["id"] for r in picked]
    assert "copy-of-labelled" not in ids and not {"p3", "copy-of-p3"} <= set(ids) and "blank" not in ids
    # The same model, refitted here, ranks every candidate row: the picks are its 8 least sure rows.
    config = load_config(project, ["data.id_field=uid"])
    splits = resolve_splits(config, project)
    rows = read_pool(pool, "text", "uid").rows
    redact_rows(rows)
    rows, dropped = drop_near_duplicates(rows, [r.input for r in (*splits.train, *splits.val, *splits.test)], 0.8)
    assert dropped == {"pool_near_duplicates": 1, "near_duplicates_of_labelled": 1}
    rung = build_rung("embedding-classifier", config, project, project / "tmp", lambda *a: lambda *b, **c: None)
    preds = rung.fit(splits.train, splits.val).predict(rows)
    top = {r.id: max(np.exp(list(p.scores.values()))) for r, p in zip(rows, preds, strict=True)}
    cutoff = sorted(top.values())[7]
    assert all(top[i] <= cutoff + 1e-9 for i in ids)
    assert max(top[i] for i in ids) < min(v for k, v in top.items() if k not in ids) + 1e-9
    for r in picked:
        assert r["flags"].startswith("uncertainty;top_p=") and abs(float(r["flags"].split("=")[1].split(";")[0]) - top[r["id"]]) < 1e-3
        assert r["suggested_target"] in ("business", "sports", "tech") and r["corrected_target"] == ""
        assert not find_pii(r["input"])
    assert not near_pairs([r["input"] for r in picked], 0.8)
    record = json.loads((project / "picked.selection.json").read_text())
    assert record["ids"] == ids and record["pii_redacted"] == 1
    assert record["warning"] == ""  # 12 train rows a label: past the point where uncertainty trailed random


def test_uncertainty_on_a_tiny_train_split_says_random_may_serve_better(pool_project):
    project, pool = pool_project
    result, picked = _export(project, pool, "-n", "3", "--set", "data.split.train=0.2", "--set", "data.split.val=0.6")
    assert result.exit_code == 0, result.output
    assert len(picked) == 3 and "uncertainty picks did worse than random" in result.output
    assert "rows per label" in json.loads((project / "picked.selection.json").read_text())["warning"]


@pytest.mark.parametrize("strategy", ["diverse", "random"])
def test_diverse_and_random_pick_distinct_redacted_rows(pool_project, strategy):
    from tunewise.data.pii import find_pii

    project, pool = pool_project
    result, picked = _export(project, pool, "-n", "50", "--strategy", strategy)
    assert result.exit_code == 0, result.output
    # 44 rows: 1 blank, 1 copy within the pool, 1 copy of a labelled row leave 41, all picked
    assert len(picked) == 41 and len({r["id"] for r in picked}) == 41
    pii = next(r for r in picked if r["id"] == "pii")
    assert "[EMAIL]" in pii["input"] and "pii_redacted" in pii["flags"]
    assert not any(find_pii(r["input"]) for r in picked)


def test_bad_pool_and_options_fail_in_one_line(pool_project, tmp_path):
    project, _ = pool_project
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "the market"}\n{"body": "no text field"}\n')
    result, _ = _export(project, bad, "-n", "1")
    assert result.exit_code == 1 and f"{bad}:2: missing field 'text'" in result.output
    result, _ = _export(project, bad, "-n", "1", "--strategy", "smart")
    assert result.exit_code == 2 and "--strategy 'smart'" in result.output
    result, _ = _export(project, bad)
    assert result.exit_code == 2 and "-n" in result.output
    assert "Traceback" not in result.output


def test_a_messy_pool_in_jsonl_and_csv_is_read_row_by_row(pool_project, tmp_path):
    """Blank lines are not rows; a row that already holds a target is left out of the picks and said;
    a row without the input field stops the export with the file, line and field."""
    project, _ = pool_project
    jsonl = tmp_path / "messy.jsonl"
    jsonl.write_text('{"uid": "a", "text": "the market shares news"}\n\n'
                     '{"uid": "b", "text": "the phone games news", "label": "tech"}\n'
                     '{"uid": "c", "text": "the goal cup news", "label": ""}\n')
    table = tmp_path / "messy.csv"
    table.write_text("uid,text,label\r\na,the market shares news,\r\n\r\nb,the phone games news,tech\r\n"
                     "c,the goal cup news,\r\n")
    for pool, line in ((jsonl, 3), (table, 4)):
        result, picked = _export(project, pool, "-n", "5", "--strategy", "random")
        assert result.exit_code == 0, result.output
        assert sorted(r["id"] for r in picked) == ["a", "c"]  # b is labelled already
        said = f"1 rows already hold a 'label' (task.target_field), e.g. line {line}: left out of the picks"
        assert said.replace(" ", "") in "".join(result.output.split())  # the log wraps it
        record = json.loads((project / "picked.selection.json").read_text())
        assert record["skipped_labelled"] == [f"{pool.name}:{line}"] and record["pool_rows"] == 3
    table.write_text("uid,text,label\na,the market shares news,\nb\n")
    result, _ = _export(project, table, "-n", "1", "--strategy", "random")
    assert result.exit_code == 1 and f"{table}:3: expected 3 columns, got 1 (no value for 'text', 'label')" in result.output
    assert "Traceback" not in result.output

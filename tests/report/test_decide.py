"""The recommendation follows from a non-inferiority margin on the paired CI and the computed cost."""

from __future__ import annotations

from ladder_fixture import fake_ladder, fake_rung

from tunewise.evaluate.stats import noninferiority_rows
from tunewise.report.decide import recommend


def test_a_cheaper_rung_shown_within_the_margin_wins_and_says_dont_fine_tune():
    # Same seed: few-shot is right on a subset of lora's items, 0.5 points apart on 2,000 rows.
    ladder = fake_ladder([
        fake_rung("few-shot", 0.875, 0, 40, 300, n=2000, seed=1),
        fake_rung("lora", 0.88, 600, 40, 60, n=2000, seed=1),
    ])
    rec = ladder["recommendation"]
    assert ladder["rungs"][0]["paired_vs_best"]["diff_ci"][0] > -0.02
    assert rec["rung"] == "few-shot" and rec["decided"] and rec["status"]["few-shot"] == "non-inferior"
    assert "don't fine-tune" in rec["reason"] and "of the cost" in rec["reason"] and "within 2 points" in rec["reason"]
    assert "too small" not in rec["reason"]


def test_a_ci_straddling_the_margin_is_too_small_to_decide_and_names_the_rows_needed():
    # 80 rows, 4 points apart: the 95% CI runs from well below -2 points to above it. A clearly worse
    # zero-shot is decided, so the ladder as a whole is informative and the best is kept.
    ladder = fake_ladder([
        fake_rung("zero-shot", 0.3, 0, 30, 60, n=80, seed=7),
        fake_rung("few-shot", 0.84, 0, 40, 300, n=80, seed=1),
        fake_rung("lora", 0.88, 600, 40, 60, n=80, seed=1),
    ])
    rec = ladder["recommendation"]
    few = ladder["rungs"][1]["paired_vs_best"]
    assert few["diff_ci"][0] <= -0.02 < few["diff_ci"][1]
    assert few["p_value"] >= 0.05  # "not significantly worse" would have called this a tie
    assert rec["rung"] == "lora" and not rec["decided"] and rec["status"]["zero-shot"] == "worse"
    (open_,) = rec["undecided"]
    rows = noninferiority_rows(few["diff"], few["diff_sd"], 0.02)
    assert open_ == {"rung": "few-shot", "rows_needed": rows} and rows > 80
    assert "too small to decide whether few-shot" in rec["reason"] and f"about {rows:,} test rows" in rec["reason"]


def test_a_split_too_small_to_tell_rungs_apart_withholds_and_names_the_rows():
    # The case: a one-row test split. Nothing is decided and a power calculation says why.
    ladder = fake_ladder([fake_rung("few-shot", 1.0, 0, 40, 300, n=1, seed=1),
                          fake_rung("lora", 1.0, 600, 40, 60, n=1, seed=1)])
    rec = ladder["recommendation"]
    assert rec["rung"] is None and rec["withheld"] and rec["provisional"] == "few-shot"
    assert rec["rows_needed"] > 1000 and f"needs about {rec['rows_needed']:,} test rows" in rec["reason"]
    lo, hi = ladder["rungs"][0]["metrics"]["accuracy_ci"]
    assert hi - lo > 0.5  # Wilson from one row, not "100.0 (100.0-100.0)"
    # 80 rows 4 points apart and nothing else decided: withheld too, not "lora" by default.
    small = fake_ladder([fake_rung("few-shot", 0.84, 0, 40, 300, n=80, seed=1),
                         fake_rung("lora", 0.88, 600, 40, 60, n=80, seed=1)])["recommendation"]
    assert small["rung"] is None and small["rows_needed"] > 80


def test_a_rung_without_its_primary_metric_is_not_measured_and_never_recommended():
    nan_rung = fake_rung("zero-shot", 0.9, 0, 1, 60, n=400, seed=2)
    nan_rung["metrics"]["accuracy"] = float("nan")
    ladder = fake_ladder([nan_rung, fake_rung("lora", 0.8, 600, 40, 60, n=400, seed=3)])
    rec = ladder["recommendation"]
    assert rec["rung"] == "lora" and rec["status"]["zero-shot"] == "not measured"
    assert "Not measured" in rec["reason"] and "zero-shot" in rec["reason"]
    assert ladder["rungs"][0]["paired_vs_best"]["not_measured"]


def test_a_cheaper_rung_clearly_worse_leaves_the_best_recommended():
    ladder = fake_ladder([
        fake_rung("zero-shot", 0.4, 0, 40, 60, n=200, seed=2),
        fake_rung("lora", 0.95, 600, 40, 60, n=200, seed=3),
    ])
    rec = ladder["recommendation"]
    assert rec["rung"] == "lora" and rec["decided"] and rec["status"]["zero-shot"] == "worse"
    assert "fine-tune" in rec["reason"] and "95% CI" in rec["reason"] and "McNemar" in rec["reason"]
    assert "too small" not in rec["reason"]


def test_a_wider_margin_accepts_what_the_default_leaves_open():
    rungs = [fake_rung("few-shot", 0.84, 0, 40, 300, n=80, seed=1), fake_rung("lora", 0.88, 600, 40, 60, n=80, seed=1)]
    ladder = fake_ladder(rungs)
    lo = ladder["rungs"][0]["paired_vs_best"]["diff_ci"][0]
    wide = recommend(ladder["rungs"], margin=-lo + 0.02)
    assert wide["rung"] == "few-shot" and wide["decided"]


def test_computed_cost_not_the_fixed_order_ranks_ties():
    # Zero-shot is first in the fixed order, but the embedding classifier is far cheaper to run.
    ladder = fake_ladder([
        fake_rung("zero-shot", 0.9, 0, 400, 120, n=2000, seed=4),
        fake_rung("embedding-classifier", 0.9, 5, 3, 128, n=2000, seed=4),
    ])
    assert ladder["recommendation"]["rung"] == "embedding-classifier"


def test_only_one_rung():
    ladder = fake_ladder([fake_rung("zero-shot", 0.5, 0, 40, 60)])
    assert ladder["recommendation"]["rung"] == "zero-shot"


def test_rows_needed_by_hand():
    # (z_0.975 + z_0.8) = 1.95996 + 0.84162 = 2.80158; (2.80158 × 0.5 / 0.02)² = 4905.5
    assert noninferiority_rows(0.0, 0.5, 0.02) == 4906
    assert noninferiority_rows(-0.04, 0.5, 0.02) == 4906  # as far beyond the margin: as many rows to show it
    assert noninferiority_rows(-0.02, 0.5, 0.02) is None
    assert noninferiority_rows(0.01, 0.0, 0.02) is None


def _with_draws(rung: dict, accuracies: list[float], n: int) -> dict:
    """Give a rung several example-set draws, each a fake rung's items on the same test rows."""
    rung["draws"] = []
    for i, acc in enumerate(accuracies):
        d = fake_rung(rung["name"], acc, 0, 40, 300, n=n, seed=1)
        rung["draws"].append({"seed": i, "value": d["metrics"]["accuracy"], "item_scores": d["item_scores"]})
    return rung


def test_prompting_as_good_is_withheld_when_the_example_sets_disagree():
    # Set 0 (served) is as good as lora; sets 1 and 2 are 15 points worse: the verdict flips with the draw.
    few = _with_draws(fake_rung("few-shot", 0.875, 0, 40, 300, n=2000, seed=1), [0.875, 0.73, 0.72], 2000)
    ladder = fake_ladder([few, fake_rung("lora", 0.88, 600, 40, 60, n=2000, seed=1)])
    rec = ladder["recommendation"]
    assert rec["status"]["few-shot"] == "flips" and rec["flips"] == ["few-shot"]
    assert rec["rung"] == "lora" and "don't fine-tune" not in rec["reason"]
    assert "verdict flips with the random draw" in rec["reason"] and "1 of 3 example sets" in rec["reason"]
    d = ladder["rungs"][0]["draw_summary"]
    assert d["k"] == 3 and d["ci"][0] < d["min"] <= d["max"] < d["ci"][1]  # the spread of draws is in the CI
    assert all("item_scores" not in x for x in ladder["rungs"][0]["draws"])  # ladder.json keeps every set, small


def test_prompting_as_good_holds_when_every_example_set_is_within_the_margin():
    few = _with_draws(fake_rung("few-shot", 0.875, 0, 40, 300, n=2000, seed=1), [0.875, 0.876, 0.874], 2000)
    rec = fake_ladder([few, fake_rung("lora", 0.88, 600, 40, 60, n=2000, seed=1)])["recommendation"]
    assert rec["rung"] == "few-shot" and rec["status"]["few-shot"] == "non-inferior" and "don't fine-tune" in rec["reason"]


def test_the_report_shows_every_sets_score_and_the_spread():
    from tunewise.report.build import render_html, render_markdown

    few = _with_draws(fake_rung("few-shot", 0.875, 0, 40, 300, n=2000, seed=1), [0.875, 0.73, 0.72], 2000)
    ladder = fake_ladder([few, fake_rung("lora", 0.88, 600, 40, 60, n=2000, seed=1)])
    d = ladder["rungs"][0]["draw_summary"]
    for text in (render_markdown(ladder), render_html(ladder)):
        assert "few-shot across 3 example sets (seeds 0, 1, 2)" in text and f"SD {100 * d['sd']:.1f} points" in text

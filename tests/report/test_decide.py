"""The recommendation follows from the paired tests and the measured cost."""

from __future__ import annotations

from ladder_fixture import fake_ladder, fake_rung


def test_cheap_rung_within_noise_of_lora_wins_and_says_dont_fine_tune():
    ladder = fake_ladder([
        fake_rung("few-shot", 0.86, 0, 40, 300, n=80, seed=1),
        fake_rung("lora", 0.88, 600, 40, 60, n=80, seed=1),
    ])
    rec = ladder["recommendation"]
    assert ladder["rungs"][0]["paired_vs_best"]["p_value"] >= 0.05
    assert rec["rung"] == "few-shot" and "don't fine-tune" in rec["reason"] and "of the cost" in rec["reason"]


def test_significant_lora_win_says_fine_tune_with_ci():
    ladder = fake_ladder([
        fake_rung("zero-shot", 0.4, 0, 40, 60, n=200, seed=2),
        fake_rung("lora", 0.95, 600, 40, 60, n=200, seed=3),
    ])
    rec = ladder["recommendation"]
    assert rec["rung"] == "lora"
    assert "fine-tune" in rec["reason"] and "95% CI" in rec["reason"] and "McNemar" in rec["reason"]


def test_measured_cost_not_the_fixed_order_ranks_ties():
    # Zero-shot is first in the fixed order, but the embedding classifier is far cheaper to run.
    ladder = fake_ladder([
        fake_rung("zero-shot", 0.9, 0, 400, 120, n=60, seed=4),
        fake_rung("embedding-classifier", 0.9, 5, 3, 128, n=60, seed=4),
    ])
    assert ladder["recommendation"]["rung"] == "embedding-classifier"


def test_only_one_rung():
    ladder = fake_ladder([fake_rung("zero-shot", 0.5, 0, 40, 60)])
    assert ladder["recommendation"]["rung"] == "zero-shot"

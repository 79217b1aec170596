"""Metric and test values checked against scikit-learn and scipy on fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from tunewise.evaluate.metrics import classification_report, confusion, macro_f1
from tunewise.evaluate.stats import bootstrap_ci, interval, mcnemar, p_above, paired_stats, paired_summary, wilson_ci


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n_labels = 4
    y_true = rng.integers(0, n_labels, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, n_labels, 200))
    assert (confusion(y_true, y_pred, n_labels) == confusion_matrix(y_true, y_pred, labels=range(n_labels))).all()
    assert macro_f1(y_true, y_pred, n_labels) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    report = classification_report(y_true, y_pred, ["a", "b", "c", "d"])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(n_labels), zero_division=0)
    for i, lab in enumerate("abcd"):
        got = report["per_class"][lab]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
    assert report["accuracy"] == pytest.approx((y_true == y_pred).mean())


def test_macro_f1_leaves_out_labels_absent_from_the_truth():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 1, 1, 1])
    # Label 2 never occurs: scikit-learn with labels=[0, 1] is the reference.
    assert macro_f1(y_true, y_pred, 3) == pytest.approx(f1_score(y_true, y_pred, labels=[0, 1], average="macro"))


@pytest.mark.parametrize(("a_only", "b_only"), [(0, 0), (3, 1), (10, 2), (7, 7), (0, 9), (25, 11)])
def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs(a_only, b_only):
    a = np.array([True] * a_only + [False] * b_only + [True] * 20 + [False] * 5)
    b = np.array([False] * a_only + [True] * b_only + [True] * 20 + [False] * 5)
    result = mcnemar(a, b)
    assert (result["a_only"], result["b_only"]) == (a_only, b_only)
    expected = 1.0 if a_only + b_only == 0 else sps.binomtest(a_only, a_only + b_only, 0.5).pvalue
    assert result["p_value"] == pytest.approx(expected)


def test_wilson_interval_by_hand_and_never_zero_width():
    # Wilson: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n); 1 of 1 right: (1/(1+z²), 1).
    z = sps.norm.ppf(0.975)
    assert wilson_ci(1, 1) == pytest.approx((1 / (1 + z * z), 1.0))
    lo, hi = wilson_ci(0, 40)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(z * z / (40 + z * z))
    k, n = 210, 300
    p = k / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_ci(k, n) == pytest.approx(((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)))


def test_bootstrap_ci_of_a_mean_agrees_with_the_normal_approximation():
    x = np.random.default_rng(4).normal(2.0, 1.0, 150)
    lo, hi = bootstrap_ci(np.mean, (x,), resamples=3000, seed=1)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.03) and hi == pytest.approx(x.mean() + half, abs=0.03)
    assert bootstrap_ci(np.mean, (x[:1],)) != bootstrap_ci(np.mean, (x[:1],))  # nan: one item has no spread


def test_paired_t_interval_and_its_inverted_p_match_scipy():
    rng = np.random.default_rng(5)
    base = rng.random(200)
    better = base + 0.05 + rng.normal(0, 0.01, 200)
    gap = paired_summary(better, base)
    t = sps.ttest_rel(better, base).confidence_interval(0.95)
    assert gap["test"] == "paired-t" and gap["diff_ci"] == pytest.approx([t.low, t.high])
    st = paired_stats(better, base)
    assert 0.049 < gap["diff"] < 0.051
    for bound in (0.047, 0.048, 0.049):
        ref = sps.ttest_1samp(better - base, bound, alternative="greater").pvalue
        assert p_above(st, bound) == pytest.approx(ref, rel=1e-3, abs=1e-8)
    assert p_above(st, 0.06) == 1.0  # the observed difference is not above the bound: reported as 1


def test_newcombe_paired_interval_covers_the_true_difference_under_the_null():
    # Two rungs right on 80% of items, disagreeing on 10%: the true difference is 0.
    rng = np.random.default_rng(6)
    trials, n, missed = 400, 60, 0
    for _ in range(trials):
        u = rng.random(n)
        a, b = u < 0.8, (u < 0.75) | ((u >= 0.8) & (u < 0.85))
        lo, hi = interval(paired_stats(a.astype(float), b.astype(float)))
        missed += not lo <= 0.0 <= hi
    assert missed / trials <= 0.06
    # One row, both right: an interval that says it knows nothing, not "0.0 (0.0-0.0)".
    lo, hi = interval(paired_stats(np.ones(1), np.ones(1)))
    assert lo < -0.5 and hi > 0.5


def test_wilson_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for k, n in [(0, 1), (1, 1), (3, 7), (50, 80), (799, 800)]:
        assert wilson_ci(k, n) == pytest.approx(proportion_confint(k, n, 0.05, method="wilson"))

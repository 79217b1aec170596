"""Metric and test values checked against scikit-learn and scipy on fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from tunewise.evaluate.metrics import classification_report, confusion, macro_f1
from tunewise.evaluate.stats import accuracy_ci, bootstrap_ci, mcnemar, paired_bootstrap_diff


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


def test_accuracy_ci_agrees_with_scipy_bootstrap_percentile():
    correct = (np.random.default_rng(3).random(300) < 0.7).astype(float)
    lo, hi = accuracy_ci(correct, resamples=4000, seed=0)
    ref = sps.bootstrap((correct,), np.mean, n_resamples=4000, method="percentile", random_state=0).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)
    # The normal approximation of a proportion is a second, independent reference.
    half = 1.96 * np.sqrt(correct.mean() * (1 - correct.mean()) / len(correct))
    assert hi - lo == pytest.approx(2 * half, rel=0.1)


def test_bootstrap_ci_of_a_mean_agrees_with_scipy():
    x = np.random.default_rng(4).normal(2.0, 1.0, 150)
    lo, hi = bootstrap_ci(lambda idx: x[idx].mean(), len(x), resamples=3000, seed=1)
    ref = sps.bootstrap((x,), np.mean, n_resamples=3000, method="percentile", random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.03) and hi == pytest.approx(ref.high, abs=0.03)


def test_paired_bootstrap_separates_a_real_gap_from_none():
    rng = np.random.default_rng(5)
    base = rng.random(200)
    better = base + 0.05 + rng.normal(0, 0.01, 200)  # better on almost every item
    same = paired_bootstrap_diff(lambda idx, s: base[idx].mean(), 200, 1000, 0)
    gap = paired_bootstrap_diff(lambda idx, s: (better if s == "a" else base)[idx].mean(), 200, 1000, 0)
    assert same["p_value"] == 1.0 and same["diff_ci"] == [0.0, 0.0]
    assert gap["p_value"] < 0.01 and 0.045 < gap["diff_ci"][0] < 0.05 < gap["diff_ci"][1] < 0.055
    # The paired t-test on the same items is the analytic reference for the gap's interval.
    t = sps.ttest_rel(better, base).confidence_interval(0.95)
    assert gap["diff_ci"] == pytest.approx([t.low, t.high], abs=0.002)

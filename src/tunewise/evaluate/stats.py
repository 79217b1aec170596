"""Bootstrap confidence intervals and paired tests between rungs scored on the same items."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats as sps


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], n: int, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of ``statistic(indices)`` over resamples of the n item indices."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def accuracy_ci(correct: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    # Vectorised: one (resamples, n) matrix of resampled indices.
    rng = np.random.default_rng(seed)
    n = len(correct)
    means = correct[rng.integers(0, n, (resamples, n))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact McNemar test on the discordant pairs: did A and B err on different items by chance?"""
    a_only = int(np.sum(correct_a & ~correct_b))
    b_only = int(np.sum(~correct_a & correct_b))
    n = a_only + b_only
    p = 1.0 if n == 0 else float(min(1.0, 2 * sps.binom.cdf(min(a_only, b_only), n, 0.5)))
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


def paired_bootstrap_diff(
    statistic: Callable[[np.ndarray, str], float], n: int, resamples: int = 1000, seed: int = 0
) -> dict:
    """CI of statistic(idx, 'a') - statistic(idx, 'b') on the same resampled items, and a p-value."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        diffs.append(statistic(idx, "a") - statistic(idx, "b"))
    diffs = np.array(diffs)
    p = 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())
    return {
        "diff_ci": [float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))],
        "p_value": float(min(1.0, p)),
    }


def noninferiority_rows(diff: float, sd: float, margin: float, level: float = 0.95, power: float = 0.8) -> int | None:
    """Test items needed for a paired difference's CI at ``level`` to settle against ``-margin`` with
    ``power``, if the true difference and per-item SD are those observed (normal approximation):
    n = ((z_(1-a/2) + z_power) · sd / |diff + margin|)². None when it cannot be settled: the observed
    difference sits exactly on the margin, or the items never differ."""
    from statistics import NormalDist

    gap = abs(diff + margin)
    if gap < 1e-12 or sd <= 0:
        return None
    z = NormalDist().inv_cdf(1 - (1 - level) / 2) + NormalDist().inv_cdf(power)
    return math.ceil((z * sd / gap) ** 2)

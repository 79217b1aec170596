"""Intervals and paired tests between rungs scored on the same items: one implementation of each.

- A proportion (accuracy, exact match, any right/wrong item score): the Wilson score interval
  (statsmodels). It is never zero-width, even from one row, unlike a bootstrap percentile interval.
- Any other statistic of items (macro-F1, mean content F1): scipy.stats.bootstrap, percentile method.
- A paired difference of two rungs on right/wrong items: Newcombe's hybrid score interval for paired
  proportions (method 10, built from the two Wilson intervals and the phi correlation); on graded
  items: the paired t interval. Both are inverted into a one-sided p-value against a margin so the
  multiple-testing correction (Holm, statsmodels) works on the same interval the report shows.
- McNemar's exact test (statsmodels) for "did A and B err on different items by chance".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar
from statsmodels.stats.multitest import multipletests

LEVEL = 0.95  # every interval in the report; its one-sided tail, 0.025, is the non-inferiority alpha
_Z = NormalDist()


def is_binary(values: np.ndarray) -> bool:
    v = values[~np.isnan(values)]
    return bool(len(v)) and bool(np.isin(v, (0.0, 1.0)).all())


def wilson_ci(successes: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion (the closed form statsmodels' proportion_confint
    method="wilson" computes, written out because the p-value inversion calls it thousands of times);
    (nan, nan) when n is 0."""
    if n == 0:
        return float("nan"), float("nan")
    z = _Z.inv_cdf(1 - (1 - level) / 2) if level > 0 else 0.0
    p, z2 = successes / n, z * z
    centre, half = p + z2 / (2 * n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # All right (or all wrong) has an exact end at 1 (or 0); the closed form lands a rounding error short.
    lo = 0.0 if successes <= 0 else max(0.0, (centre - half) / (1 + z2 / n))
    hi = 1.0 if successes >= n else min(1.0, (centre + half) / (1 + z2 / n))
    return lo, hi


def bootstrap_ci(statistic: Callable[..., float], data: tuple[np.ndarray, ...], resamples: int = 1000,
                 seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of ``statistic(*data)`` over paired resamples of the items (scipy.stats.bootstrap).
    (nan, nan) when fewer than two items: a resample of one item says nothing about spread."""
    if len(data[0]) < 2:
        return float("nan"), float("nan")
    res = sps.bootstrap(data, statistic, n_resamples=resamples, paired=True, vectorized=False,
                        confidence_level=level, method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci(values: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """CI of the mean of the non-NaN item scores: Wilson when they are right/wrong, else bootstrap."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if is_binary(v):
        return wilson_ci(float(v.sum()), len(v))
    return bootstrap_ci(np.mean, (v,), resamples, seed)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact McNemar test on the discordant pairs: did A and B err on different items by chance?"""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    table = [[int(np.sum(a & b)), a_only], [b_only, int(np.sum(~a & ~b))]]
    p = 1.0 if a_only + b_only == 0 else float(_sm_mcnemar(table, exact=True).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


def paired_stats(a: np.ndarray, b: np.ndarray) -> dict:
    """The sufficient statistics of a - b on the items both scored (NaN items dropped): the 2x2 table
    [both right, a only, b only, neither] for right/wrong items, else the mean, SD and n of a - b."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if is_binary(a) and is_binary(b):
        x, y = a.astype(bool), b.astype(bool)
        return {"table": [int(np.sum(x & y)), int(np.sum(x & ~y)), int(np.sum(~x & y)), int(np.sum(~x & ~y))]}
    d = a - b
    return {"mean": float(d.mean()) if len(d) else float("nan"), "sd": float(np.std(d, ddof=1)) if len(d) > 1 else 0.0,
            "n": int(len(d))}


def _newcombe(table: list[int], level: float) -> tuple[float, float]:
    """Newcombe (1998) method 10 interval of p_a - p_b for paired right/wrong items."""
    both, a_only, b_only, neither = (float(x) for x in table)
    n = both + a_only + b_only + neither
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson_ci(both + a_only, int(n), level)
    l2, u2 = wilson_ci(both + b_only, int(n), level)
    denom = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    phi = (both * neither - a_only * b_only) / math.sqrt(denom) if denom > 0 else 0.0
    d = p1 - p2
    lo = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    hi = d + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return lo, hi


def interval(st: dict, level: float = LEVEL) -> tuple[float, float]:
    """Two-sided interval at ``level`` of the paired difference described by ``paired_stats``."""
    if "table" in st:
        return _newcombe(st["table"], level) if sum(st["table"]) else (float("nan"), float("nan"))
    if st["n"] < 2:
        return (float("nan"), float("nan")) if st["n"] == 0 else (float("-inf"), float("inf"))
    half = sps.t.ppf(1 - (1 - level) / 2, st["n"] - 1) * st["sd"] / math.sqrt(st["n"])
    return st["mean"] - half, st["mean"] + half


def n_of(st: dict) -> int:
    return sum(st["table"]) if "table" in st else st["n"]


def diff_of(st: dict) -> float:
    if "table" in st:
        n = sum(st["table"])
        return (st["table"][1] - st["table"][2]) / n if n else float("nan")
    return st["mean"]


def sd_of(st: dict) -> float:
    """Per-item SD of the paired difference (right/wrong items: from the discordant counts)."""
    if "table" not in st:
        return st["sd"]
    n = sum(st["table"])
    if n < 2:
        return 0.0
    d = diff_of(st)
    return math.sqrt(max(0.0, ((st["table"][1] + st["table"][2]) / n - d * d) * n / (n - 1)))


def p_above(st: dict, bound: float) -> float:
    """One-sided p-value of H0: true difference <= ``bound``, by inverting ``interval``: the smallest tail
    probability at which the interval's lower bound clears ``bound`` (bisection on its logarithm, since
    p-values span decades). So the test the correction works on is the interval the report shows.
    When the observed difference is not above ``bound`` the p-value is at least 0.5; it is reported as 1."""
    if n_of(st) == 0 or not diff_of(st) > bound:
        return 1.0
    if "table" not in st:  # the t interval inverts in closed form
        if st["n"] < 2:
            return 1.0
        return float(sps.t.sf((st["mean"] - bound) / (st["sd"] / math.sqrt(st["n"])), st["n"] - 1)) if st["sd"] > 0 else 0.0
    lo_p, hi_p = 1e-9, 0.5
    if interval(st, 1 - 2 * lo_p)[0] > bound:
        return lo_p
    for _ in range(30):
        mid = math.sqrt(lo_p * hi_p)
        if interval(st, 1 - 2 * mid)[0] > bound:
            hi_p = mid
        else:
            lo_p = mid
    return float(hi_p)


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Holm's step-down correction (statsmodels): which of the hypotheses are rejected at family ``alpha``."""
    if not p_values:
        return []
    return [bool(x) for x in multipletests(p_values, alpha=alpha, method="holm")[0]]


def paired_summary(a: np.ndarray, b: np.ndarray) -> dict:
    """What the report shows of a - b: mean difference, its 95% interval and which one, n, the per-item
    SD, a two-sided test of any difference (exact McNemar or paired t), and the sufficient statistics."""
    st = paired_stats(a, b)
    lo, hi = interval(st)
    out = {"diff": diff_of(st), "diff_ci": [lo, hi], "n": n_of(st), "diff_sd": sd_of(st), "stats": st}
    if "table" in st:
        both, a_only, b_only, neither = st["table"]
        p = 1.0 if a_only + b_only == 0 else float(_sm_mcnemar([[both, a_only], [b_only, neither]], exact=True).pvalue)
        out.update(test="mcnemar", interval="Newcombe hybrid score", a_only=a_only, b_only=b_only, p_value=p)
    else:
        p = float(sps.ttest_1samp(np.asarray(a, float) - np.asarray(b, float), 0.0, nan_policy="omit").pvalue) \
            if st["n"] > 1 and st["sd"] > 0 else 1.0
        out.update(test="paired-t", interval="paired t", p_value=p)
    return out


def rows_for_noninferiority(sd: float, margin: float, diff: float = 0.0, alpha: float = (1 - LEVEL) / 2,
                            power: float = 0.8) -> int | None:
    """Test items needed to show non-inferiority at ``margin`` (one-sided ``alpha``) with ``power`` when
    the true paired difference is ``diff`` and its per-item SD is ``sd`` (normal approximation):
    n = ((z_(1-alpha) + z_power) · sd / (diff + margin))². None when no size would show it."""
    gap = diff + margin
    if gap <= 1e-12 or sd <= 0:
        return None
    z = _Z.inv_cdf(1 - alpha) + _Z.inv_cdf(power)
    return math.ceil((z * sd / gap) ** 2)


def noninferiority_rows(diff: float, sd: float, margin: float, power: float = 0.8) -> int | None:
    """Test items needed for a paired difference's 95% interval to settle against ``-margin`` with
    ``power``, if the true difference and per-item SD are those observed: ``rows_for_noninferiority``
    with the distance to the margin taken either way (showing "worse" needs as many rows as "within").
    None when it cannot be settled (the difference sits on the margin, or the items never differ)."""
    gap = abs(diff + margin)
    return rows_for_noninferiority(sd, gap, 0.0, power=power) if gap >= 1e-12 else None

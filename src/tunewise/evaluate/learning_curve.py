"""Learning curves: a saturating inverse power law fitted to quality measured at nested train sizes,
its bootstrap uncertainty, and what it projects.

The law is ``q(n) = a - b * n**(-c)``: ``a`` the quality more data tends to, ``b`` and ``c`` how fast
it gets there (Hestness et al. 2017; Figueroa et al. 2012 for small-sample classifiers). Each size
is trained with several seeds (a different subset drawn and the rung's own seed) and every run is
scored on the same frozen test items. One bootstrap resample draws the test items (the same indices at
every size) and, at each size, the training runs (with replacement): a two-level bootstrap, so the
spread of the refitted curves holds both the test split's noise and the training variance. That
spread is the uncertainty of the curve, of a projection and of a crossing size. A curve is only
fitted when it can be identified: at least ``MIN_SIZES`` sizes, a largest size measurably better than
the smallest (otherwise the curve is flat within noise and any extrapolation would be invented), and
most bootstrap refits converging (otherwise there is no band to draw, and none is invented).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

MIN_SIZES = 4  # three parameters; a fourth point is the least that leaves something to check them against
MIN_CONVERGED = 0.5  # share of bootstrap refits that must converge for the band to mean anything


def power_law(n, a, b, c):
    return a - b * np.power(np.asarray(n, dtype=float), -c)


def fit_power_law(sizes, values) -> tuple[float, float, float] | None:
    """(a, b, c) by bounded least squares, or None when the fit does not converge."""
    from scipy.optimize import curve_fit

    n, v = np.asarray(sizes, dtype=float), np.asarray(values, dtype=float)
    spread = max(float(v.max() - v.min()), 1e-3)
    p0 = (min(float(v.max()) + 0.01, 0.999), spread * np.sqrt(n.min()) * 2, 0.5)
    # a in [0, 1]: every metric here is a mean of item scores in [0, 1]; b >= 0: more data never
    # lowers the expected quality; c in [0.01, 2]: slower than any sensible curve, faster than 1/n^2.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, _ = curve_fit(power_law, n, v, p0=p0, bounds=([0.0, 0.0, 0.01], [1.0, np.inf, 2.0]), maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return tuple(float(x) for x in popt)


def size_for(params, target: float) -> float:
    """The train size at which the curve reaches ``target`` (inf when its asymptote stays below)."""
    a, b, c = params
    if target >= a:
        return float("inf")
    if b <= 0:
        return 0.0
    return float((b / (a - target)) ** (1 / c))


@dataclass
class Fit:
    """A fitted curve (``params``) or the reason there is none, plus the bootstrap refits."""

    sizes: list[int]
    values: list[float]
    params: tuple[float, float, float] | None
    boots: np.ndarray  # (resamples that converged, 3)
    reason: str = ""
    value_ci: list[list[float]] | None = None  # per size: 95% interval over test items and training runs
    seeds: int = 1

    @property
    def ok(self) -> bool:
        return self.params is not None

    def at(self, n: float) -> tuple[float, float, float]:
        """Quality at size n and its 95% interval over the bootstrap refits."""
        point = float(power_law(n, *self.params))
        refits = power_law(n, self.boots[:, 0], self.boots[:, 1], self.boots[:, 2])
        return point, float(np.quantile(refits, 0.025)), float(np.quantile(refits, 0.975))

    def gain(self, n0: float, n1: float) -> tuple[float, float, float]:
        """Quality at n1 minus quality at n0, with its 95% interval."""
        point = float(power_law(n1, *self.params) - power_law(n0, *self.params))
        b = self.boots
        refits = power_law(n1, b[:, 0], b[:, 1], b[:, 2]) - power_law(n0, b[:, 0], b[:, 1], b[:, 2])
        return point, float(np.quantile(refits, 0.025)), float(np.quantile(refits, 0.975))

    def size_to_reach(self, target: float) -> dict:
        """Size at which the curve reaches ``target``: point, 95% interval, share of refits that never do."""
        refits = np.array([size_for(p, target) for p in self.boots])
        # inverted_cdf: no interpolation between two infinite refits
        lo, hi = (np.quantile(refits, q, method="inverted_cdf") for q in (0.025, 0.975))
        return {"n": _finite(size_for(self.params, target)), "ci": [_finite(lo), _finite(hi)],
                "never_share": round(float(np.isinf(refits).mean()), 4)}

    def band(self, upto: float, points: int = 40) -> list[dict]:
        grid = np.geomspace(min(self.sizes), max(upto, max(self.sizes)), points)
        return [dict(zip(("n", "value", "lo", "hi"), (round(float(n), 2), *(round(x, 5) for x in self.at(n))),
                         strict=True)) for n in grid]

    def to_json(self) -> dict:
        if not self.ok:
            return {"ok": False, "reason": self.reason}
        a_lo, a_hi = np.quantile(self.boots[:, 0], [0.025, 0.975])
        return {"ok": True, "law": "q(n) = a - b * n^(-c)", "a": round(self.params[0], 5),
                "b": round(self.params[1], 5), "c": round(self.params[2], 5),
                "a_ci": [round(float(a_lo), 5), round(float(a_hi), 5)], "converged_resamples": len(self.boots)}


def _finite(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 1)


def resample_values(items: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples, sizes): the mean quality at each size under the two-level bootstrap of the module doc.

    ``items`` is (sizes, runs, test items); the same test-item draw serves every size of a resample."""
    n_sizes, runs, n_items = items.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_items, (resamples, n_items))
    picks = rng.integers(0, runs, (resamples, n_sizes, runs))
    out = np.empty((resamples, n_sizes))
    for s in range(n_sizes):
        per_run = np.stack([items[s, r][idx].mean(1) for r in range(runs)], axis=1)  # (resamples, runs)
        out[:, s] = np.take_along_axis(per_run, picks[:, s], axis=1).mean(1)
    return out


def fit_curve(sizes: list[int], items: np.ndarray, resamples: int = 1000, seed: int = 0) -> Fit:
    """Fit the law to ``items``: per size, one row of per-test-item scores per training run
    (sizes, runs, items), or one run per size (sizes, items); the same test items in every row.

    No fit (``reason`` says why) with fewer than ``MIN_SIZES`` sizes, when the largest size is not
    better than the smallest beyond the bootstrap's 95% interval, when least squares fails, or when
    fewer than ``MIN_CONVERGED`` of the bootstrap refits converge (no band rather than a false one).
    """
    items = np.asarray(items, dtype=float)
    if items.ndim == 2:
        items = items[:, None, :]
    values = items.mean(axis=(1, 2))
    boot_values = resample_values(items, resamples, seed)
    ci = np.quantile(boot_values, [0.025, 0.975], axis=0).T
    base = Fit(list(sizes), [round(float(v), 5) for v in values], None, np.zeros((0, 3)),
               value_ci=[[round(float(lo), 5), round(float(hi), 5)] for lo, hi in ci], seeds=items.shape[1])
    if len(set(sizes)) < MIN_SIZES:
        base.reason = (f"not identifiable: {len(set(sizes))} sizes measured; a saturating curve has 3 parameters, "
                       f"so it needs at least {MIN_SIZES} sizes")
        return base
    lo_size, hi_size = int(np.argmin(sizes)), int(np.argmax(sizes))
    diffs = boot_values[:, hi_size] - boot_values[:, lo_size]
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    if lo <= 0:
        base.reason = (f"flat: {max(sizes):,} rows score {100 * (values[hi_size] - values[lo_size]):+.1f} points "
                       f"against {min(sizes):,} (95% CI {100 * lo:+.1f} to {100 * hi:+.1f}), not measurably "
                       "better, so no curve is extrapolated")
        return base
    params = fit_power_law(sizes, values)
    if params is None:
        base.reason = "the least-squares fit did not converge, so there is no curve and no band"
        return base
    boots = [p for p in (fit_power_law(sizes, row) for row in boot_values) if p is not None]
    if len(boots) < MIN_CONVERGED * resamples:
        base.reason = (f"only {len(boots)} of {resamples} bootstrap refits converged, so the curve's uncertainty "
                       "cannot be told: no band and no projection")
        return base
    base.params, base.boots = params, np.array(boots)
    return base

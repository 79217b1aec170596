"""The drift statistics of one window against the reference, on plain arrays (no model here).

Every test comes from scipy or scikit-learn: the embedding test is a permutation test
(``scipy.stats.permutation_test``) of the squared MMD with an RBF kernel; the label mix is a
chi-square test of homogeneity against the frozen test split's predicted labels (Monte Carlo p-value)
plus the population stability index; confidence is a one-sided Mann-Whitney U test; the
out-of-distribution rate is a one-sided Fisher exact test against the frozen test split's share beyond
the training rows' 99th percentile; input length is a two-sample Kolmogorov-Smirnov test.
Every test is two-sample: the reference side is a sample too, and a test that takes it as exact
(a goodness-of-fit test against the test split's label mix, a count against the training rows' own
share beyond a threshold set on those very rows) alarms on unchanged windows more often than alpha.
Label-free accuracy is NannyML's CBPE idea: the top-label probability calibrated on the frozen test
split (isotonic regression), averaged over the window.

False alarms are controlled per window: the tests of one window are corrected together with
Benjamini-Hochberg (``window_significant``), never across windows. A correction over the whole log
(Bonferroni over every window and test) made each window's test stricter the longer the log ran,
so a long-running monitor went deaf; alpha spending over windows has the same flaw once its budget
is spent. Per window, BH at ``alpha`` keeps the chance that an unchanged window alarms at most
``alpha`` (with every hypothesis null, BH's false discovery rate is its family-wise rate), and, unlike
Bonferroni within the window, it does not lose power when several signals move together, as they do
under real drift. The price is said plainly in monitor.json: about ``alpha`` of unchanged windows
may alarm on the p-value alone, which is why each alarm also needs its effect size.

Memory is bounded: the kernel test compares the reference sample with at most ``kernel_rows`` rows
of a window (a seeded sample), so its kernel matrix never exceeds (reference + kernel_rows)^2.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import stats as sps

WORD = re.compile(r"[^\W\d_]+")
ROLE_LINE = re.compile(r"^(system|user|assistant|tool): ", re.MULTILINE)


def user_text(text: str, messages: list[dict] | None = None) -> str:
    """What the user wrote. Chat rows are compared by their user turns: the system prompt is the same in
    every row and would dominate, and a server may log the user's message alone or the whole transcript."""
    if messages:
        return "\n".join(m["content"] for m in messages if m.get("role") == "user")
    if not ROLE_LINE.match(text):
        return text
    parts = ROLE_LINE.split(text)  # ["", role, content, role, content, ...]
    return "\n".join(parts[i + 1].strip() for i in range(1, len(parts) - 1, 2) if parts[i] == "user")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def rbf_bandwidth(x: np.ndarray) -> float:
    """The median pairwise distance of the reference (the usual median heuristic)."""
    d = np.sqrt(np.maximum(2 - 2 * x @ x.T, 0)) if np.allclose(np.linalg.norm(x, axis=1), 1) else \
        np.linalg.norm(x[:, None] - x[None], axis=-1)
    return float(np.median(d[np.triu_indices(len(x), 1)])) or 1.0


def subsample(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """At most ``size`` rows of x, a seeded sample without replacement (x itself when it is small)."""
    if len(x) <= size:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size, replace=False))]


def window_significant(p_values: dict[str, float], alpha: float) -> dict[str, float]:
    """Benjamini-Hochberg over one window's tests: the adjusted p-value of each (significant when < alpha)."""
    from statsmodels.stats.multitest import multipletests

    names = [k for k, p in p_values.items() if p is not None and not np.isnan(p)]
    if not names:
        return {}
    adjusted = multipletests([p_values[k] for k in names], alpha=alpha, method="fdr_bh")[1]
    return {k: float(q) for k, q in zip(names, adjusted, strict=True)}


def mmd_test(ref: np.ndarray, win: np.ndarray, bandwidth: float, resamples: int, seed: int,
             max_rows: int | None = None) -> dict:
    """Squared MMD (biased estimate, RBF kernel) of reference vs window, with a permutation p-value.

    A window longer than ``max_rows`` is tested on a seeded sample of that many rows, so memory is
    bounded by the sample, not the window ("rows_tested" says how many were used)."""
    n_window = len(win)
    if max_rows is not None:
        win = subsample(win, max_rows, seed)
    pooled = np.vstack([ref, win])
    sq = np.maximum((pooled ** 2).sum(1)[:, None] + (pooled ** 2).sum(1)[None] - 2 * pooled @ pooled.T, 0)
    k = np.exp(-sq / (2 * bandwidth ** 2))

    n_all, row_sum, total = len(pooled), k.sum(1), k.sum()

    def mmd2(x, y, axis=-1):
        # x: (batch, n) indices of the "reference" side; y is its complement. With z the indicator of
        # x, the three kernel means are quadratic forms in z: one matrix product per batch.
        x = np.atleast_2d(x).astype(int)
        z = np.zeros((len(x), n_all))
        np.put_along_axis(z, x, 1.0, axis=1)
        m, n = x.shape[1], n_all - x.shape[1]
        zkz = np.einsum("bi,bi->b", z @ k, z)
        cross = z @ row_sum - zkz
        return zkz / m ** 2 + (total - 2 * (z @ row_sum) + zkz) / n ** 2 - 2 * cross / (m * n)

    idx_ref, idx_win = np.arange(len(ref)), np.arange(len(ref), len(pooled))
    res = sps.permutation_test((idx_ref, idx_win), mmd2, permutation_type="independent", vectorized=True,
                               n_resamples=resamples, alternative="greater", batch=500,
                               rng=np.random.default_rng(seed))
    stat = float(np.squeeze(res.statistic))
    # The biased estimate is positive even with no shift; the effect is its excess over the null's mean.
    return {"mmd2": stat, "excess": stat - float(np.mean(res.null_distribution)), "p_value": float(res.pvalue),
            "rows_tested": len(win), "rows": n_window}


def label_shift(ref_counts: np.ndarray, win_counts: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    """Whether the window's predicted labels are mixed as the frozen test split's are, and PSI.

    A test of homogeneity of two samples (a window x label table), not goodness of fit to the test
    split's mix: that mix is itself estimated from the split's rows, and taking it as exact inflates the
    statistic by about 1 + window/split under the null (at 0.05: 6.9% of unchanged windows with a split
    ten times the window, 1.45% instead of 0.83% at 0.05/6, BH's first step). The p-value is Monte Carlo
    over tables with the observed margins (scipy's ``MonteCarloMethod``, p = (hits + 1) / (resamples + 1)),
    so a rarely predicted label does not break the chi-square approximation."""
    table = np.array([win_counts, ref_counts])
    table = table[:, table.sum(0) > 0]  # a label neither side predicted carries no information
    n = int(win_counts.sum())
    if table.shape[1] < 2 or n == 0:
        chi2, p = 0.0, 1.0
    else:
        res = sps.chi2_contingency(table, correction=False,
                                   method=sps.MonteCarloMethod(n_resamples=resamples, rng=np.random.default_rng(seed)))
        chi2, p = float(res.statistic), float(res.pvalue)
    # Half a count of smoothing keeps labels the reference never predicted from dividing by zero.
    ref_p = (ref_counts + 0.5) / (ref_counts + 0.5).sum()
    win_p = (win_counts + 0.5) / (win_counts + 0.5).sum()
    psi = float(np.sum((win_p - ref_p) * np.log(win_p / ref_p)))
    return {"chi2": chi2, "p_value": p, "psi": psi, "window_share": (win_counts / max(n, 1)).round(4).tolist()}


def confidence_drop(ref_conf: np.ndarray, win_conf: np.ndarray) -> dict:
    test = sps.mannwhitneyu(win_conf, ref_conf, alternative="less")
    return {"mean": float(win_conf.mean()), "drop": float(ref_conf.mean() - win_conf.mean()),
            "p_value": float(test.pvalue)}


def nearest_distance(x: np.ndarray, ref: np.ndarray, exclude_self: bool = False, chunk: int = 512) -> np.ndarray:
    """Cosine distance of each row of x to its nearest row of ref (unit-length embeddings)."""
    out = []
    for i in range(0, len(x), chunk):
        sim = x[i : i + chunk] @ ref.T
        if exclude_self:
            sim[np.arange(len(sim)), np.arange(i, i + len(sim))] = -np.inf
        out.append(1 - sim.max(1))
    return np.concatenate(out) if out else np.zeros(0)


def ood_rate(win_dist: np.ndarray, threshold: float, ref_far: int, ref_n: int) -> dict:
    """Share of the window beyond the "far" threshold, against the share of ``ref_n`` held-out rows (the
    frozen test split) beyond it: one-sided Fisher exact test.

    Held-out rows, not the training rows' own leave-one-out distances: the threshold is the 99th
    percentile of those very distances, so their share beyond it is 1% by construction, while a fresh
    row's chance of passing it depends on how the threshold happened to fall (1.5% for the synthetic
    reference of bench/monitor_vs_peers.py, which made 17.5% of its unchanged windows significant at
    0.05). Test rows are measured against the same training rows and threshold as a window's rows, so
    given the training data both counts are binomial with the same rate and the test is exact.
    Nor a binomial test against a nominal 1% (on 85 training rows a fresh row passes the threshold
    about 2% of the time)."""
    k, n = int((win_dist > threshold).sum()), len(win_dist)
    p = sps.fisher_exact([[k, n - k], [ref_far, ref_n - ref_far]], alternative="greater").pvalue
    return {"rate": k / max(n, 1), "count": k, "expected": ref_far / max(ref_n, 1), "p_value": float(p)}


def length_shift(ref_len: np.ndarray, win_len: np.ndarray) -> dict:
    test = sps.ks_2samp(win_len, ref_len)
    return {"ks": float(test.statistic), "p_value": float(test.pvalue), "median_words": float(np.median(win_len))}


def new_vocab_rate(texts: list[str], vocab: set[str]) -> float:
    tokens = [w for t in texts for w in words(t)]
    return sum(w not in vocab for w in tokens) / max(len(tokens), 1)


def fit_calibrator(conf: np.ndarray, correct: np.ndarray):
    """Isotonic map from the top-label probability to the chance the top label is right."""
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(conf, correct.astype(float))


def cbpe_accuracy(calibrator, conf: np.ndarray) -> float:
    """Expected accuracy of a window without labels: the mean calibrated top-label probability."""
    return float(np.mean(calibrator.predict(conf))) if len(conf) else float("nan")


def cbpe_drop(calibrator, ref_conf: np.ndarray, win_conf: np.ndarray) -> dict:
    """The window's expected accuracy, and a one-sided Mann-Whitney U test that its calibrated
    probabilities sit below the frozen test split's (a window of hard but familiar inputs is noise)."""
    win, ref = calibrator.predict(win_conf), calibrator.predict(ref_conf)
    return {"accuracy": float(win.mean()), "p_value": float(sps.mannwhitneyu(win, ref, alternative="less").pvalue)}

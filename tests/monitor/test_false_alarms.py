"""The monitor's statistics under the null, on a synthetic reference (no model): the per-window false-alarm
rate stays near alpha and does not fall as the log grows; the kernel test's memory is bounded by its
sample, not the window; repeated labelled requests count once and no count goes negative."""

from __future__ import annotations

import itertools
import tracemalloc
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tunewise.config import MonitorConfig
from tunewise.monitor import drift
from tunewise.monitor.reference import Reference
from tunewise.monitor.requestlog import Served
from tunewise.monitor.run import assess, attach_labels

LABELS = ["a", "b", "c"]
UID = itertools.count()
DIM = 8
W = np.random.default_rng(99).normal(size=(DIM, 3)) * 2


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def predict(emb):
    from scipy.special import softmax

    return softmax(emb @ W, axis=1)


def draw(rng, n):
    """n requests from the one distribution: an embedding and a word count per row."""
    return unit(rng.normal(size=(n, DIM))), rng.poisson(8, n) + 1


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    train, train_len = draw(rng, 1500)
    test, _ = draw(rng, 300)
    own = drift.nearest_distance(train, train, exclude_self=True)
    threshold = float(np.quantile(own, 0.99))
    probs = predict(test)
    conf = probs.max(1)
    correct = rng.uniform(size=len(conf)) < conf  # calibrated: right as often as it is confident
    sample = train[rng.choice(len(train), 100, replace=False)]
    table: dict[str, np.ndarray] = {}
    ref = Reference(labels=LABELS, embed=lambda texts: np.array([table[t] for t in texts]), train_emb=train,
                    sample=sample, bandwidth=drift.rbf_bandwidth(sample), nn_threshold=threshold,
                    nn_far=int((own > threshold).sum()), train_len=train_len, vocab={"w", "id"}, test_new_vocab=0.0,
                    dataset="synthetic", rung="synthetic", source="synthetic", predict=predict, test_conf=conf,
                    test_counts=np.bincount(probs.argmax(1), minlength=3), test_accuracy=float(correct.mean()),
                    n_test=len(conf), calibrator=drift.fit_calibrator(conf, correct),
                    ladder={"accuracy": float(correct.mean()), "n_test": len(conf)})
    return ref, table


def null_log(ref, table, rng, n_windows, size=30):
    emb, lengths = draw(rng, n_windows * size)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(len(emb)):
        text = "w " * (int(lengths[i]) - 1) + f"id{next(UID)}"  # lengths[i] words, a unique text
        table[text] = emb[i]
        rows.append(Served(id=str(i), input=text, ts=start + timedelta(hours=i // size, seconds=i % size)))
    return rows


# Effect sizes at their floor: only the p-values decide, which is what the correction must control.
NULL = MonitorConfig(alpha=0.2, min_window=30, window="hour", permutations=100, reference_size=100, min_mmd=0,
                     max_psi=0, max_confidence_drop=0, max_ood_rate=1e-9, max_length_ks=1e-9, max_new_vocab=1,
                     max_accuracy_drop=1e-9)


def false_alarm_rate(reference, n_windows, n_logs, seed):
    ref, table = reference
    rng = np.random.default_rng(seed)
    alarmed = total = 0
    for j in range(n_logs):
        result = assess(ref, null_log(ref, table, rng, n_windows), True, NULL)
        alarmed += sum(bool(w["alarms"]) for w in result["windows"] if w["tested"])
        total += sum(w["tested"] for w in result["windows"])
    return alarmed / total


def test_per_window_false_alarms_stay_near_alpha_and_do_not_fall_with_log_length(reference):
    short = false_alarm_rate(reference, 5, 24, seed=1)     # 120 windows in logs of 5
    long = false_alarm_rate(reference, 50, 3, seed=2)      # 150 windows in logs of 50
    # At most alpha (0.2) with room for simulation noise (SE ~0.035), and not deaf: a correction over the
    # whole log would test each of 50 windows at 1/10 of the level of each of 5 windows.
    assert short <= 0.2 + 0.07 and long <= 0.2 + 0.07
    assert short >= 0.03 and long >= 0.03
    assert long >= 0.5 * short, (short, long)


def test_kernel_test_of_a_50k_row_window_stays_within_its_memory_bound():
    window = unit(np.random.default_rng(5).standard_normal((50_000, 384), dtype=np.float32))
    sample = unit(np.random.default_rng(6).normal(size=(300, 384)))
    bandwidth = drift.rbf_bandwidth(sample)
    tracemalloc.start()
    out = drift.mmd_test(sample, window, bandwidth, 200, 0, max_rows=500)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out["rows_tested"] == 500 and out["rows"] == 50_000
    # (300 + 500)² kernel entries and a batch of permutation indicators; the full 50,300² kernel is ~20 GB.
    assert peak < 64 * 2 ** 20, f"peak {peak / 2 ** 20:.0f} MiB"
    # The sample is seeded: the same window gives the same answer.
    assert drift.mmd_test(sample, window, bandwidth, 200, 0, max_rows=500) == out


def test_repeated_labelled_requests_count_once_and_counts_stay_non_negative(reference):
    ref, table = reference
    rows = null_log(ref, table, np.random.default_rng(3), 2)
    from tunewise.data.dedup import normalise

    repeated = rows + [Served(id=f"r{i}", input=rows[0].input, ts=rows[-1].ts) for i in range(200)]
    result = assess(ref, repeated, True, NULL)
    labelled = {normalise(r.input): "a" for r in rows[:10]}
    labelled["an input never served"] = "b"
    out = attach_labels(ref, result, repeated, labelled, 100, 0)
    assert out["n"] == 10 and out["repeats_in_log"] == 200
    assert out["not_in_log"] == 1 and out["matched_of"] == 11
    assert sum(w.get("labelled", {}).get("n", 0) for w in result["windows"]) == 10

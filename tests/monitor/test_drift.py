"""The drift statistics on synthetic arrays: silent on a sample of the reference, loud on a shift."""

from __future__ import annotations

import numpy as np
import pytest

from tunewise.monitor import drift


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def ref():
    return unit(np.random.default_rng(0).normal(size=(200, 16)))


def test_mmd_is_silent_on_the_same_distribution_and_fires_on_a_shift(ref):
    rng = np.random.default_rng(1)
    bw = drift.rbf_bandwidth(ref)
    same = drift.mmd_test(ref, unit(rng.normal(size=(30, 16))), bw, 500, 0)
    moved = drift.mmd_test(ref, unit(rng.normal(size=(30, 16)) + 0.8), bw, 500, 0)
    assert same["p_value"] > 0.05 and abs(same["excess"]) < 0.01
    assert moved["p_value"] < 0.01 and moved["excess"] > 0.05


def test_mmd_matches_the_direct_formula(ref):
    win = unit(np.random.default_rng(2).normal(size=(20, 16)))
    bw = drift.rbf_bandwidth(ref)
    pooled = np.vstack([ref, win])
    k = np.exp(-((pooled[:, None] - pooled[None]) ** 2).sum(-1) / (2 * bw ** 2))
    direct = k[:200, :200].mean() + k[200:, 200:].mean() - 2 * k[:200, 200:].mean()
    assert drift.mmd_test(ref, win, bw, 100, 0)["mmd2"] == pytest.approx(direct, rel=1e-6)


def test_label_shift_psi_and_chi_square():
    ref = np.array([100, 100, 100])
    same = drift.label_shift(ref, np.array([10, 11, 9]))
    skew = drift.label_shift(ref, np.array([26, 2, 2]))
    assert same["p_value"] > 0.5 and same["psi"] < 0.05
    # A Monte Carlo p-value is at least 1 / (resamples + 1).
    assert skew["p_value"] == pytest.approx(1 / 2001) and skew["psi"] > 0.5
    # Two samples: the same skew against a 6-row test split is no evidence (as exact proportions it was p < 1e-4).
    assert drift.label_shift(np.array([2, 2, 2]), np.array([26, 2, 2]))["p_value"] > 0.01


def test_ood_rate_compares_the_window_with_a_reference_share():
    dist = np.array([0.1] * 27 + [0.9] * 3)
    # Against 10 far rows in 1,000 held-out rows, 3 of 30 is far more than chance.
    out = drift.ood_rate(dist, threshold=0.5, ref_far=10, ref_n=1000)
    assert out["count"] == 3 and out["rate"] == pytest.approx(0.1) and out["expected"] == pytest.approx(0.01)
    assert out["p_value"] < 0.01
    assert drift.ood_rate(np.full(30, 0.1), 0.5, 10, 1000)["p_value"] == 1.0
    # 85 reference rows, one beyond the threshold: 3 of 30 is not evidence (a binomial test at 1% said p=0.003).
    assert drift.ood_rate(dist, 0.5, 1, 85)["p_value"] > 0.05


def test_nearest_distance_can_leave_each_row_out(ref):
    assert np.allclose(drift.nearest_distance(ref, ref), 0, atol=1e-6)
    assert (drift.nearest_distance(ref, ref, exclude_self=True) > 0.01).all()


def test_cbpe_estimates_accuracy_from_calibrated_confidence():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 2000)
    # An overconfident model: right with probability conf - 0.2.
    correct = rng.uniform(size=2000) < conf - 0.2
    cal = drift.fit_calibrator(conf, correct)
    fresh = rng.uniform(0.3, 1.0, 500)
    assert drift.cbpe_accuracy(cal, fresh) == pytest.approx(np.mean(fresh - 0.2), abs=0.03)
    assert fresh.mean() - drift.cbpe_accuracy(cal, fresh) > 0.15  # the raw confidence would overstate it


def test_length_and_new_vocabulary():
    ref = np.array([10, 12, 11, 9, 10, 13, 12, 11] * 10)
    assert drift.length_shift(ref, np.array([40, 45, 50] * 10))["p_value"] < 1e-6
    assert drift.new_vocab_rate(["the cat sat", "a dog ran"], {"the", "cat", "sat", "a"}) == pytest.approx(2 / 6)


def test_chat_rows_and_logged_transcripts_are_compared_by_their_user_turns():
    messages = [{"role": "system", "content": "You are the shop's assistant."}, {"role": "user", "content": "Hats?"},
                {"role": "assistant", "content": "Yes."}, {"role": "user", "content": "And socks?"}]
    assert drift.user_text("ignored", messages) == "Hats?\nAnd socks?"
    assert drift.user_text("system: You are the shop's assistant.\nuser: Hats?") == "Hats?"
    assert drift.user_text("note: a plain request") == "note: a plain request"

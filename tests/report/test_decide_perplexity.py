"""Lower is better for perplexity: the one decision procedure turns it round and says whether domain adaptation paid."""

from __future__ import annotations

import numpy as np

from tunewise.report.decide import compare, recommend


def rung(name: str, nll: np.ndarray, tokens: np.ndarray, train_usd: float) -> dict:
    total = tokens.sum()
    return {"name": name, "primary": "perplexity",
            "metrics": {"perplexity": float(np.exp(nll.sum() / total)), "nll_per_token": float(nll.sum() / total)},
            "item_scores": (len(nll) * nll / total).tolist(),
            "cost": {"usd_first_month": 1.0 + train_usd}}


def decide(base_nll_per_token: float, lora_nll_per_token: float) -> dict:
    rng = np.random.default_rng(0)
    tokens = rng.integers(40, 200, size=60).astype(float)
    noise = rng.normal(0, 0.05, size=60)
    base = (base_nll_per_token + noise) * tokens
    lora = (lora_nll_per_token + noise + rng.normal(0, 0.01, size=60)) * tokens
    rungs = [rung("zero-shot", base, tokens, 0.0), rung("lora", lora, tokens, 0.5)]
    compare(rungs)
    return recommend(rungs, 0.02, {}, "text")


def test_lower_perplexity_beyond_the_margin_means_adaptation_paid():
    rec = decide(3.3, 3.1)
    assert rec["rung"] == "lora" and rec["best"] == "lora" and rec["status"]["zero-shot"] == "worse"
    assert "domain adaptation paid" in rec["reason"] and "lowest perplexity" in rec["reason"]
    assert "perplexity ×1.2" in rec["reason"]  # zero-shot's perplexity as a ratio to the best's: exp(0.2)


def test_a_trained_rung_no_better_than_the_base_means_adaptation_did_not_pay():
    rec = decide(3.1, 3.3)
    assert rec["rung"] == "zero-shot" and rec["status"]["lora"] == "worse"
    assert "domain adaptation did not pay" in rec["reason"]
    same = decide(3.1, 3.1)  # within the margin: the cheaper base model is enough
    assert same["rung"] == "zero-shot" and "domain adaptation did not pay" in same["reason"]

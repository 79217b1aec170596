"""A synthetic but internally consistent ladder.json, built with the real compare/recommend code."""

from __future__ import annotations

import numpy as np

from tunewise.config import CostConfig
from tunewise.evaluate.cost import add_break_even, resolve_prices, rung_cost
from tunewise.evaluate.metrics import evaluate_classification
from tunewise.ladder import compare
from tunewise.report.decide import recommend

LABELS = ["business", "sports", "tech"]
PRICES = resolve_prices(CostConfig(usd_per_hour=1.0))


def fake_rung(name: str, accuracy: float, train_s: float, ms: float, tokens: float, n: int = 120, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    targets = [LABELS[i % 3] for i in range(n)]
    right = rng.random(n) < accuracy
    outputs = [t if ok else LABELS[(LABELS.index(t) + 1) % 3] for t, ok in zip(targets, right, strict=True)]
    metrics = evaluate_classification(targets, outputs, LABELS, 200, 0)
    history = [{"step": s, "loss": 2.0 / s} for s in range(1, 20)] + [{"step": 10, "eval_loss": 0.4}] if train_s else []
    return {
        "name": name, "primary": "accuracy", "metrics": metrics, "train_seconds": train_s, "train_tokens": 0,
        "ms_per_example": ms, "prompt_tokens_per_request": tokens,
        "cost": rung_cost(train_s, ms, tokens, PRICES),
        "worst_errors": [{"id": "7", "input": "the <b>market</b> & shares", "target": "business", "output": "sports"}],
        "item_scores": right.astype(float).tolist(), "binary_items": True, "train_history": history,
    }


def fake_ladder(rungs: list[dict]) -> dict:
    compare(rungs, 200, 0)
    break_even = add_break_even(rungs, PRICES)
    return {
        "project": "tiny", "task": "classification", "primary": "accuracy", "test_hash": "ab" * 32, "n_test": 120,
        "n_train": 300, "n_val": 40, "n_ood": 0, "n_rejected": 1, "dataset_dir": "/x", "labels": LABELS,
        "prices": PRICES.model_dump(), "break_even": break_even, "bootstrap": 200, "rungs": rungs,
        "recommendation": recommend(rungs), "wall_seconds": 12.0,
    }


def standard_ladder() -> dict:
    return fake_ladder([
        fake_rung("zero-shot", 0.5, 0, 300, 120, seed=1),
        fake_rung("few-shot", 0.7, 0, 350, 400, seed=2),
        fake_rung("embedding-classifier", 0.9, 20, 5, 128, seed=3),
        fake_rung("lora", 0.92, 600, 300, 120, seed=4),
    ])

"""A synthetic but internally consistent ladder.json, built with the real compare/recommend code."""

from __future__ import annotations

import numpy as np

from tunewise.config import CostConfig
from tunewise.evaluate.cost import add_break_even, cost_spread, resolve_prices, rung_cost
from tunewise.evaluate.metrics import evaluate_classification
from tunewise.ladder import compare
from tunewise.report.decide import recommend

LABELS = ["business", "sports", "tech"]
PRICES = resolve_prices(CostConfig(usd_per_hour=1.0))
THROUGHPUT = {"gflops": 50.0, "gflops_q1": 45.0, "gflops_q3": 55.0, "samples": 18, "measured_at": "2026-01-01T00:00:00Z",
              "machine": {"cpu": "Test CPU", "threads": 2}, "source": "/x/throughput.json"}


def fake_rung(name: str, accuracy: float, train_s: float, ms: float, tokens: float, n: int = 120, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    targets = [LABELS[i % 3] for i in range(n)]
    right = rng.random(n) < accuracy
    outputs = [t if ok else LABELS[(LABELS.index(t) + 1) % 3] for t, ok in zip(targets, right, strict=True)]
    metrics = evaluate_classification(targets, outputs, LABELS, 200, 0)
    history = [{"step": s, "loss": 2.0 / s} for s in range(1, 20)] + [{"step": 10, "eval_loss": 0.4}] if train_s else []
    # FLOPs that take ``ms`` and ``train_s`` at THROUGHPUT, so the priced figures are the given ones.
    flops, train_flops = ms / 1000 * THROUGHPUT["gflops"] * 1e9, train_s * THROUGHPUT["gflops"] * 1e9
    compute = {"flops_per_request": flops, "train_flops": train_flops, "ms_per_request": ms, "train_seconds": train_s}
    return {
        "name": name, "primary": "accuracy", "metrics": metrics, "train_seconds": train_s, "train_tokens": 0,
        "ms_per_example": ms, "prompt_tokens_per_request": tokens,
        "cost": rung_cost(train_s, ms, tokens, PRICES), "compute": compute,
        "cost_spread_per_1k": cost_spread(compute, tokens, PRICES, THROUGHPUT),
        "latency": {"median_ms": ms * 1.5, "q1_ms": ms * 1.2, "q3_ms": ms * 1.9, "examples": 8, "repeats": 3},
        "worst_errors": [{"id": "7", "input": "the <b>market</b> & shares", "target": "business", "output": "sports"}],
        "item_scores": right.astype(float).tolist(), "binary_items": True, "train_history": history,
    }


def fake_ladder(rungs: list[dict]) -> dict:
    compare(rungs, 200, 0)
    break_even = add_break_even(rungs, PRICES, THROUGHPUT)
    return {
        "project": "tiny", "task": "classification", "primary": "accuracy", "test_hash": "ab" * 32, "n_test": 120,
        "n_train": 300, "n_val": 40, "n_ood": 0, "n_rejected": 1, "dataset_dir": "/x", "labels": LABELS,
        "prices": PRICES.model_dump(), "throughput": THROUGHPUT, "break_even": break_even, "bootstrap": 200,
        "margin": 0.02, "timing": {"examples": 8, "repeats": 3, "batch_size": 8}, "rungs": rungs,
        "recommendation": recommend(rungs), "wall_seconds": 12.0,
    }


def standard_ladder() -> dict:
    return fake_ladder([
        fake_rung("zero-shot", 0.5, 0, 300, 120, seed=1),
        fake_rung("few-shot", 0.7, 0, 350, 400, seed=2),
        fake_rung("embedding-classifier", 0.9, 20, 5, 128, seed=3),
        fake_rung("lora", 0.92, 600, 300, 120, seed=4),
    ])

"""A synthetic but internally consistent ladder.json, built with the real compare/recommend code."""

from __future__ import annotations

import numpy as np

from tunewise.config import CostConfig
from tunewise.evaluate.cost import add_break_even, resolve_prices, rung_cost
from tunewise.evaluate.metrics import evaluate_classification
from tunewise.report.decide import compare
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
        "compute": compute,  # priced by add_break_even, as the ladder prices its rungs
        "latency": {"median_ms": ms * 1.5, "q1_ms": ms * 1.2, "q3_ms": ms * 1.9, "examples": 8, "repeats": 3},
        "worst_errors": [{"id": "7", "input": "the <b>market</b> & shares", "target": "business", "output": "sports"}],
        "item_scores": right.astype(float).tolist(), "binary_items": True, "train_history": history,
    }


def fake_ladder(rungs: list[dict]) -> dict:
    compare(rungs)
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


def standard_curve(n_test: int = 400) -> dict:
    """A curve.json built with the real fit and analysis code from simulated per-item scores:
    one trained rung that keeps improving, one prompting rung measured once."""
    from types import SimpleNamespace

    from tunewise.config import ProjectConfig
    from tunewise.curve import analyse
    from tunewise.evaluate.learning_curve import fit_curve, power_law

    config = ProjectConfig.model_validate({
        "name": "tiny", "task": {"type": "classification", "labels": LABELS}, "data": {"files": ["a.jsonl"]},
        "model": {"base": "x"}, "eval": {"bootstrap": 200}, "labeling": {"usd_per_row": 0.5}, "cost": PRICES.model_dump()})
    sizes = [25, 50, 100, 200, 300]
    rng = np.random.default_rng(0)
    items = (rng.random((len(sizes), n_test)) < power_law(sizes, 0.92, 1.2, 0.55)[:, None]).astype(float)

    def point(n: int, scores: np.ndarray, train_s: float, ms: float) -> dict:
        v = float(scores.mean())
        return {"n": n, "value": v, "ci": [v - 0.04, v + 0.04], "train_seconds": train_s, "ms_per_example": ms,
                "prompt_tokens_per_request": 60.0, "cost": rung_cost(train_s, ms, 60.0, PRICES)}

    trained = [point(n, s, 0.01 * n, 2.0) for n, s in zip(sizes, items, strict=True)]
    prompt = rng.random(n_test) < 0.78
    results = [("few-shot", [point(300, prompt.astype(float), 0.0, 90.0)], None),
               ("embedding-classifier", trained, fit_curve(sizes, items, 200, 0))]
    splits = SimpleNamespace(train=[None] * 300, test=[None] * n_test, test_hash="ab" * 32,
                             record=lambda: {"dir": "/x", "hash": "cd" * 32, "note": ""})
    return analyse(config, splits, results, sizes, 300, [])

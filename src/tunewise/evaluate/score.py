"""Score one rung's predictions on the test split by task type, keeping per-item scores for paired tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tunewise.config import ProjectConfig
from tunewise.core import Prediction, Record

# The metric each task type is ranked and tested on; every other metric is reported beside it.
PRIMARY = {"classification": "accuracy", "extraction": "field_f1", "generation": "rouge_l"}


@dataclass
class Scored:
    metrics: dict
    primary: str
    item_scores: np.ndarray  # one score per test item, in [0, 1]; its mean is the primary metric
    binary: bool  # 0/1 item scores: McNemar applies


def score_predictions(config: ProjectConfig, records: list[Record], preds: list[Prediction],
                      passages: list[list[str]] | None = None, schema: dict | None = None) -> Scored:
    task, ev = config.task, config.eval
    if task.type == "classification":
        from tunewise.evaluate.metrics import evaluate_classification

        metrics = evaluate_classification(
            [r.target for r in records], [p.output for p in preds], task.labels, ev.bootstrap, config.data.seed
        )
        correct = np.array([p.output == r.target for p, r in zip(preds, records, strict=True)], dtype=float)
        return Scored(metrics, "accuracy", correct, True)
    if task.type == "extraction":
        from tunewise.evaluate.text_metrics import evaluate_extraction

        metrics, items = evaluate_extraction(config, records, preds, schema)
        return Scored(metrics, "field_f1", items, False)
    from tunewise.evaluate.text_metrics import evaluate_generation

    metrics, items = evaluate_generation(config, records, preds, passages)
    return Scored(metrics, "rouge_l", items, False)


def worst_errors(records: list[Record], preds: list[Prediction], item_scores: np.ndarray, n: int = 5,
                 excerpt: int = 400) -> list[dict]:
    """The n worst test items: lowest item score; among wrong labels, the most confident first."""

    def confidence(p: Prediction, r: Record) -> float:
        if not p.scores or r.target not in p.scores:
            return 0.0
        return p.scores[p.output] - p.scores[r.target]

    order = sorted(range(len(records)), key=lambda i: (item_scores[i], -confidence(preds[i], records[i])))
    out = []
    for i in order[:n]:
        if item_scores[i] >= 1.0:
            break
        r, p = records[i], preds[i]
        text = r.input if len(r.input) <= excerpt else r.input[:excerpt] + " …"
        out.append({"id": r.id, "input": text, "target": r.target, "output": p.output,
                    "score": round(float(item_scores[i]), 4), "source": r.source})
    return out

"""Score one rung's predictions on the test split by task type, keeping per-item scores for paired tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tunewise.config import ConfigError, ProjectConfig
from tunewise.core import Prediction, Record

# The metric each task type is ranked and tested on unless `eval.primary` names another; every
# other metric is reported beside it. Generation ranks on content, not on surface overlap: ROUGE-L
# scores an answer that copies the template and invents the facts near one that states them.
PRIMARY = {"classification": "accuracy", "extraction": "field_f1", "generation": "content_f1", "text": "perplexity"}
WHY_PRIMARY = {
    "accuracy": "the share of test items labelled right",
    "field_f1": "F1 over the (field, value) pairs of the JSON answers",
    "content_f1": ("F1 over the answer's and the reference's content words that are not in the prompt: "
                   "template and question words count for nothing, so fluent invention scores low"),
    "perplexity": ("exp of the mean negative log-likelihood per token of the test documents (token-weighted over "
                   "the whole split; lower is better): how unsurprising the domain's text is to the model"),
}
LOWER_IS_BETTER = frozenset({"perplexity"})
"""Metrics where lower is better; the recommendation (report.decide) turns their item scores round."""


PLAIN = frozenset({"perplexity", "nll_per_token"})
"""Metrics shown as numbers, not as percentages (every other metric is a share in [0, 1])."""


def orientation(metric: str) -> int:
    """+1 where higher is better, -1 where lower is: multiplied in, every comparison is 'higher is better'."""
    return -1 if metric in LOWER_IS_BETTER else 1
# Metrics that measure what an answer says; a surface metric may not overrule them (report.content_guard).
CONTENT_METRICS = ("content_f1", "groundedness")


@dataclass
class Scored:
    metrics: dict
    primary: str
    # One score per test item, in [0, 1]; its mean is the primary metric. Perplexity: each document's share
    # of the mean NLL per token (their mean is log perplexity; lower is better, evaluate/perplexity.py).
    item_scores: np.ndarray
    binary: bool  # 0/1 item scores: McNemar applies
    items: dict[str, np.ndarray] = field(default_factory=dict)  # every per-item metric, for paired tests


# Per-item metrics a task can rank on (`eval.primary`); groundedness needs `data.documents`.
RANKABLE = {
    "classification": ("accuracy",),
    "extraction": ("field_f1", "field_precision", "field_recall", "json_valid_rate"),
    "generation": ("content_f1", "content_precision", "content_recall", "groundedness", "semantic_similarity",
                   "rouge_l", "chrf", "exact_match", "format_compliance"),
    "text": ("perplexity",),
}


def primary_metric(config: ProjectConfig) -> str:
    return config.eval.primary or PRIMARY[config.task.type]


def check_primary(config: ProjectConfig, where: str) -> None:
    """Fail before any work when `eval.primary` names a metric this task cannot rank on."""
    name, task = primary_metric(config), config.task.type
    if name not in RANKABLE[task]:
        raise ConfigError(f"{where}: bad value for 'eval.primary': {name!r} is not a metric a {task} task ranks on "
                          f"(choose from: {', '.join(RANKABLE[task])})")
    if name == "groundedness" and not config.data.documents:
        raise ConfigError(f"{where}: bad value for 'eval.primary': 'groundedness' needs 'data.documents' "
                          "(the passages answers are checked against)")


def _pick(config: ProjectConfig, items: dict[str, np.ndarray]) -> str:
    """The configured primary metric, or an error naming the key and the metrics this task has."""
    name = primary_metric(config)
    if name not in items or np.isnan(items[name]).all():
        raise ConfigError(f"bad value for 'eval.primary': {name!r} is not a per-item metric of this "
                          f"{config.task.type} task (choose from: {', '.join(sorted(items))})")
    return name


def score_predictions(config: ProjectConfig, records: list[Record], preds: list[Prediction],
                      passages: list[list[str]] | None = None, schema: dict | None = None,
                      evidence: list[list[str]] | None = None, encoder: Path | None = None) -> Scored:
    """``passages``: what the rung retrieved; ``evidence``: passages relevant to each question,
    retrieved for scoring for every rung (groundedness); ``encoder``: MiniLM for semantic similarity."""
    task, ev = config.task, config.eval
    if task.type == "classification":
        from tunewise.evaluate.metrics import evaluate_classification

        metrics = evaluate_classification(
            [r.target for r in records], [p.output for p in preds], task.labels, ev.bootstrap, config.data.seed
        )
        correct = np.array([p.output == r.target for p, r in zip(preds, records, strict=True)], dtype=float)
        items = {"accuracy": correct}
    elif task.type == "extraction":
        from tunewise.evaluate.text_metrics import evaluate_extraction

        metrics, items = evaluate_extraction(config, records, preds, schema)
    elif task.type == "text":
        from tunewise.evaluate.perplexity import evaluate_text

        metrics, items = evaluate_text([p.nll for p in preds], [p.scored_tokens for p in preds], ev.bootstrap,
                                       config.data.seed)
    else:
        from tunewise.evaluate.text_metrics import evaluate_generation

        metrics, items = evaluate_generation(config, records, preds, passages, evidence, encoder)
    name = _pick(config, items)
    scores = items[name]
    binary = bool(np.isin(scores, (0.0, 1.0)).all()) if name in ("accuracy", "exact_match", "format_compliance") else False
    # An item the metric does not apply to (NaN) scores 0 in the paired tests of the primary metric.
    return Scored(metrics, name, np.nan_to_num(scores, nan=0.0), binary, items)


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


SIDE_BY_SIDE_METRICS = ("content_f1", "groundedness", "semantic_similarity", "rouge_l")


def side_by_side(records: list[Record], scored: Scored, preds: list[Prediction], seed: int, n: int = 5,
                 excerpt: int = 300) -> dict:
    """Answers beside their references: the n worst by the primary metric and n drawn at random.

    The random draw depends only on the seed and the test split, so every rung shows the same
    questions and a reader can compare rungs row by row.
    """

    def row(i: int) -> dict:
        r, p = records[i], preds[i]
        scores = {k: round(float(scored.items[k][i]), 3) for k in (scored.primary, *SIDE_BY_SIDE_METRICS)
                  if k in scored.items and not np.isnan(scored.items[k][i])}
        # The question is usually last (after a system prompt or a context): keep the end.
        text = r.input if len(r.input) <= excerpt else "… " + r.input[-excerpt:]
        return {"id": r.id, "input": text, "target": r.target, "output": p.output, "scores": scores}

    order = np.argsort(scored.item_scores, kind="stable")[:n]
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(len(records), size=min(n, len(records)), replace=False).tolist())
    return {"metric": scored.primary, "worst": [row(int(i)) for i in order], "sample": [row(i) for i in sample]}

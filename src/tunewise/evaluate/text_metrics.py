"""Metrics for extraction (JSON fields) and generation (free text), each with 95% bootstrap CIs.

Every metric is the mean of a per-item score, so one resampling scheme gives every interval and
the same per-item scores feed the paired tests between rungs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from tunewise.config import ConfigError, ProjectConfig
from tunewise.core import Prediction, Record, canonical_json


def mean_ci(values: np.ndarray, resamples: int, seed: int) -> list[float]:
    """CI of the mean of the non-NaN values (NaN: the metric does not apply to the item); see stats.mean_ci."""
    from tunewise.evaluate import stats

    return list(stats.mean_ci(values, resamples, seed))


def _summarise(items: dict[str, np.ndarray], resamples: int, seed: int) -> dict:
    out: dict = {}
    for name, values in items.items():
        kept = values[~np.isnan(values)]
        out[name] = float(kept.mean()) if len(kept) else None
        out[f"{name}_ci"] = mean_ci(values, resamples, seed) if len(kept) else None
        out[f"{name}_n"] = len(kept)
    return out


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().lower()


# ---------------------------------------------------------------- extraction

def parse_json_object(text: str, kind: type = dict) -> dict | list | None:
    """The first JSON object (or, with kind=list, array) in a model's answer (models often wrap it
    in prose or code fences)."""
    opener = "{" if kind is dict else "["
    start = text.find(opener)
    while start != -1:
        try:
            value, _ = json.JSONDecoder().raw_decode(text[start:])
            return value if isinstance(value, kind) else None
        except json.JSONDecodeError:
            start = text.find(opener, start + 1)
    return None


def field_pairs(obj: dict | list) -> set[tuple[str, str]]:
    """(field, normalised value) pairs; a list contributes one pair per item; empty values none.
    An array target (a list of records) gives the union of its items' pairs."""
    if isinstance(obj, list):
        return set().union(*(field_pairs(v if isinstance(v, dict) else {"": v}) for v in obj))
    pairs = set()
    for key, value in obj.items():
        for v in value if isinstance(value, list) else [value]:
            if v is None or (isinstance(v, str) and not v.strip()):
                continue
            pairs.add((key, _norm(canonical_json(v) if isinstance(v, dict) else v)))
    return pairs


def load_schema(config: ProjectConfig, project: Path) -> dict:
    from tunewise.config import config_path

    where = config_path(project)
    if not config.task.json_schema:
        raise ConfigError(f"{where}: missing required key 'task.json_schema' (an extraction task validates "
                          "its JSON answers against a schema file)")
    path = Path(project) / config.task.json_schema
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{where}: bad value for 'task.json_schema': cannot read {path} as JSON ({e})") from None


def evaluate_extraction(config: ProjectConfig, records: list[Record], preds: list[Prediction],
                        schema: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """JSON validity, field-level precision/recall/F1 and hallucination rate (values absent from the input)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema or {})
    cols: dict[str, list[float]] = {k: [] for k in ("json_valid_rate", "field_precision", "field_recall",
                                                     "field_f1", "hallucination_rate")}
    for rec, pred in zip(records, preds, strict=True):
        # An array target (canonical JSON, as loaded) asks for an array answer.
        kind = list if (rec.target or "").lstrip().startswith("[") else dict
        obj = parse_json_object(pred.output, kind)
        valid = obj is not None and not any(True for _ in validator.iter_errors(obj))
        gold = field_pairs(parse_json_object(rec.target or "", kind) or {})
        got = field_pairs(obj) if obj is not None else set()
        tp = len(gold & got)
        p = tp / len(got) if got else (1.0 if not gold else 0.0)
        r = tp / len(gold) if gold else (1.0 if not got else 0.0)
        source = _norm(rec.input)
        cols["json_valid_rate"].append(float(valid))
        cols["field_precision"].append(p)
        cols["field_recall"].append(r)
        cols["field_f1"].append(2 * p * r / (p + r) if p + r else 0.0)
        # A value the model wrote that appears nowhere in the source text was made up.
        cols["hallucination_rate"].append(
            float(np.mean([v not in source for _, v in got])) if got else float("nan")
        )
    items = {k: np.array(v, dtype=float) for k, v in cols.items()}
    metrics = _summarise(items, config.eval.bootstrap, config.data.seed)
    metrics["n"] = len(records)
    return metrics, items


# ---------------------------------------------------------------- generation

def format_ok(text: str, config: ProjectConfig) -> bool:
    fmt = config.eval.format
    words = len(text.split())
    if fmt.min_words is not None and words < fmt.min_words:
        return False
    if fmt.max_words is not None and words > fmt.max_words:
        return False
    if any(p.lower() not in text.lower() for p in fmt.required_phrases):
        return False
    return not (fmt.regex and not re.search(fmt.regex, text))


def check_gold_field(config, records: list, where: str = "") -> None:
    """A misspelt ``retrieval.gold_field`` would silently report no recall at all: refuse it when no
    record has the field. ``where`` prefixes the message (the config file)."""
    gold = config.retrieval.gold_field
    if gold and records and not any(r.meta.get(gold) for r in records):
        raise ConfigError(f"{where}bad value for 'retrieval.gold_field': no test row has a field {gold!r}")


def reference_sets(records: list[Record]) -> list[list[str]]:
    """Each row's target, then the other answers the same input has among these rows: different
    answers to one input are alternatives, and an answer matching any of them is right."""
    by_input: dict[str, list[str]] = {}
    for r in records:
        if r.target is not None:
            by_input.setdefault(_norm(r.input), []).append(r.target)
    return [[r.target or "", *dict.fromkeys(t for t in by_input.get(_norm(r.input), []) if t != r.target)]
            for r in records]


def best_content_columns(prompts: list[str], refs: list[list[str]], answers: list[str],
                         evidence: list[list[str]] | None) -> dict[str, list[float]]:
    """Content precision / recall / F1 against the reference the answer matches best (by F1)."""
    from tunewise.evaluate.content import content_columns

    slots = [content_columns(prompts, [r[min(k, len(r) - 1)] for r in refs], answers, evidence)
             for k in range(max(map(len, refs), default=1))]
    best = [max(range(len(slots)), key=lambda k: slots[k]["content_f1"][i]) for i in range(len(answers))]
    return {key: [slots[k][key][i] for i, k in enumerate(best)] for key in slots[0]}


def evaluate_generation(config: ProjectConfig, records: list[Record], preds: list[Prediction],
                        passages: list[list[str]] | None = None, evidence: list[list[str]] | None = None,
                        encoder: Path | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Surface metrics (ROUGE-L F, chrF, exact match, format compliance) beside content metrics.

    Content precision/recall/F1 and groundedness are described in ``tunewise.evaluate.content``.
    ``evidence``: the passages relevant to each question, retrieved for scoring for every rung
    (groundedness); ``passages``: what the rung itself retrieved (retrieval recall@k, when the
    data names a gold passage with ``retrieval.gold_field``); ``encoder``: the MiniLM folder for
    semantic similarity. Returns the summary and every per-item column (for paired tests).
    """
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import CHRF

    from tunewise.evaluate.content import retrieval_hits, semantic_similarity
    from tunewise.tokens import RougeTokenizer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=RougeTokenizer())
    chrf = CHRF()
    cols: dict[str, list[float]] = {"rouge_l": [], "chrf": [], "exact_match": [], "format_compliance": []}
    refs = reference_sets(records)
    for targets, pred in zip(refs, preds, strict=True):
        cols["rouge_l"].append(max(scorer.score(t, pred.output)["rougeL"].fmeasure for t in targets))
        cols["chrf"].append(max(chrf.sentence_score(pred.output, [t]).score for t in targets) / 100)
        cols["exact_match"].append(float(any(_norm(pred.output) == _norm(t) for t in targets)))
        cols["format_compliance"].append(float(format_ok(pred.output, config)))
    prompts = [f"{config.task.instruction}\n{r.input}" for r in records]
    cols |= best_content_columns(prompts, refs, [p.output for p in preds], evidence)
    if encoder is not None:
        cols["semantic_similarity"] = semantic_similarity(
            encoder, [r.target or "" for r in records], [p.output for p in preds], config.encoder.max_seq_length,
            config.encoder.batch_size)
    gold = config.retrieval.gold_field
    if passages is not None and gold:
        check_gold_field(config, records)
        cols["retrieval_recall_at_k"] = retrieval_hits([r.meta.get(gold) for r in records], passages)
    items = {k: np.array(v, dtype=float) for k, v in cols.items()}
    metrics = _summarise(items, config.eval.bootstrap, config.data.seed)
    metrics["n"] = len(records)
    return metrics, items

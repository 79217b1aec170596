"""The ladder: every rung fitted on the same train/val split and scored on ONE frozen test split."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from tunewise import workspace as ws
from tunewise.config import METHODS, ConfigError, ProjectConfig, config_path, dump_config
from tunewise.data.resolve import Splits, resolve_splits
from tunewise.evaluate.cost import add_break_even, resolve_prices, rung_cost
from tunewise.evaluate.stats import mcnemar, paired_bootstrap_diff
from tunewise.report.build import write_report
from tunewise.report.decide import recommend
from tunewise.rungs.base import ProgressFn, no_progress

log = logging.getLogger(__name__)


# Older call sites: the one resolver lives in tunewise.data.resolve.
load_splits = resolve_splits


LLM_RUNGS = ("zero-shot", "few-shot", "rag", *METHODS)
ENCODER_RUNGS = ("embedding-classifier", "encoder-finetune")


def make_rung(name: str, config: ProjectConfig, project: Path, run_dir: Path, progress: ProgressFn):
    from functools import partial

    from tunewise.models.load import load
    from tunewise.rungs.encoder import EmbeddingClassifier, EncoderFinetune
    from tunewise.rungs.finetuned import FinetunedRung, LoraRung
    from tunewise.rungs.prompting import FewShot, ZeroShot
    from tunewise.rungs.rag import Rag

    llm = {"zero-shot": ZeroShot, "few-shot": FewShot, "rag": Rag, "lora": LoraRung,
           **{m: partial(FinetunedRung, method=m) for m in METHODS if m != "lora"}}
    encoders = {"embedding-classifier": EmbeddingClassifier, "encoder-finetune": EncoderFinetune}
    if name in encoders:
        return encoders[name](config, project, run_dir, progress)
    if name not in llm:
        raise ConfigError(f"{config_path(project)}: unknown rung '{name}' (known: {', '.join([*llm, *encoders])})")
    # A fresh copy of the base model per rung: PEFT injects adapters into the model it wraps.
    return llm[name](config, load(config.model.base, project), run_dir, progress, project=project)


def check_rungs(names: list[str], config: ProjectConfig, project: Path) -> None:
    """Fail before any work on a rung name or rung/task pairing the user can fix."""
    where = config_path(project)
    known = [*LLM_RUNGS, *ENCODER_RUNGS]
    for name in names:
        if name not in known:
            raise ConfigError(f"{where}: unknown rung '{name}' in 'rungs' / --rungs (known: {', '.join(known)})")
        if name == "rag":
            from tunewise.rungs.rag import documents_dir

            documents_dir(config, project)
        if name in ENCODER_RUNGS and config.task.type != "classification":
            raise ConfigError(f"{where}: rung '{name}' needs task.type: classification (got {config.task.type})")
        if name in METHODS:
            check_training_rung(name, config, where)


def check_training_rung(name: str, config: ProjectConfig, where: Path) -> None:
    """The checks training itself runs (precision, packing, extras), and DPO's data, before any rung runs."""
    from tunewise.train.methods import check_method

    check_method(config.model_copy(update={"train": config.train.model_copy(update={"method": name})}))
    d = config.train.dpo
    if name == "dpo" and not d.data and not (d.pairs_from_labels and config.task.type == "classification"):
        hint = " or train.dpo.pairs_from_labels: true" if config.task.type == "classification" else ""
        raise ConfigError(f"{where}: rung 'dpo' needs preference data: set train.dpo.data (a JSONL of "
                          f"prompt/chosen/rejected rows){hint}")


def task_schema(config: ProjectConfig, project: Path) -> dict | None:
    """The extraction task's JSON schema (an error naming the key when missing), else None."""
    from tunewise.evaluate.text_metrics import load_schema

    return load_schema(config, project) if config.task.type == "extraction" else None


def run_rung(name: str, config: ProjectConfig, project: Path, splits: Splits, progress: ProgressFn) -> dict:
    """Fit one rung, predict the frozen test split, score it and price it; write the run folder."""
    from tunewise.evaluate.score import score_predictions, worst_errors

    run_dir = ws.new_dir(project, "runs", f"{name}-{ws.timestamp()}")
    ws.write_text(run_dir / "config.yaml", dump_config(config))
    ws.write_json(run_dir / "lineage.json", ws.lineage(config, splits.test_hash))
    rung = make_rung(name, config, project, run_dir, progress)
    rung.fit(splits.train, splits.val)
    preds = rung.predict(splits.test)
    ws.write_jsonl(run_dir / "predictions.jsonl", (
        {**p.to_json(), "target": r.target, **({"citations": p.citations} if hasattr(p, "citations") else {})}
        for p, r in zip(preds, splits.test, strict=True)
    ))
    schema = task_schema(config, project)
    scored = score_predictions(config, splits.test, preds, getattr(rung, "passages", None), schema)
    cost = rung.cost
    prompt_tokens = cost.prompt_tokens / max(cost.predict_examples, 1)
    result = {
        "name": name,
        "run_dir": str(run_dir),
        "primary": scored.primary,
        "metrics": scored.metrics,
        "train_seconds": round(cost.train_seconds, 2),
        "train_tokens": cost.train_tokens,
        "train_tokens_per_second": round(cost.train_tokens_per_second, 1),
        "ms_per_example": round(cost.ms_per_example, 2),
        "prompt_tokens_per_request": round(prompt_tokens, 1),
        "cost": rung_cost(cost.train_seconds, cost.ms_per_example, prompt_tokens, config.cost),
        "worst_errors": worst_errors(splits.test, preds, scored.item_scores),
        "item_scores": scored.item_scores.tolist(),
        "binary_items": scored.binary,
    }
    if hasattr(rung, "train_result"):
        result["train_history"] = rung.train_result.history
        result["train_steps"] = rung.train_result.steps
    elif getattr(rung, "history", None):
        result["train_history"] = rung.history
    if splits.ood:
        ood_preds = rung.predict(splits.ood)
        ws.write_jsonl(run_dir / "ood_predictions.jsonl", (
            {**p.to_json(), "target": r.target} for p, r in zip(ood_preds, splits.ood, strict=True)))
        result["ood_metrics"] = score_predictions(config, splits.ood, ood_preds, getattr(rung, "passages", None), schema).metrics
    ws.write_json(run_dir / "metrics.json", {k: v for k, v in result.items() if k != "item_scores"})
    return result


def _value(r: dict) -> float:
    return r["metrics"][r["primary"]]


def paired_test(a: np.ndarray, b: np.ndarray, binary: bool, resamples: int, seed: int) -> dict:
    """A vs B on the same items: McNemar when items are right/wrong, paired bootstrap otherwise.

    The paired bootstrap's CI of the difference is reported either way, so every gap has an interval.
    """
    boot = paired_bootstrap_diff(lambda idx, s: (a if s == "a" else b)[idx].mean(), len(a), resamples, seed)
    diff = float(a.mean() - b.mean())
    if binary:
        return {"test": "mcnemar", **mcnemar(a.astype(bool), b.astype(bool)), "diff": diff, "diff_ci": boot["diff_ci"]}
    return {"test": "paired-bootstrap", "p_value": boot["p_value"], "diff": diff, "diff_ci": boot["diff_ci"]}


def compare(results: list[dict], resamples: int, seed: int) -> None:
    """Add paired tests against the best rung (and best vs the runner-up), on the same test items."""
    items = {r["name"]: np.array(r.pop("item_scores"), dtype=float) for r in results}
    best = max(results, key=_value)

    def paired(x: dict, y: dict) -> dict:
        return {"vs": y["name"], **paired_test(items[x["name"]], items[y["name"]], x["binary_items"], resamples, seed)}

    for r in results:
        r["paired_vs_best"] = paired(r, best) if r is not best else {"vs": best["name"], "p_value": 1.0, "diff": 0.0}
    rest = [r for r in results if r is not best]
    if rest:
        best["paired_vs_best_of_rest"] = paired(best, max(rest, key=_value))


def run_ladder(config: ProjectConfig, project: Path, rungs: list[str] | None = None,
               progress: ProgressFn = no_progress) -> Path:
    """Run the ladder and write ladder.json, report.md and report.html; return the report folder."""
    project = Path(project)
    names = rungs or list(config.rungs)
    check_rungs(names, config, project)
    prices = resolve_prices(config.cost)  # an unknown cost.gpu fails here, before any work
    config = config.model_copy(update={"cost": prices})
    task_schema(config, project)  # fail before any work when an extraction task has no usable schema
    started = time.perf_counter()
    splits = resolve_splits(config, project, "tunewise ladder")
    log.info("test split: %d rows, sha256 %s", len(splits.test), splits.test_hash)
    results = []
    for name in names:
        t0 = time.perf_counter()
        results.append(run_rung(name, config, project, splits, progress))
        results[-1]["wall_seconds"] = round(time.perf_counter() - t0, 1)
        log.info("%s: %s %.3f in %.0f s", name, results[-1]["primary"], _value(results[-1]), results[-1]["wall_seconds"])
    compare(results, config.eval.bootstrap, config.data.seed)
    break_even = add_break_even(results, prices)
    ladder = {
        "project": config.name,
        "task": config.task.type,
        "primary": results[0]["primary"],
        "test_hash": splits.test_hash,
        "n_test": len(splits.test),
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_ood": len(splits.ood),
        "n_rejected": len(splits.rejects),
        "dataset_dir": str(splits.dataset_dir),
        "dataset": splits.record(),
        "test_file": "test.jsonl",
        "labels": config.task.labels,
        "prices": prices.model_dump(),
        "break_even": break_even,
        "bootstrap": config.eval.bootstrap,
        "rungs": results,
        "recommendation": recommend(results),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    from tunewise.report.curve_view import latest_curve

    if curve := latest_curve(project, splits.test_hash):  # `tunewise curve` measured on this same test split
        ladder["curve"] = curve
    report_dir = ws.new_dir(project, "reports")
    # The exact rows every rung was scored on (a seeded subset when eval.max_test_examples is set).
    ws.write_jsonl(report_dir / "test.jsonl", (r.to_json() for r in splits.test))
    ws.write_json(report_dir / "ladder.json", ladder)
    write_report(ladder, report_dir)
    return report_dir

"""The ladder: every rung fitted on the same train/val split and scored on ONE frozen test split."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunewise import workspace as ws
from tunewise.config import ProjectConfig, dump_config
from tunewise.core import Record
from tunewise.data.load import Reject, load_files
from tunewise.data.split import records_hash, stratified_split, subsample
from tunewise.evaluate.metrics import evaluate_classification
from tunewise.evaluate.stats import mcnemar, paired_bootstrap_diff
from tunewise.report.build import write_report
from tunewise.report.decide import recommend
from tunewise.rungs.base import ProgressFn, no_progress

log = logging.getLogger(__name__)


@dataclass
class Splits:
    train: list[Record]
    val: list[Record]
    test: list[Record]
    rejects: list[Reject]
    test_hash: str
    dataset_dir: Path


def load_splits(config: ProjectConfig, project: Path) -> Splits:
    """Load the data, reject rows with unknown labels, split, freeze and hash the test split."""
    task = config.task
    loaded = load_files(config.data.files, project, task.input_field, task.target_field)
    records, rejects = [], list(loaded.rejects)
    allowed = set(task.labels)
    for rec in loaded.records:
        if task.type == "classification" and rec.target not in allowed:
            file, _, line = rec.source.rpartition(":")
            rejects.append(Reject(file, int(line), f"field '{task.target_field}': label {rec.target!r} is not in task.labels"))
        else:
            records.append(rec)
    if not records:
        raise ValueError(f"no usable rows in {', '.join(config.data.files)} ({len(rejects)} rejected)")
    parts = stratified_split(records, config.data.split.model_dump(), config.data.seed)
    test = subsample(parts["test"], config.eval.max_test_examples, config.data.seed)
    test_hash = records_hash(test)
    dataset_dir = ws.workspace(project) / "datasets" / test_hash[:16]
    if not (dataset_dir / "manifest.json").exists():
        for name, rows in (("train", parts["train"]), ("val", parts["val"]), ("test", test)):
            ws.write_jsonl(dataset_dir / f"{name}.jsonl", (r.to_json() for r in rows))
        ws.write_jsonl(dataset_dir / "rejects.jsonl", (r.to_json() for r in rejects))
        ws.write_json(dataset_dir / "manifest.json", {
            "test_hash": test_hash,
            "counts": {"train": len(parts["train"]), "val": len(parts["val"]), "test": len(test), "rejected": len(rejects)},
            "split": config.data.split.model_dump(), "seed": config.data.seed,
            "files": {f: ws.sha256_file(Path(project) / f) for f in config.data.files},
        })
    return Splits(parts["train"], parts["val"], test, rejects, test_hash, dataset_dir)


def make_rung(name: str, config: ProjectConfig, project: Path, run_dir: Path, progress: ProgressFn):
    from functools import partial

    from tunewise.config import METHODS
    from tunewise.models.load import load
    from tunewise.rungs.finetuned import FinetunedRung, LoraRung
    from tunewise.rungs.prompting import ZeroShot

    classes = {"zero-shot": ZeroShot, "lora": LoraRung, **{m: partial(FinetunedRung, method=m) for m in METHODS if m != "lora"}}
    if name not in classes:
        raise ValueError(f"unknown rung '{name}' (known: {', '.join(classes)})")
    # A fresh copy of the base model per rung: PEFT injects adapters into the model it wraps.
    return classes[name](config, load(config.model.base, project), run_dir, progress)


def run_rung(name: str, config: ProjectConfig, project: Path, splits: Splits, progress: ProgressFn) -> dict:
    run_dir = ws.new_dir(project, "runs", f"{name}-{ws.timestamp()}")
    ws.write_text(run_dir / "config.yaml", dump_config(config))
    ws.write_json(run_dir / "lineage.json", ws.lineage(config, splits.test_hash))
    rung = make_rung(name, config, project, run_dir, progress)
    rung.fit(splits.train, splits.val)
    preds = rung.predict(splits.test)
    ws.write_jsonl(run_dir / "predictions.jsonl", (
        {**p.to_json(), "target": r.target} for p, r in zip(preds, splits.test, strict=True)
    ))
    metrics = evaluate_classification(
        [r.target for r in splits.test], [p.output for p in preds], config.task.labels,
        config.eval.bootstrap, config.data.seed,
    )
    cost = rung.cost
    result = {
        "name": name,
        "run_dir": str(run_dir),
        "metrics": metrics,
        "train_seconds": round(cost.train_seconds, 2),
        "train_tokens": cost.train_tokens,
        "train_tokens_per_second": round(cost.train_tokens_per_second, 1),
        "ms_per_example": round(cost.ms_per_example, 2),
        "prompt_tokens_per_request": round(cost.prompt_tokens / max(cost.predict_examples, 1), 1),
        "correct": [p.output == r.target for p, r in zip(preds, splits.test, strict=True)],
    }
    if hasattr(rung, "train_result"):
        result["train_history"] = rung.train_result.history
        result["train_steps"] = rung.train_result.steps
    ws.write_json(run_dir / "metrics.json", {k: v for k, v in result.items() if k != "correct"})
    return result


def compare(results: list[dict], resamples: int, seed: int) -> None:
    """Add paired tests (McNemar, paired bootstrap of the accuracy gap) against the best rung."""
    correct = {r["name"]: np.array(r.pop("correct"), dtype=bool) for r in results}
    best = max(results, key=lambda r: r["metrics"]["accuracy"])

    def paired(a: str, b: str) -> dict:
        ca, cb = correct[a], correct[b]
        boot = paired_bootstrap_diff(lambda idx, s: (ca if s == "a" else cb)[idx].mean(), len(ca), resamples, seed)
        return {"vs": b, **mcnemar(ca, cb), "diff_ci": boot["diff_ci"]}

    for r in results:
        r["paired_vs_best"] = paired(r["name"], best["name"]) if r is not best else {"vs": best["name"], "p_value": 1.0}
    rest = [r for r in results if r is not best]
    if rest:
        runner = max(rest, key=lambda r: r["metrics"]["accuracy"])
        best["paired_vs_best_of_rest"] = paired(best["name"], runner["name"])


def run_ladder(config: ProjectConfig, project: Path, rungs: list[str] | None = None,
               progress: ProgressFn = no_progress) -> Path:
    """Run the ladder and write ladder.json, report.md and report.html; return the report folder."""
    project = Path(project)
    started = time.perf_counter()
    splits = load_splits(config, project)
    log.info("test split: %d rows, sha256 %s", len(splits.test), splits.test_hash)
    results = [run_rung(name, config, project, splits, progress) for name in (rungs or config.rungs)]
    compare(results, config.eval.bootstrap, config.data.seed)
    ladder = {
        "project": config.name,
        "test_hash": splits.test_hash,
        "n_test": len(splits.test),
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_rejected": len(splits.rejects),
        "dataset_dir": str(splits.dataset_dir),
        "labels": config.task.labels,
        "rungs": results,
        "recommendation": recommend(results),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    report_dir = ws.new_dir(project, "reports")
    ws.write_json(report_dir / "ladder.json", ladder)
    write_report(ladder, report_dir)
    return report_dir

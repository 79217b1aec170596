"""The ladder: every rung fitted on the same train/val split and scored on ONE frozen test split."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from tunewise import interrupt
from tunewise import workspace as ws
from tunewise.config import ConfigError, ProjectConfig, config_path, dump_config
from tunewise.core import Record
from tunewise.data.resolve import Splits, resolve_splits
from tunewise.evaluate.cost import add_break_even, resolve_prices, rung_work
from tunewise.evaluate.score import check_primary
from tunewise.evaluate.stats import mcnemar
from tunewise.evaluate.text_metrics import check_gold_field
from tunewise.evaluate.throughput import machine_throughput
from tunewise.report.build import write_report
from tunewise.report.decide import compare, recommend
from tunewise.rungs.base import ProgressFn, no_progress
from tunewise.rungspec import FEW_SHOT, NAMES, RUNGS, TEXT

log = logging.getLogger(__name__)


# Older call sites: the one resolver lives in tunewise.data.resolve.
load_splits = resolve_splits


def vs_served(recent: list[Record], preds: list) -> dict | None:
    """This rung against the deployed model's served answers on the same recent rows (exact match, McNemar)."""
    served = [r.meta.get("served_output") for r in recent]
    if any(s is None for s in served):
        return None
    ours = np.array([p.output == r.target for p, r in zip(preds, recent, strict=True)])
    theirs = np.array([s == r.target for s, r in zip(served, recent, strict=True)])
    return {"n": len(recent), "rung_accuracy": float(ours.mean()), "served_accuracy": float(theirs.mean()),
            **mcnemar(ours, theirs)}


def check_rungs(names: list[str], config: ProjectConfig, project: Path) -> None:
    """Fail before any work on a rung name or rung/task pairing the user can fix: what each rung needs
    and the task types it runs on are its entry in the table of rungs."""
    where = config_path(project)
    for name in names:
        if name not in RUNGS:
            raise ConfigError(f"{where}: unknown rung '{name}' in 'rungs' / --rungs (known: {', '.join(NAMES)})")
        spec = RUNGS[name]
        if config.task.type not in spec.task_types:
            raise ConfigError(f"{where}: rung '{name}' needs task.type: {' or '.join(sorted(spec.task_types))} "
                              f"(got {config.task.type})")
        check_needs(name, needs_of(name, config), config, project)
        if spec.method is not None:
            check_training_rung(name, config, where)
        if spec.llm and config.eval.precision == "bf16":
            from tunewise.evaluate.decode import native_bf16

            if not native_bf16():
                raise ConfigError(f"{where}: eval.precision: bf16 needs a GPU with bf16 or a CPU with AVX512-BF16 "
                                  "or AMX (none found); use fp32")


def needs_of(name: str, config: ProjectConfig) -> frozenset[str]:
    """What the rung needs with these settings: its table entry's, and the encoder for few-shot's
    similar-example selection."""
    similar = name == FEW_SHOT and config.few_shot.selection == "similar"
    return RUNGS[name].needs | ({"encoder"} if similar else set())


def check_needs(name: str, needs: frozenset[str], config: ProjectConfig, project: Path) -> None:
    """Each need of the rung is there (documents, the encoder, preference data), or a ConfigError names the key."""
    where = config_path(project)
    if "documents" in needs:
        from tunewise.rungs.rag import documents_dir

        documents_dir(config, project)
    if "encoder" in needs:
        from tunewise.rungs.encoder import encoder_dir

        encoder_dir(config, project)  # a missing encoder.model fails here, not after other rungs ran
    d = config.train.dpo
    if "preference" in needs and not d.data and not (d.pairs_from_labels and config.task.type == "classification"):
        hint = " or train.dpo.pairs_from_labels: true" if config.task.type == "classification" else ""
        raise ConfigError(f"{where}: rung '{name}' needs preference data: set train.dpo.data (a JSONL of "
                          f"prompt/chosen/rejected rows){hint}")
    if "unpaired-preference" in needs and not config.train.kto.data:
        raise ConfigError(f"{where}: rung '{name}' needs unpaired preference data: set train.kto.data (rows with "
                          "prompt/completion or messages, and label true/false)")


def check_training_rung(name: str, config: ProjectConfig, where: Path) -> None:
    """The checks training itself runs (precision, packing, extras) with the rung's method, before any rung runs."""
    from tunewise.train.methods import check_method

    method = RUNGS[name].method
    check_method(config.model_copy(update={"train": config.train.model_copy(update={"method": method})}))


def task_schema(config: ProjectConfig, project: Path) -> dict | None:
    """The extraction task's JSON schema (an error naming the key when missing), else None."""
    from tunewise.evaluate.text_metrics import load_schema

    return load_schema(config, project) if config.task.type == "extraction" else None


def scoring_aids(config: ProjectConfig, project: Path, records: list[Record]) -> tuple[list | None, Path | None]:
    """For generation: the evidence passages of each question (groundedness, when the project has
    documents) and the MiniLM folder (semantic similarity); (None, None) for other tasks."""
    if config.task.type != "generation":
        return None, None
    from tunewise.rungs.encoder import encoder_dir
    from tunewise.rungs.rag import evidence_passages

    return evidence_passages(config, project, records), encoder_dir(config, project)


def timing_sample(test: list[Record], size: int, seed: int) -> list[Record]:
    """The fixed, seeded test rows every rung's latency is measured on (the same rows for every rung)."""
    import random

    return random.Random(seed).sample(test, min(size, len(test)))


def run_rung(name: str, config: ProjectConfig, project: Path, splits: Splits, progress: ProgressFn,
             throughput: dict | None = None) -> dict:
    """Fit one rung, predict the frozen test split, score it and time it; write the run folder.

    The result records the rung's work (FLOPs, decoded tokens, bytes read), not its price: the ladder
    prices every rung from that record at the end (price_ladder), so a change under ``cost:`` re-prices
    without re-running (see tunewise.evaluate.cost). ``throughput`` is unused; kept for callers.
    Interrupted, it leaves no run folder behind."""
    run_dir = ws.new_dir(project, "runs", f"{name}-{ws.timestamp()}")
    try:
        return _run_rung_in(run_dir, name, config, project, splits, progress, throughput)
    except KeyboardInterrupt:
        # A rung stopped half-way has no result: its folder goes, so no run folder lacks its metrics.
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _run_rung_in(run_dir: Path, name: str, config: ProjectConfig, project: Path, splits: Splits,
                 progress: ProgressFn, throughput: dict | None) -> dict:
    from tunewise.evaluate.score import score_predictions, side_by_side, worst_errors
    from tunewise.rungs.base import BatchClock, time_predict

    ws.write_text(run_dir / "config.yaml", dump_config(config))
    ws.write_json(run_dir / "lineage.json", ws.lineage(config, splits.test_hash))
    interrupt.stage(f"{name}: load")
    from tunewise.rungs.table import build_rung  # every rung's module: torch, transformers

    rung = build_rung(name, config, project, run_dir, progress)
    interrupt.stage(f"{name}: fit")
    rung.fit(splits.train, splits.val)
    rung.save(run_dir)  # what it learned, so `tunewise serve` answers exactly as measured here
    interrupt.stage(f"{name}: predict test")
    clock = BatchClock()  # the test pass's batches are its latency (rungs.base.BatchClock)
    shown = getattr(rung, "progress", None)
    if shown is not None:
        rung.progress = clock.wrap(shown)
    try:
        preds = rung.predict(splits.test)
    finally:
        if shown is not None:
            rung.progress = shown
    # What fit and the test predictions warned about (the timing and OOD passes would repeat it).
    warnings = list(dict.fromkeys(getattr(rung, "warnings", [])))
    ws.write_jsonl(run_dir / "predictions.jsonl", (
        {**p.to_json(), "target": r.target, **({"citations": p.citations} if hasattr(p, "citations") else {})}
        for p, r in zip(preds, splits.test, strict=True)
    ))
    interrupt.stage(f"{name}: score")
    schema = task_schema(config, project)
    evidence, encoder = scoring_aids(config, project, splits.test)
    scored = score_predictions(config, splits.test, preds, getattr(rung, "passages", None), schema, evidence, encoder)
    cost = rung.cost
    prompt_tokens = cost.prompt_tokens / max(cost.predict_examples, 1)
    latency = clock.summary()
    if latency is None:  # predicted in fewer batches than the clock needs: time the seeded sample instead
        interrupt.stage(f"{name}: latency")
        latency = time_predict(rung, timing_sample(splits.test, config.eval.timing_examples, config.data.seed),
                               config.eval.timing_repeats)
    result = {
        "name": name,
        "run_dir": ws.stored(project, run_dir),
        "primary": scored.primary,
        "metrics": scored.metrics,
        "train_seconds": round(cost.train_seconds, 2),
        "train_tokens": cost.train_tokens,
        "train_tokens_per_second": round(cost.train_tokens_per_second, 1),
        "ms_per_example": round(cost.ms_per_example, 2),  # measured while scoring: load moves it
        "latency": latency,
        "prompt_tokens_per_request": round(prompt_tokens, 1),
        "compute": rung_work(cost),  # priced at report time: price_ladder
        # A text corpus has no answers to be wrong: its report shows perplexity only.
        "worst_errors": [] if config.task.type == TEXT else worst_errors(splits.test, preds, scored.item_scores),
        "item_scores": scored.item_scores.tolist(),
        "metric_items": {k: v.tolist() for k, v in scored.items.items()},  # for report.content_guard
        "binary_items": scored.binary,
        "precision": _precision(name, config),
    }
    from tunewise.rungs.prompting import score_draws  # every example set of few-shot (docs/decision.md)

    if hasattr(rung, "predict_draws"):  # a rung measured over several random draws (few-shot's example sets)
        interrupt.stage(f"{name}: other example sets")
    if draws := score_draws(rung, splits.test, scored, lambda p: score_predictions(
            config, splits.test, p, getattr(rung, "passages", None), schema, evidence, encoder)):
        result["draws"] = draws
    result["warnings"] = warnings  # also in metrics.json, the report
    if hasattr(rung, "train_result"):
        result["train_history"] = rung.train_result.history
        result["train_steps"] = rung.train_result.steps
    elif getattr(rung, "history", None):
        result["train_history"] = rung.history
    if splits.ood:
        interrupt.stage(f"{name}: ood")
        ood_preds = rung.predict(splits.ood)
        ws.write_jsonl(run_dir / "ood_predictions.jsonl", (
            {**p.to_json(), "target": r.target} for p, r in zip(ood_preds, splits.ood, strict=True)))
        result["ood_metrics"] = score_predictions(config, splits.ood, ood_preds, getattr(rung, "passages", None), schema,
                                                  *scoring_aids(config, project, splits.ood)).metrics
    if splits.recent:
        interrupt.stage(f"{name}: recent")
        recent_preds = rung.predict(splits.recent)
        result["recent_metrics"] = score_predictions(config, splits.recent, recent_preds, getattr(rung, "passages", None),
                                                     schema, *scoring_aids(config, project, splits.recent)).metrics
        if config.task.type == "classification":
            result["recent_vs_served"] = vs_served(splits.recent, recent_preds)
    if config.task.type == "generation":
        result["answers"] = side_by_side(splits.test, scored, preds, config.data.seed)
    ws.write_json(run_dir / "metrics.json", {k: v for k, v in result.items() if k not in ("item_scores", "metric_items")})
    return result


def _precision(name: str, config: ProjectConfig) -> dict:
    """What the rung computed in (``auto`` resolved on this machine): scoring, and training where it trains."""
    from tunewise.evaluate.decode import resolve_precision

    if not RUNGS[name].llm:
        return {"eval": "fp32"}
    out = {"eval": resolve_precision(config.eval.precision)}
    return {**out, "train": resolve_precision(config.train.precision)} if RUNGS[name].method else out


def _value(r: dict) -> float:
    return r["metrics"][r["primary"]]


class RungsFailed(RuntimeError):
    """Every rung of a ladder failed: there is nothing to report."""


class LadderInterrupted(KeyboardInterrupt):
    """Ctrl-C during a ladder: the rungs that finished were written as a partial report first."""

    def __init__(self, report_dir: Path | None):
        super().__init__()
        self.report_dir = report_dir


def reuse_key(name: str, config: ProjectConfig, splits: Splits) -> str:
    """What a rung's result depends on: its name, the resolved config (the rung list and the prices
    aside: a rung records its work, priced afterwards), the data and the tunewise version. A finished
    rung with the same key is reused instead of recomputed."""
    from importlib.metadata import version

    parts = {"rung": name, "config": config.model_dump(mode="json", exclude={"rungs", "cost"}),
             "dataset": splits.dataset_hash, "test": splits.test_hash, "tunewise": version("tunewise")}
    return ws.sha256_bytes(json.dumps(parts, sort_keys=True).encode())


def find_reusable(project: Path, name: str, key: str) -> dict | None:
    """The newest finished run of ``name`` whose reuse key matches, as run_rung returned it."""
    root = ws.workspace(project) / "runs"
    for path in sorted(root.glob(f"{name}-*/result.json"), reverse=True) if root.exists() else []:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        run_dir = ws.resolve(project, result["run_dir"]) if result.get("run_dir") else None
        if result.get("reuse_key") == key and run_dir is not None and run_dir.is_dir():
            recorded = ws.stored(project, run_dir)  # result.json of older versions holds the path as then reached
            return {**result, "run_dir": recorded, "reused_from": recorded}
    return None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def run_rungs(names: list[str], config: ProjectConfig, project: Path, splits: Splits, progress: ProgressFn,
              throughput: dict, fresh: bool) -> tuple[list[dict], list[dict], bool]:
    """Each rung in turn: reused when an identical run finished before (unless ``fresh``), else run.
    A rung that fails is recorded with its one-line error and the others go on; Ctrl-C stops the loop.
    Returns (results, failures, interrupted)."""
    results, failed = [], []
    try:
        for name in names:
            key = reuse_key(name, config, splits)
            found = None if fresh else find_reusable(project, name, key)
            if found:
                log.info("%s: reused %s (same config, data and tunewise version)", name, found["run_dir"])
                results.append(found)
                continue
            t0 = time.perf_counter()
            try:
                result = run_rung(name, config, project, splits, progress, throughput)
            except Exception as e:
                log.error("%s failed: %s", name, _one_line(e))
                log.debug("%s failed", name, exc_info=True)
                failed.append({"name": name, "error": _one_line(e)})
                continue
            result["wall_seconds"] = round(time.perf_counter() - t0, 1)
            result["reuse_key"] = key
            ws.write_json(ws.resolve(project, result["run_dir"]) / "result.json", result)
            results.append(result)
            log.info("%s: %s %.3f in %.0f s", name, result["primary"], _value(result), result["wall_seconds"])
    except KeyboardInterrupt:
        interrupt.handled()  # from here on the partial report is written, not interrupted again
        return results, failed, True
    return results, failed, False


def price_ladder(ladder: dict, prices) -> dict:
    """Price every rung of ``ladder`` from its recorded work at ``prices`` (resolved), say on what machine
    with which figures, and recommend (the recommendation ranks by cost). Run when a ladder finishes and
    by `tunewise report --set cost.…`, which re-prices a saved ladder without re-running a rung."""
    be = add_break_even(ladder["rungs"], prices, ladder.get("throughput"))
    ladder.update(prices=prices.model_dump(), machine=be["machine"], break_even=be)
    ladder["recommendation"] = recommend(ladder["rungs"], ladder["margin"], ladder.get("guard_margins"),
                                         ladder.get("task"))
    return ladder


def restore_metric_items(rungs: list[dict], project: Path) -> None:
    """The per-item content scores the recommendation's content check needs: ladder.json leaves them out,
    each run folder's result.json keeps them. A rung whose folder is gone is checked without them."""
    for r in rungs:
        path = ws.resolve(project, r["run_dir"]) / "result.json" if r.get("run_dir") else None
        if "metric_items" not in r and path and path.is_file():
            r["metric_items"] = json.loads(path.read_text(encoding="utf-8")).get("metric_items")


def reprice_report(project: Path, overrides: list[str], folder: Path | None = None) -> Path:
    """A new report folder holding the latest (or ``folder``'s) ladder re-priced by the project's config
    with ``overrides`` (`--set cost.gpu=H100-80GB`); only prices and the recommendation change."""
    import shutil

    from tunewise import locate
    from tunewise.config import load_config

    project = Path(project)
    folder = locate.ladder(project, folder).folder
    config = load_config(project, overrides)
    ladder = json.loads((folder / "ladder.json").read_text(encoding="utf-8"))
    ladder.setdefault("margin", config.eval.margin)  # ladders saved before these were recorded
    ladder.setdefault("bootstrap", config.eval.bootstrap)
    restore_metric_items(ladder["rungs"], project)
    ladder.setdefault("guard_margins", config.eval.guard_margins)
    price_ladder(ladder, resolve_prices(config.cost))
    ladder["repriced_from"] = ws.stored(project, folder)
    report_dir = ws.new_dir(project, "reports")
    if (Path(folder) / "test.jsonl").exists():
        shutil.copyfile(Path(folder) / "test.jsonl", report_dir / "test.jsonl")
    ws.write_json(report_dir / "ladder.json", ladder)
    write_report(ladder, report_dir)
    return report_dir


def run_ladder(config: ProjectConfig, project: Path, rungs: list[str] | None = None,
               progress: ProgressFn = no_progress, fresh: bool = False) -> Path:
    """Run the ladder and write ladder.json, report.md and report.html; return the report folder.

    Finished rungs are kept: a rung whose config, data and tunewise version match an earlier finished
    run is reused (``fresh`` recomputes), a failing rung is recorded and the report is written for the
    others (ladder.json ``status``: partial), and Ctrl-C writes the partial report, then raises
    LadderInterrupted."""
    project = Path(project)
    names = rungs or list(config.rungs)
    check_rungs(names, config, project)
    prices = resolve_prices(config.cost)  # an unknown cost.gpu fails here, before any work
    config = config.model_copy(update={"cost": prices})
    task_schema(config, project)  # fail before any work when an extraction task has no usable schema
    throughput = machine_throughput(prices.gflops)  # once per machine; cached afterwards
    check_primary(config, str(config_path(project)))
    started = time.perf_counter()
    interrupt.stage("prepare")
    splits = resolve_splits(config, project, "tunewise ladder", progress=progress)
    log.info("using dataset %s/ (test split %d rows, sha256 %s)", ws.stored(project, splits.dataset_dir),
             len(splits.test), splits.test_hash)
    if any("documents" in RUNGS[n].needs for n in names):  # before any rung runs, not after the ones before rag
        check_gold_field(config, splits.test, f"{config_path(project)}: ")
    results, failed, interrupted = run_rungs(names, config, project, splits, progress, throughput, fresh)
    if not results:
        if interrupted:
            raise LadderInterrupted(None)
        raise RungsFailed("every rung failed: " + "; ".join(f"{f['name']}: {f['error']}" for f in failed))
    compare(results)
    ladder = {
        "project": config.name,
        "task": config.task.type,
        "status": "interrupted" if interrupted else "partial" if failed else "complete",
        "requested": names,
        "failed": failed,
        "reused": [r["name"] for r in results if r.get("reused_from")],
        "primary": results[0]["primary"],
        "test_hash": splits.test_hash,
        "n_test": len(splits.test),
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_ood": len(splits.ood),
        "n_recent": len(splits.recent),
        "n_rejected": len(splits.rejects),
        "dataset_dir": ws.stored(project, splits.dataset_dir),
        "dataset": splits.record(),
        "test_file": "test.jsonl",
        "labels": config.task.labels,
        "throughput": throughput,
        "bootstrap": config.eval.bootstrap,
        "margin": config.eval.margin,
        "guard_margins": config.eval.guard_margins,
        "timing": {"examples": min(config.eval.timing_examples, len(splits.test)),
                   "repeats": config.eval.timing_repeats, "batch_size": config.eval.batch_size},
        "rungs": results,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "stages": interrupt.stage_times(),  # this process's stages so far (imports, prepare, each rung's)
    }
    price_ladder(ladder, prices)
    from tunewise.report.curve_view import latest_curve

    if curve := latest_curve(project, splits.test_hash):  # `tunewise curve` measured on this same test split
        ladder["curve"] = curve
    interrupt.stage("report")
    report_dir = ws.new_dir(project, "reports")
    # The exact rows every rung was scored on (a seeded subset when eval.max_test_examples is set).
    ws.write_jsonl(report_dir / "test.jsonl", (r.to_json() for r in splits.test))
    ws.write_json(report_dir / "ladder.json", ladder)
    write_report(ladder, report_dir)
    if interrupted:
        raise LadderInterrupted(report_dir)
    return report_dir

"""`tunewise train`: one training run in its own folder, resumable, with its lineage.

``.tunewise/runs/<method>-<time>/`` holds config.yaml, lineage.json (resolved config, dataset
hash, package versions), checkpoints/, adapter/ (or model/ for full weights), metrics.json,
train_history.json, curves.json and logs/ (TensorBoard events). Every file is written atomically.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tunewise import workspace as ws
from tunewise.config import ConfigError, ProjectConfig, dump_config, load_config
from tunewise.core import no_progress
from tunewise.data.split import records_hash
from tunewise.rungspec import DPO, KTO

log = logging.getLogger(__name__)

LINEAGE_EXTRA = ("bitsandbytes", "datasets", "tokenizers", "safetensors")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def resolve_config(project: Path, method: str | None, overrides: list[str] | None) -> ProjectConfig:
    overrides = list(overrides or [])
    if method:
        overrides.append(f"train.method={method}")
    config = load_config(project, overrides)
    for key in (DPO, KTO):  # the preference methods: their config sections train.dpo and train.kto
        section = getattr(config.train, key)
        if section.data and not Path(section.data).is_absolute():
            # Child processes and the ladder may run elsewhere: pin the preference file to the project.
            pinned = section.model_copy(update={"data": str((Path(project) / section.data).resolve())})
            config = config.model_copy(update={"train": config.train.model_copy(update={key: pinned})})
    return config


def run_folder(project: Path, method: str, resume: bool, run: Path | None) -> Path:
    """The folder of this run: ``run``, the latest of ``method`` when resuming, or a new one."""
    if run is not None:
        run = Path(run)
        if resume and not run.is_dir():
            raise ConfigError(f"--run {run}: no such run folder to resume")
        run.mkdir(parents=True, exist_ok=True)
        return run
    if resume:
        root = ws.workspace(project) / "runs"
        found = sorted(p for p in root.glob(f"{method}-*") if p.is_dir()) if root.exists() else []
        if not found:
            raise ConfigError(f"--resume: no earlier '{method}' run in {root} (start one without --resume)")
        return found[-1]
    return ws.new_dir(project, "runs", f"{method}-{ws.timestamp()}")


def check_resume_config(run_dir: Path, config: ProjectConfig) -> None:
    saved = run_dir / "config.yaml"
    if saved.exists() and saved.read_text(encoding="utf-8") != dump_config(config):
        raise ConfigError(
            f"{saved}: the resolved config differs from the one this run started with; resume with the "
            "same tunewise.yaml and --set values, or start a new run"
        )


def write_lineage(run_dir: Path, config: ProjectConfig, splits) -> None:
    data_hash = records_hash(splits.train + splits.val)
    lineage = ws.lineage(config, data_hash)
    lineage["test_hash"] = splits.test_hash
    lineage["dataset"] = splits.record()
    lineage["dataset_dir"] = lineage["dataset"]["dir"]  # relative to the project
    lineage["packages"].update(ws.package_versions(LINEAGE_EXTRA))
    ws.write_text(run_dir / "config.yaml", dump_config(config))
    ws.write_json(run_dir / "lineage.json", lineage)


def train_project(project: Path, method: str | None = None, overrides: list[str] | None = None,
                  resume: bool = False, run: Path | None = None, progress=None) -> Path:
    """Train ``method`` on the project's train split (val for checkpoint choice); return the run folder."""
    from tunewise.data.resolve import resolve_splits
    from tunewise.models.load import load
    from tunewise.train.sft import count_parameters, train_adapter

    project = Path(project)
    config = resolve_config(project, method, overrides)
    if config.train.method == DPO:
        from tunewise.train.dpo import preference_splits

        preference_splits(config, [], [], project)  # a bad preference file fails before any model loads
    if config.train.method == KTO:
        from tunewise.train.kto import kto_rows

        kto_rows(config, project)
    splits = resolve_splits(config, project, "tunewise train", progress=progress or no_progress)
    run_dir = run_folder(project, config.train.method, resume, run)
    if resume:
        check_resume_config(run_dir, config)
    if is_main_process() and not (resume and (run_dir / "lineage.json").exists()):
        write_lineage(run_dir, config, splits)
    model, tokenizer, _ = load(config.model.base, project, progress or no_progress)
    result = train_adapter(model, tokenizer, config, splits.train, splits.val, run_dir, progress, resume, project)
    if is_main_process():
        evals = [r["eval_loss"] for r in result.history if "eval_loss" in r]
        losses = [r["loss"] for r in result.history if "loss" in r]
        ws.write_json(run_dir / "metrics.json", {
            "method": config.train.method,
            "steps": result.steps,
            "train_seconds": round(result.seconds, 3),
            "train_tokens": result.tokens,
            "train_tokens_per_second": round(result.tokens_per_second, 1),
            "best_checkpoint": result.best_checkpoint,
            "best_val_loss": min(evals) if evals else None,
            "final_val_loss": evals[-1] if evals else None,
            "final_train_loss": losses[-1] if losses else None,
            "parameters": count_parameters(result.model),
            "warnings": result.warnings,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        })
    return run_dir

"""`tunewise sweep`: Optuna searches training hyperparameters within a trial budget, on val loss only.

Each trial trains on the train split and is scored by its best val loss; the test split is never
loaded into a trial, so choosing hyperparameters cannot leak the frozen test set into the result.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tunewise import workspace as ws
from tunewise.config import ProjectConfig
from tunewise.rungspec import DORA, DPO, LORA, QLORA

log = logging.getLogger(__name__)

LORA_FAMILY = (LORA, DORA, QLORA, DPO)


def suggest(trial, config: ProjectConfig) -> list[str]:
    """One trial's ``--set`` overrides: learning rate, batch size, warm-up and, for LoRA, rank/alpha/dropout."""
    t = config.train
    lr = trial.suggest_float("learning_rate", t.learning_rate / 10, t.learning_rate * 10, log=True)
    overrides = [
        f"train.learning_rate={lr}",
        f"train.batch_size={trial.suggest_categorical('batch_size', [4, 8, 16])}",
        f"train.warmup_steps={trial.suggest_categorical('warmup_steps', [0, 5, 20])}",
    ]
    if t.method in LORA_FAMILY:
        r = trial.suggest_categorical("lora.r", [4, 8, 16, 32])
        alpha = r * trial.suggest_categorical("lora.alpha_over_r", [1, 2])
        dropout = trial.suggest_float("lora.dropout", 0.0, 0.1)
        overrides += [f"train.lora.r={r}", f"train.lora.alpha={alpha}", f"train.lora.dropout={dropout}"]
    return overrides


def run_sweep(project: Path, trials: int, method: str | None = None, overrides: list[str] | None = None) -> Path:
    """Run ``trials`` Optuna trials; write sweep.json (every trial, the best, its --set lines)."""
    import optuna

    from tunewise.data.resolve import resolve_splits
    from tunewise.models.load import load
    from tunewise.train.run import resolve_config
    from tunewise.train.sft import train_adapter

    project = Path(project)
    base = resolve_config(project, method, overrides)
    splits = resolve_splits(base, project, "tunewise sweep")
    folder = ws.new_dir(project, "sweeps", f"{base.train.method}-{ws.timestamp()}")
    dataset = splits.record(with_test=False)
    rows: list[dict] = []

    def objective(trial) -> float:
        extra = suggest(trial, base)
        config = resolve_config(project, method, [*(overrides or []), *extra, "train.tensorboard=false"])
        model, tokenizer, _ = load(config.model.base, project)  # a fresh base per trial
        result = train_adapter(model, tokenizer, config, splits.train, splits.val, folder / f"trial-{trial.number}",
                               project=project)
        losses = [r["eval_loss"] for r in result.history if "eval_loss" in r]
        if not losses:
            raise ValueError("a trial logged no val loss; lower train.eval_steps")
        rows.append({"trial": trial.number, "set": extra, "params": trial.params, "val_loss": min(losses)})
        ws.write_json(folder / "sweep.json", {"trials": rows, "dataset": dataset})
        return min(losses)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=base.train.seed))
    study.optimize(objective, n_trials=trials)
    best = min(rows, key=lambda r: r["val_loss"])
    ws.write_json(folder / "sweep.json", {
        "method": base.train.method, "objective": "best val loss (the test split is not used)",
        "trials": rows, "best": best, "dataset": dataset,
        "command": f"tunewise train {project} " + " ".join(f"--set {s}" for s in best["set"]),
    })
    return folder

"""Trainer callbacks: loss history and the overfitting warning, Rich progress, TensorBoard, MLflow."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from transformers import TrainerCallback

from tunewise.interrupt import check as check_interrupt
from tunewise.train.common import COMPLETE
from tunewise.workspace import write_json, write_text

log = logging.getLogger(__name__)


class HistoryCallback(TrainerCallback):
    """Keeps every logged train/val loss with its step, and warns when val pulls away from train.

    Overfitting shows as a val loss that keeps rising above the train loss: we warn when the gap
    exceeds ``gap`` and has grown since the previous evaluation.
    """

    def __init__(self, gap: float = 0.5):
        self.rows: list[dict] = []
        self.warnings: list[str] = []
        self.gap = gap
        self._train_loss: float | None = None
        self._last_gap: float | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        self.rows.append({"step": state.global_step, "epoch": state.epoch, **logs})
        if "loss" in logs:
            self._train_loss = float(logs["loss"])
        if "eval_loss" in logs and self._train_loss is not None:
            self._check_gap(state.global_step, float(logs["eval_loss"]))

    def _check_gap(self, step: int, val_loss: float) -> None:
        gap = val_loss - self._train_loss
        if gap > self.gap and self._last_gap is not None and gap > self._last_gap:
            msg = (f"step {step}: val loss {val_loss:.3f} is {gap:.3f} above train loss and the gap is "
                   "growing: the model may be overfitting (see curves.json; train.early_stopping_patience stops it)")
            log.warning(msg)
            self.warnings.append(msg)
        self._last_gap = gap

    def curves(self) -> dict:
        return {
            "train": [{"step": r["step"], "loss": r["loss"]} for r in self.rows if "loss" in r],
            "val": [{"step": r["step"], "loss": r["eval_loss"]} for r in self.rows if "eval_loss" in r],
            "warnings": self.warnings,
        }

    def save(self, run_dir: Path) -> None:
        write_json(Path(run_dir) / "train_history.json", self.rows)
        write_json(Path(run_dir) / "curves.json", self.curves())


class RichProgressCallback(TrainerCallback):
    """Drives a progress bar from ``progress(description, total)`` (see tunewise.rungs.base).

    ``advance`` also gets the real (non-pad) tokens per second as ``rate``.
    """

    def __init__(self, progress, label: str = "training"):
        self.progress = progress
        self.label = label
        self.advance = None
        self.done = 0
        self.trainer = None
        self.started = 0.0
        self.tokens0 = 0

    def bind(self, trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.advance = self.progress(self.label, state.max_steps)
        self.done = state.global_step
        self.started = time.perf_counter()
        self.tokens0 = getattr(self.trainer, "trained_tokens", 0)
        if self.done:
            self.advance(self.done)

    def on_step_end(self, args, state, control, **kwargs):
        if not self.advance:
            return
        n = state.global_step - self.done
        self.done = state.global_step
        tokens = getattr(self.trainer, "trained_tokens", 0) - self.tokens0
        tps = tokens / max(time.perf_counter() - self.started, 1e-9)
        self.advance(n, rate=f"{tps:,.0f} tok/s")


class InterruptCheck(TrainerCallback):
    """Honours a pending Ctrl-C or SIGTERM at every micro-step and evaluation batch, even one that a
    library swallowed on its way up (see tunewise.interrupt)."""

    def on_substep_end(self, args, state, control, **kwargs):
        check_interrupt()

    def on_step_end(self, args, state, control, **kwargs):
        check_interrupt()

    def on_prediction_step(self, args, state, control, **kwargs):
        check_interrupt()


class CompleteMarker(TrainerCallback):
    """Marks a checkpoint folder complete once the Trainer has written all of it.

    Resuming picks the newest marked checkpoint, so a process killed mid-save (``kill -9``) never
    resumes from a half-written folder.
    """

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_text(folder / COMPLETE, str(state.global_step))


class TensorBoardCallback(TrainerCallback):
    """Every logged scalar to TensorBoard event files in ``folder`` (main process only)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.writer = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.folder))
        for key, value in logs.items():
            if isinstance(value, int | float):
                self.writer.add_scalar(key.replace("eval_", "val/") if key.startswith("eval_") else f"train/{key}",
                                       value, state.global_step)
        self.writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MlflowCallback(TrainerCallback):
    """Params once and metrics every log, to an MLflow tracking URI (file:… or sqlite:…)."""

    def __init__(self, uri: str, experiment: str, run_name: str, params: dict):
        self.uri, self.experiment, self.run_name, self.params = uri, experiment, run_name, params
        self.run = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(self.experiment)
        self.run = mlflow.start_run(run_name=self.run_name)
        mlflow.log_params(self.params)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not logs:
            return
        import mlflow

        metrics = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
        mlflow.log_metrics(metrics, step=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.run is not None:
            import mlflow

            mlflow.end_run()
            self.run = None


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, int | float | str | bool) or v is None else str(v)
    return out


def tracking_callbacks(config, run_dir: Path, progress=None) -> tuple[list, HistoryCallback]:
    """The callbacks a training run uses, from its config; returns (callbacks, history)."""
    t = config.train
    history = HistoryCallback(t.overfit_gap)
    callbacks: list = [history, CompleteMarker(), InterruptCheck()]
    if progress is not None:
        callbacks.append(RichProgressCallback(progress, f"{t.method}: training"))
    if t.tensorboard:
        callbacks.append(TensorBoardCallback(Path(run_dir) / "logs"))
    if t.mlflow_uri:
        callbacks.append(MlflowCallback(t.mlflow_uri, config.name, Path(run_dir).name,
                                        _flat(config.train.model_dump(mode="json"), "train.")))
    return callbacks, history

"""Trainer callbacks: the loss history for the report, and Rich progress with ETA and tokens/s."""

from __future__ import annotations

from transformers import TrainerCallback


class HistoryCallback(TrainerCallback):
    """Keeps every logged train/val loss with its step, for overfitting curves."""

    def __init__(self):
        self.rows: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.rows.append({"step": state.global_step, "epoch": state.epoch, **logs})


class RichProgressCallback(TrainerCallback):
    """Drives a progress bar from ``progress(description, total)`` (see tunewise.rungs.base)."""

    def __init__(self, progress):
        self.progress = progress
        self.advance = None
        self.done = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.advance = self.progress("lora: training", state.max_steps)
        self.done = state.global_step
        if self.done:
            self.advance(self.done)

    def on_step_end(self, args, state, control, **kwargs):
        if self.advance:
            self.advance(state.global_step - self.done)
            self.done = state.global_step

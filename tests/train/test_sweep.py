"""`tunewise sweep`: Optuna trials within the budget, scored on val loss only."""

from __future__ import annotations

import json

from tunewise.train.sweep import run_sweep


def test_sweep_runs_the_trial_budget_on_val_only(tiny_project, monkeypatch):
    from tunewise.data import resolve

    real = resolve.resolve_splits

    def no_test(*args, **kwargs):  # a trial must never see the frozen test split
        splits = real(*args, **kwargs)
        splits.test = None
        return splits

    monkeypatch.setattr(resolve, "resolve_splits", no_test)
    folder = run_sweep(tiny_project, 2, "lora", ["train.max_steps=2", "train.eval_steps=1", "train.max_val_examples=4"])
    result = json.loads((folder / "sweep.json").read_text())
    assert len(result["trials"]) == 2
    assert result["best"]["val_loss"] == min(t["val_loss"] for t in result["trials"])
    assert "test" in result["objective"] and result["command"].startswith("tunewise train")
    assert any(s.startswith("train.lora.r=") for s in result["best"]["set"])
    assert result["dataset"]["auto_prepared"] and "test_hash" not in result["dataset"]

"""`tunewise train`: the run folder and its lineage, kill -9 then --resume, user errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from tunewise.train.run import train_project

SRC = str(Path(__file__).parents[2] / "src")
RESUME_SET = ["train.max_steps=16", "train.eval_steps=2", "train.batch_size=2", "train.max_val_examples=2",
              "train.seed=3", "train.lora.dropout=0.1", "train.tensorboard=false"]


def _cli(*args) -> list[str]:
    return [sys.executable, "-c", "from tunewise.cli import main; main()", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def test_train_writes_run_folder_with_lineage(tiny_project):
    run = train_project(tiny_project, "lora", ["train.max_steps=2", "train.eval_steps=1", "train.batch_size=4"])
    assert run.parent.name == "runs" and run.name.startswith("lora-")
    for name in ("config.yaml", "lineage.json", "metrics.json", "train_history.json", "curves.json"):
        assert (run / name).exists(), name
    lineage = json.loads((run / "lineage.json").read_text())
    assert len(lineage["data_hash"]) == 64 and lineage["packages"]["peft"] and lineage["config"]["train"]["method"] == "lora"
    assert lineage["dataset"]["auto_prepared"] and "tunewise train" in lineage["dataset"]["prepared_by"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["train_tokens"] > 0 and metrics["best_val_loss"] is not None
    assert any((run / "logs").glob("events.out.tfevents.*"))
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    curves = json.loads((run / "curves.json").read_text())
    assert curves["train"] and curves["val"]
    assert not list(run.rglob(".*.tmp"))  # atomic writes leave no temporaries


def _last_weights(run: Path) -> dict[str, torch.Tensor]:
    last = max(run.glob("checkpoints/checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return load_file(last / "adapter_model.safetensors")


def test_kill_9_then_resume_ends_with_the_same_weights(tiny_project, tmp_path):
    sets = [a for s in RESUME_SET for a in ("--set", s)]
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli("train", str(tiny_project), "--method", "lora", "--run", str(run), "-q", *sets),
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(run.glob("checkpoints/checkpoint-*/tunewise-complete")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "adapter").exists(), "the run finished before it was killed; the test proves nothing"

    train_project(tiny_project, "lora", RESUME_SET, resume=True, run=run)  # in-process: saves a start-up
    reference = train_project(tiny_project, "lora", RESUME_SET, run=tmp_path / "straight")

    assert json.loads((run / "metrics.json").read_text())["steps"] == 16
    first_logged = json.loads((run / "train_history.json").read_text())[0]["step"]
    assert first_logged > 2, "the resumed run started again from step 0"
    a, b = _last_weights(run), _last_weights(reference)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    final_a = load_file(run / "adapter" / "adapter_model.safetensors")
    final_b = load_file(reference / "adapter" / "adapter_model.safetensors")
    for key in final_a:
        torch.testing.assert_close(final_a[key], final_b[key], rtol=1e-4, atol=1e-6, msg=key)


def test_resume_without_an_earlier_run_names_the_fix(tiny_project):
    from typer.testing import CliRunner

    from tunewise.cli import app

    done = CliRunner().invoke(app, ["train", str(tiny_project), "--method", "dora", "--resume"])
    assert done.exit_code == 2
    assert "no earlier 'dora' run" in done.output and "Traceback" not in done.output


def test_train_user_errors_are_one_line_with_the_key(tiny_project):
    from typer.testing import CliRunner

    from tunewise.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["train", str(tiny_project), "--method", "adapterfusion"])
    assert bad.exit_code == 2 and "train.method" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(app, ["train", str(tiny_project), "--method", "dpo", "-q",
                                  "--set", "train.dpo.data=prefs.jsonl"])
    assert missing.exit_code == 1 and "train.dpo.data: no such file" in missing.output and "prefs.jsonl" in missing.output

"""2-process gloo DDP through torchrun ends with the weights of one process with the same global batch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from tunewise.train.launch import launch
from tunewise.train.run import train_project

SRC = str(Path(__file__).parents[2] / "src")
COMMON = ["train.max_steps=3", "train.eval_steps=3", "train.max_val_examples=4", "train.sampling=sequential",
          "train.lora.dropout=0.0", "train.tensorboard=false", "train.learning_rate=0.01"]


def _last(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors")


def test_two_process_ddp_matches_single_process(tiny_project, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ddp = launch(tiny_project, "lora", 2, [*COMMON, "train.batch_size=2"], run=tmp_path / "ddp",
                 master="127.0.0.1:29517")
    single = train_project(tiny_project, "lora", [*COMMON, "train.batch_size=4"], run=tmp_path / "single")

    assert json.loads((ddp / "metrics.json").read_text())["world_size"] == 2
    a, b = _last(ddp), _last(single)
    assert a.keys() == b.keys()
    moved = load_file(single / "adapter" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in moved.items() if "lora_B" in k)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)

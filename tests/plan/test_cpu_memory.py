"""The memory estimate against peak memory measured here, on CPU, for a config-built model.

A subprocess (tests/plan/measure_cpu.py) trains two steps and reports how far its resident set
grew above the loaded model: gradients, optimizer state, activations and logits. glibc is told to
hand large blocks straight back to the OS (a fixed mmap threshold), so the resident set follows the
live tensors instead of the allocator's cache. The estimate of the same growth is its
gradients + optimizer + activations + logits plus the 5% allocator share (no CUDA context on CPU).
Measured on this machine (2 cores, torch 2.13 CPU): hidden 128, 2 layers, batch 32 × 512 tokens,
fp32 — full: measured 385 MiB, estimated 309 MiB; LoRA: measured 333 MiB, estimated 305 MiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_tiny_model
from tunewise.plan.estimate import ALLOCATOR_SHARE, Setup, memory_breakdown
from tunewise.plan.families import from_folder

TOLERANCE = 0.30
MEASURE = Path(__file__).with_name("measure_cpu.py")


def measure_growth(model_dir: Path, batch: int, seq_len: int, methods: list[str]) -> dict[str, int]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(MEASURE), str(model_dir), str(batch), str(seq_len), *methods],
                          capture_output=True, text=True, env=env, timeout=300, check=True)
    return {m: r["growth"] for m, r in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def estimated_growth(model_dir: Path, method: str, batch: int, seq_len: int) -> float:
    """What training adds on top of the loaded weights (fp32 on CPU; LoRA r=8 on all linear layers)."""
    mem = memory_breakdown(from_folder(model_dir), Setup(method, seq_len, batch, "fp32", "adamw", 8))
    tensors = mem["gradients"] + mem["optimizer"] + mem["activations"] + mem["logits"]
    return tensors * (1 + ALLOCATOR_SHARE)


@pytest.fixture(scope="module")
def model_128(tmp_path_factory) -> Path:
    # Wide enough that activations (hundreds of MiB) dwarf the resident-set noise of a Python process.
    return build_tiny_model(tmp_path_factory.mktemp("tiny-128"), hidden=128)


def test_estimate_matches_measured_cpu_peak(model_128):
    # One subprocess for both methods: importing transformers is most of the test's time.
    measured = measure_growth(model_128, 32, 512, ["full", "lora"])
    for method, growth in measured.items():
        estimated = estimated_growth(model_128, method, 32, 512)
        assert abs(estimated - growth) <= TOLERANCE * growth, (
            f"{method}: estimated {estimated / 2**20:.0f} MiB, measured {growth / 2**20:.0f} MiB"
        )

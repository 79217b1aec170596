"""Measure the peak memory growth of a few training steps on CPU; run as a subprocess.

usage: python measure_cpu.py MODEL_DIR BATCH SEQ_LEN METHOD [METHOD …]  → one JSON line, by method.

The baseline is the resident set after the model and optimizer are built; the peak is Linux's
high-water mark (VmHWM), reset just before training by writing 5 to /proc/self/clear_refs, so the
model load's own peak does not count (nor an earlier method's: everything is freed in between).
The growth is what training adds: gradients, optimizer state, activations and logits.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
from pathlib import Path


def _kib(field: str) -> int:
    status = open("/proc/self/status").read()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) * 1024


def main(model_dir: str, method: str, batch: int, seq_len: int, steps: int = 2) -> dict:
    import torch

    torch.set_num_threads(1)
    from tunewise.models.load import load_model

    torch.manual_seed(0)
    model = load_model(model_dir)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq_len))
    # safetensors weights are memory-mapped and only become resident when first read; read them
    # all now so that the growth measured below is training's alone.
    with torch.no_grad():
        for p in model.parameters():
            p.sum()
    baseline = _kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = _kib("VmHWM")
    del model, optimizer, loss
    gc.collect()
    return {"baseline": baseline, "peak": peak, "growth": peak - baseline}


TOLERANCE = 0.30


def measure_growth(model_dir: Path, batch: int, seq_len: int, methods: list[str]) -> dict[str, int]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(Path(__file__)), str(model_dir), str(batch), str(seq_len), *methods],
                          capture_output=True, text=True, env=env, timeout=300, check=True)
    return {m: r["growth"] for m, r in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def estimated_growth(model_dir: Path, method: str, batch: int, seq_len: int) -> float:
    """What training adds on top of the loaded weights (fp32 on CPU; LoRA r=8 on all linear layers)."""
    from tunewise.families import from_folder
    from tunewise.plan.estimate import ALLOCATOR_SHARE, Setup, memory_breakdown

    mem = memory_breakdown(from_folder(model_dir), Setup(method, seq_len, batch, "fp32", "adamw", 8))
    tensors = mem["gradients"] + mem["optimizer"] + mem["activations"] + mem["logits"]
    return tensors * (1 + ALLOCATOR_SHARE)


if __name__ == "__main__":
    model_dir, batch, seq, *methods = sys.argv[1:]
    print(json.dumps({m: main(model_dir, m, int(batch), int(seq)) for m in methods}))

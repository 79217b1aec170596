"""The machine's sustained FLOP/s: measured once per machine, cached, and used to turn FLOPs into seconds.

Why a calibration and not the latency measured while scoring: a ladder runs rungs one after another,
minutes apart, on a machine that is doing other things. Seconds measured during scoring priced two
rungs running the same model on the same tokens at 851 and 127 ms. Pricing FLOPs at one throughput
measured once makes equal work cost the same whatever the machine was doing when each rung ran.

The benchmark is a fixed set of float32 matmuls the size of a small transformer layer (MiniLM's and
SmolLM2-135M's widths), run in interleaved rounds after a warm-up round on one thread and timed in
that thread's CPU time, not wall time: time spent waiting while other processes hold the cores is
not counted, so a calibration on a busy machine still measures what a core can do (a first
calibration under load would otherwise be cached and under-price every later request). The figure
is the median over rounds times torch's thread count (matmuls scale about linearly over a few
cores), and the interquartile range travels with it so the report can show the spread. The
result is cached in ``$TUNEWISE_HOME/throughput.json`` under a key describing the machine (CPU model,
core count, torch version, torch threads): a different machine or thread count is measured again.
Delete the file to measure again; set ``cost.gflops`` to price another machine.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

# (rows, inner, outer): a 256-token batch through an encoder-sized and an LLM-sized MLP projection.
SHAPES = ((256, 384, 1536), (256, 576, 1536))
ROUNDS = 9
MATMULS_PER_SAMPLE = 3
BENCHMARK = "matmul-thread-cpu-time-1"  # part of the cache key: a changed benchmark measures again


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What the throughput depends on; a change in any of these calls for a new measurement."""
    import torch

    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(),
            "torch": torch.__version__.split("+")[0], "threads": torch.get_num_threads(), "benchmark": BENCHMARK}


def calibrate(rounds: int = ROUNDS, dtype: str = "float32") -> dict:
    """Median and IQR of GFLOP/s over ``rounds`` interleaved rounds of the fixed matmuls, per core in
    CPU time, scaled to torch's thread count. ``dtype``: float32 (what costs are priced at) or
    bfloat16 (what bf16 training and scoring can reach; bench/train_vs_trl.py reports both)."""
    import numpy as np
    import torch

    threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    kind = getattr(torch, dtype)
    mats = [(torch.randn(m, k, generator=gen).to(kind), torch.randn(k, n, generator=gen).to(kind)) for m, k, n in SHAPES]
    samples = []
    torch.set_num_threads(1)  # the work then runs in this thread, so its CPU clock sees all of it
    try:
        with torch.inference_mode():
            for i in range(rounds + 1):
                for a, b in mats:
                    start = time.thread_time()
                    for _ in range(MATMULS_PER_SAMPLE):
                        torch.mm(a, b)
                    cpu = max(time.thread_time() - start, 1e-9)
                    if i:  # round 0 warms the allocator and the kernels up
                        samples.append(2 * a.shape[0] * a.shape[1] * b.shape[1] * MATMULS_PER_SAMPLE / cpu / 1e9)
    finally:
        torch.set_num_threads(threads)
    q1, median, q3 = threads * np.percentile(samples, [25, 50, 75])
    return {"gflops": round(float(median), 3), "gflops_q1": round(float(q1), 3), "gflops_q3": round(float(q3), 3),
            "samples": len(samples), "threads": threads}


def cache_file() -> Path:
    from tunewise.assets import cache_dir

    return cache_dir() / "throughput.json"


def machine_throughput(gflops: float | None = None) -> dict:
    """The throughput to price FLOPs with: ``gflops`` when configured (``cost.gflops``), else this
    machine's cached calibration, measured now (about a second) when there is none yet."""
    from tunewise import workspace as ws

    if gflops is not None:
        return {"gflops": gflops, "gflops_q1": gflops, "gflops_q3": gflops, "source": "cost.gflops"}
    info = machine()
    key = json.dumps(info, sort_keys=True)
    path = cache_file()
    try:
        cached = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        cached = {}  # a damaged cache is measured again and rewritten
    if key not in cached:
        cached[key] = {**calibrate(), "machine": info, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        ws.write_json(path, cached)
    return {**cached[key], "source": str(path)}

"""The ladder's cost and recommendation do not move with the machine's load (issue: two runs with
identical accuracies recommended different rungs because latency was measured under load)."""

from __future__ import annotations

import json
import subprocess
import sys

from tiny import write_tiny_project

from tunewise.config import load_config
from tunewise.ladder import run_ladder

RUNGS = ["zero-shot", "embedding-classifier", "encoder-finetune", "lora"]
BURN = "import time\nend = time.time() + {s}\nwhile time.time() < end:\n    pass\n"


def _ladder(project) -> dict:
    report = run_ladder(load_config(project), project, RUNGS)
    return json.loads((report / "ladder.json").read_text())


def _ranking(ladder: dict, key) -> list[str]:
    return [r["name"] for r in sorted(ladder["rungs"], key=lambda r: (key(r), r["name"]))]


def test_cost_and_recommendation_are_the_same_under_artificial_load(tmp_path, tiny_model_dir, tiny_encoder_dir,
                                                                     monkeypatch):
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path / "home"))  # this machine calibrated afresh, once
    extra = f"encoder: {{model: {tiny_encoder_dir}, epochs: 2}}\neval: {{timing_examples: 4, timing_repeats: 2}}\n"
    project = write_tiny_project(tmp_path / "p", tiny_model_dir, extra=extra)
    idle = _ladder(project)
    # Bounded burners (they stop themselves after 90 s), one per core, while the second ladder runs.
    burners = [subprocess.Popen([sys.executable, "-c", BURN.format(s=90)]) for _ in range(2)]
    try:
        busy = _ladder(project)
    finally:
        for b in burners:
            b.terminate()
            b.wait(timeout=10)
    assert busy["recommendation"]["rung"] == idle["recommendation"]["rung"]
    for key in (lambda r: r["cost"]["usd_first_month"], lambda r: r["compute"]["flops_per_request"],
                lambda r: r["compute"]["train_flops"]):
        assert _ranking(busy, key) == _ranking(idle, key)
    by_idle, by_busy = ({r["name"]: r for r in lad["rungs"]} for lad in (idle, busy))
    for name in RUNGS:
        assert by_busy[name]["compute"] == by_idle[name]["compute"]
        assert by_busy[name]["cost"] == by_idle[name]["cost"]
        latency = by_busy[name]["latency"]  # measured (and reported) apart from the cost
        assert latency["repeats"] == (2 if latency["source"] == "timing sample" else 1), latency
    # The same model on the same tokens costs the same per request.
    assert by_idle["zero-shot"]["compute"]["flops_per_request"] == by_idle["lora"]["compute"]["flops_per_request"]
    assert (by_idle["embedding-classifier"]["compute"]["flops_per_request"]
            == by_idle["encoder-finetune"]["compute"]["flops_per_request"])
    assert by_idle["zero-shot"]["cost"]["usd_per_1k_requests"] == by_idle["lora"]["cost"]["usd_per_1k_requests"]
    assert idle["break_even"]["throughput"] == idle["throughput"] == busy["throughput"]

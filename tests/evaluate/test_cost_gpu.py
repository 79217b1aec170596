"""The roofline: a GPU prices prefill and training by FLOPs at the stated utilisation and decoding by
the bytes each generated token reads; estimate, ladder and report price on this one model."""

from __future__ import annotations

import json

import pytest

from tunewise.config import CostConfig
from tunewise.evaluate.cost import (
    break_even,
    decode_bytes,
    forward_flops,
    priced_machine,
    priced_seconds,
    prices_line,
    resolve_prices,
    rung_cost,
)
from tunewise.families import family
from tunewise.gpus import load_gpus, load_utilisation

# The demo model, SmolLM2-135M-Instruct: its shape from the architecture table (no download).
DEMO = family("smollm2-135m")
SHAPE = (DEMO.layer_linear_params() + DEMO.vocab * DEMO.hidden, DEMO.layers, DEMO.hidden)  # tied head counts
KV = 2 * DEMO.layers * DEMO.kv_width * 2
# The demo's zero-shot latency measured on this project's 2-core CPU (BENCHMARKS.md, "The BBC demo",
# re-run 2026-11-25 on an idle machine): 227.5 ms per example for 122 prompt tokens.
CPU_MEASURED_MS = 227.5


def demo_request(prompt: int, generated: int) -> dict:
    """A rung result as the ladder records one request of the demo model: prompt prefill, then
    ``generated`` tokens decoded one at a time (0: label scoring, no decoding)."""
    decode = forward_flops(SHAPE, generated, prompt)
    work = {"flops_per_request": forward_flops(SHAPE, prompt) + decode, "train_flops": 0.0,
            "decode_flops_per_request": decode,
            "decode_bytes_per_request": decode_bytes(SHAPE[0], KV, generated, prompt) if generated else 0.0}
    return {"name": "zero-shot", "compute": work, "prompt_tokens_per_request": prompt, "train_seconds": 0}


def usd_per_request(r: dict, gpu: str) -> tuple[float, float]:
    prices = resolve_prices(CostConfig(gpu=gpu))
    _, ms = priced_seconds(r, priced_machine(prices))
    return ms, rung_cost(0, ms, 0, prices)["usd_per_1k_requests"] / 1000


@pytest.mark.parametrize("prompt", [16, 122, 512, 2048])
@pytest.mark.parametrize("generated", [0, 1, 32, 256])
def test_an_h100_is_never_dearer_per_request_than_an_l4_and_an_l4_is_far_below_this_cpu(prompt, generated):
    r = demo_request(prompt, generated)
    l4_ms, l4_usd = usd_per_request(r, "L4")
    h100_ms, h100_usd = usd_per_request(r, "H100-80GB")
    assert h100_ms < l4_ms and h100_usd <= l4_usd
    if (prompt, generated) == (122, 0):  # the demo's zero-shot request, as measured on this CPU
        assert l4_ms < CPU_MEASURED_MS / 100


def test_the_roofline_by_hand():
    gpus, u = load_gpus(), load_utilisation()
    l4 = priced_machine(resolve_prices(CostConfig(gpu="L4")))
    assert l4["flops_per_second"] == pytest.approx(gpus["L4"].tflops * 1e12 * u.mfu)
    assert l4["bytes_per_second"] == pytest.approx(gpus["L4"].memory_gbps * 1e9 * u.bandwidth_share)
    work = {"flops_per_request": 3e12, "decode_flops_per_request": 1e12, "decode_bytes_per_request": 2.1e11,
            "train_flops": 4.84e13}
    train_s, ms = priced_seconds({"compute": work}, l4)
    # L4 at 40% of 121 TFLOP/s = 48.4 TFLOP/s; 70% of 300 GB/s = 210 GB/s.
    assert train_s == pytest.approx(1.0)
    # Prefill 2e12 / 48.4e12 s; decoding reads 2.1e11 B / 2.1e11 B/s = 1 s, slower than its 1e12 FLOPs.
    assert ms == pytest.approx(1000 * (2e12 / 48.4e12 + 1.0))
    # A CPU has no bandwidth term: every FLOP at its measured rate.
    cpu = priced_machine(resolve_prices(CostConfig(gflops=100)))
    assert priced_seconds({"compute": work}, cpu)[1] == pytest.approx(1000 * 3e12 / 100e9)


def test_decode_bytes_read_every_weight_once_and_the_kv_cache_before_each_token():
    # 2 tokens after a 3-token prompt: weights twice, then 3 and 4 positions of KV cache.
    assert decode_bytes(1000, 10, 2, 3) == 2 * 2 * 1000 + 10 * (3 + 4)
    assert decode_bytes(1000, 10, 0, 3) == 0


def test_the_report_says_what_was_priced_with_which_figures_and_where_they_came_from():
    ladder = {"rungs": [demo_request(122, 0)], "prices": {"gpu": "L4"}}
    text = prices_line(break_even(ladder))
    assert "L4 at $0.7/h (catalogue price)" in text and "40% of its 121 TFLOP/s" in text
    assert "70% of its 300 GB/s" in text and "https://www.nvidia.com/en-us/data-center/l4/" in text
    assert "arXiv:2407.21783" in text  # the utilisation's source
    own = prices_line(break_even({**ladder, "prices": {"gpu": "L4", "usd_per_hour": 0.5}}))
    assert "L4 at $0.5/h (cost.usd_per_hour (the catalogue's is $0.7/h))" in own
    cpu = prices_line(break_even({"rungs": ladder["rungs"], "prices": {}, "throughput": {
        "gflops": 150.0, "gflops_q1": 140.0, "gflops_q3": 160.0, "machine": {"cpu": "AMD EPYC", "threads": 2},
        "measured_at": "2026-12-04T00:00:00Z", "source": "/cache/throughput.json"}}))
    assert "this CPU (AMD EPYC, 2 torch threads)" in cpu and "150 GFLOP/s" in cpu and "/cache/throughput.json" in cpu


def test_estimate_and_ladder_price_the_same_training_run_alike(tiny_project, tiny_model_dir):
    """The ladder's LoRA rung, re-priced on an A100, costs what `tunewise estimate` plans for the same
    model, method, tokens and GPU, plus the val evaluations that pick its checkpoint (which the
    estimate does not plan: forward only, 2 FLOPs per weight per token). With train.shared_prefix the
    ladder runs a batch's shared prompt prefix once and books fewer FLOPs than the estimate, which plans
    every token: off here, so both count the same work."""
    from typer.testing import CliRunner

    from tunewise.cli import app
    from tunewise.config import load_config
    from tunewise.ladder import run_ladder

    config = load_config(tiny_project, ["train.shared_prefix=false"])
    report = json.loads((run_ladder(config, tiny_project) / "ladder.json").read_text())
    lora = next(r for r in report["rungs"] if r["name"] == "lora")
    work = lora["compute"]
    assert work["train_tokens"] > 0 and work["train_eval_tokens"] > 0
    runner = CliRunner()
    planned = runner.invoke(app, ["estimate", "--model", str(tiny_model_dir), "--method", "lora", "--seq-len", "1",
                                  "--batch", "1", "--gpu", "A100-80GB", "--lora-r", "4", "--json"])
    assert planned.exit_code == 0, planned.output
    tps = json.loads(planned.output)["tokens_per_second"]
    machine = priced_machine(resolve_prices(CostConfig(gpu="A100-80GB")))
    ladder_train_s, _ = priced_seconds(lora, machine)
    params = work["train_flops"] / (4 * work["train_tokens"] + 2 * work["train_eval_tokens"])
    eval_s = 2 * params * work["train_eval_tokens"] / machine["flops_per_second"]
    assert ladder_train_s - eval_s == pytest.approx(work["train_tokens"] / tps, rel=0.01)


def test_generated_tokens_book_their_bytes_and_scored_labels_do_not(tiny_model_dir):
    import time
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM

    from tunewise.core import Cost
    from tunewise.evaluate.cost import kv_bytes_per_position, model_shape
    from tunewise.rungs.base import LabelScorer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    c = model.config
    assert kv_bytes_per_position(model) == 2 * c.num_hidden_layers * c.num_key_value_heads * (
        c.hidden_size // c.num_attention_heads) * 2
    rung = SimpleNamespace(shape=model_shape(model), kv_bytes=kv_bytes_per_position(model), cost=Cost())
    prompts = [[1] * 10, [2] * 12]
    LabelScorer.charge(rung, time.perf_counter(), prompts, [[3], [3]])
    assert rung.cost.decode_tokens == 0 and rung.cost.decode_bytes == 0 and rung.cost.predict_flops > 0
    LabelScorer.charge(rung, time.perf_counter(), prompts, [[3], [5]], decoded=True)
    assert rung.cost.decode_tokens == 8
    assert rung.cost.decode_bytes == (decode_bytes(rung.shape[0], rung.kv_bytes, 3, 10)
                                      + decode_bytes(rung.shape[0], rung.kv_bytes, 5, 12))
    assert rung.cost.decode_flops == forward_flops(rung.shape, 3, 10) + forward_flops(rung.shape, 5, 12)

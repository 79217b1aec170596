"""FLOPs and the machine's throughput: what a rung is priced by, checked by hand."""

from __future__ import annotations

import json

import pytest

from tunewise.core import Cost
from tunewise.evaluate import throughput as tp
from tunewise.evaluate.cost import forward_flops, forward_params, model_shape, rung_compute


def test_forward_params_skip_embedding_lookups_but_keep_a_tied_head(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    total = sum(p.numel() for p in model.parameters())  # a tied head is one tensor, counted once
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert forward_params(model) == total  # the tied head's matmul runs on every token
    model.config.tie_word_embeddings = False
    untied = AutoModelForCausalLM.from_config(model.config)
    lookup = untied.get_input_embeddings().weight.numel()
    assert forward_params(untied) == sum(p.numel() for p in untied.parameters()) - lookup
    assert model_shape(model)[1:] == (2, 32)


def test_encoder_params_leave_out_word_position_and_type_embeddings(tiny_encoder_dir):
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(tiny_encoder_dir)
    emb = bert.embeddings
    lookups = sum(m.weight.numel() for m in (emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings))
    assert forward_params(bert) == sum(p.numel() for p in bert.parameters()) - lookups


def test_forward_flops_by_hand():
    shape = (1000, 2, 8)  # 1,000 weights, 2 layers, width 8: 64 FLOPs per attended position
    assert forward_flops(shape, 1) == 2 * 1000 + 64 * 1
    # 3 new tokens after 5 cached: 2,000 each, attending to 6, 7 and 8 positions.
    assert forward_flops(shape, 3, context=5) == 3 * 2000 + 64 * (6 + 7 + 8)
    assert forward_flops(shape, 3, causal=False) == 3 * 2000 + 64 * 9
    assert forward_flops(shape, 0, context=50) == 0


def test_equal_flops_cost_the_same_whatever_seconds_were_measured():
    busy = Cost(predict_seconds=85.1, predict_examples=100, predict_flops=3e11, train_flops=6e12, train_seconds=900)
    idle = Cost(predict_seconds=12.7, predict_examples=100, predict_flops=3e11, train_flops=6e12, train_seconds=300)
    t = {"gflops": 50.0, "gflops_q1": 40.0, "gflops_q3": 60.0}
    assert rung_compute(busy, t) == rung_compute(idle, t)
    c = rung_compute(busy, t)
    assert c["flops_per_request"] == 3e9 and c["ms_per_request"] == pytest.approx(60.0)  # 3e9 / 50e9 s
    assert c["train_seconds"] == pytest.approx(120.0)


def test_throughput_is_measured_once_per_machine_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(tp, "calibrate", lambda: calls.append(1) or {"gflops": 30.0, "gflops_q1": 28.0,
                                                                      "gflops_q3": 33.0, "samples": 18})
    first = tp.machine_throughput()
    again = tp.machine_throughput()
    assert calls == [1] and first == again and first["gflops"] == 30.0
    (key,) = json.loads((tmp_path / "throughput.json").read_text())
    assert json.loads(key)["threads"] >= 1 and first["machine"]["cpu"]
    # Another thread count is another machine: measured again.
    monkeypatch.setattr(tp, "machine", lambda: {**json.loads(key), "threads": 97})
    tp.machine_throughput()
    assert calls == [1, 1]
    assert tp.machine_throughput(gflops=7.5) == {"gflops": 7.5, "gflops_q1": 7.5, "gflops_q3": 7.5,
                                                 "source": "cost.gflops"}


def test_a_damaged_cache_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    (tmp_path / "throughput.json").write_text("{not json")
    monkeypatch.setattr(tp, "calibrate", lambda: {"gflops": 9.0, "gflops_q1": 8.0, "gflops_q3": 10.0, "samples": 18})
    assert tp.machine_throughput()["gflops"] == 9.0
    assert json.loads((tmp_path / "throughput.json").read_text())


def test_calibration_reports_a_positive_median_inside_its_quartiles_and_restores_threads():
    import torch

    threads = torch.get_num_threads()
    r = tp.calibrate(rounds=2)
    assert 0 < r["gflops_q1"] <= r["gflops"] <= r["gflops_q3"] and r["samples"] == 2 * len(tp.SHAPES)
    assert torch.get_num_threads() == threads == r["threads"]


def _priced_rung(name, flops, train_flops, gflops=50.0, acc=0.9):
    return {"name": name, "primary": "accuracy", "metrics": {"accuracy": acc}, "prompt_tokens_per_request": 0,
            "train_seconds": 999.0 if train_flops else 0.0, "ms_per_example": 999.0,  # measured: not priced
            "compute": {"flops_per_request": flops, "train_flops": train_flops,
                        "ms_per_request": 1000 * flops / (gflops * 1e9), "train_seconds": train_flops / (gflops * 1e9)}}


def test_break_even_prices_flops_not_measured_seconds_and_cost_gflops_reprices_them():
    from tunewise.evaluate.cost import break_even

    ladder = {"rungs": [_priced_rung("zero-shot", 2e9, 0), _priced_rung("lora", 1e9, 3.6e13)]}
    prices = {"usd_per_hour": 3.6, "requests_per_month": 1000}  # $0.001 a second
    (pair,) = break_even(ladder, prices)["comparisons"]
    # Training 3.6e13 / 5e10 = 720 s = $0.72; requests 40 ms vs 20 ms: $0.00002 saved each → 36,000.
    assert pair["one_off_usd"] == pytest.approx(0.72) and pair["break_even_requests"] == 36000
    faster = break_even(ladder, {**prices, "gflops": 100})
    (pair,) = faster["comparisons"]
    assert pair["one_off_usd"] == pytest.approx(0.36) and pair["break_even_requests"] == 36000
    assert faster["machine"]["figures_source"] == "cost.gflops"

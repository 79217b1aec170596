"""Planning on the real bundled SmolLM2-135M-Instruct: inspect-model, the estimate's shape, and the
estimate against peak memory measured here on CPU (assumes `make test` installed the assets)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tunewise import assets
from tunewise.cli import app
from tunewise.families import family, from_folder
from tunewise.models.inspect import inspect_model, safetensors_params
from tunewise.models.load import resolve

pytestmark = pytest.mark.e2e
ALIAS = "smollm2-135m-instruct"
runner = CliRunner()


def test_inspect_the_bundled_alias():
    r = inspect_model(ALIAS)
    assert r.ready and r.source.startswith("bundled alias") and r.source_format.startswith("gguf")
    assert r.architecture == "LlamaForCausalLM" and r.context_length == 8192
    assert r.chat_template and r.tokenizer_round_trip and r.licence == "Apache-2.0"
    assert r.parameters == pytest.approx(134.5e6, rel=0.01)
    assert {"q_proj", "down_proj"} <= set(r.peft_targets)


def test_inspect_a_gguf_path_converts_it_once_and_says_so():
    gguf = assets.asset_path(assets.SMOLLM2)
    result = runner.invoke(app, ["inspect-model", str(gguf), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["source"] == "gguf file" and data["source_format"] == f"gguf ({gguf.name})"
    assert data["weight_format"] == "safetensors"  # the cached conversion that tunewise trains on


def test_family_table_agrees_with_the_real_model():
    folder = resolve(ALIAS)
    assert family("smollm2-135m").params() == from_folder(folder).params() == safetensors_params(folder)


def test_estimate_cli_on_the_alias():
    data = json.loads(runner.invoke(app, ["estimate", "--model", ALIAS, "--method", "lora", "--json"]).output)
    assert data["model"] == "smollm2-135m" and data["fits"] and data["smallest_gpu"] == "T4"


@pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_estimate_matches_measured_cpu_peak_on_smollm2():
    # Measured here (2 cores, torch 2.13 CPU, fp32, batch 2 × 128 tokens, 2 AdamW steps):
    # LoRA r=8 all-linear: measured 486 MiB, estimated 437 MiB; full: measured 1724 MiB, estimated 2024 MiB
    # (the estimate adds gradients and activations although the backward pass frees one while it fills the other).
    from plan.measure_cpu import TOLERANCE, estimated_growth, measure_growth

    folder = resolve(ALIAS)
    measured = measure_growth(folder, 2, 128, ["lora", "full"])
    for method, growth in measured.items():
        estimated = estimated_growth(folder, method, 2, 128)
        assert abs(estimated - growth) <= TOLERANCE * growth, (
            f"{method}: estimated {estimated / 2**20:.0f} MiB, measured {growth / 2**20:.0f} MiB")

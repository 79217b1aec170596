"""`tunewise estimate`: output, JSON, the GPU catalogue, and every error a user can hit."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.plan.estimate import PlanError, Setup, estimate, load_gpus

runner = CliRunner()


@pytest.fixture(autouse=True)
def packaged_catalogue(tmp_path, monkeypatch):
    """A user's own $TUNEWISE_HOME/gpus.yaml must not change what these tests see."""
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path / "home"))


def run(*args: str):
    return runner.invoke(app, list(args))


def test_text_output_has_the_breakdown_fit_and_cost():
    result = run("estimate", "--model", "8b", "--method", "lora", "--seq-len", "2048", "--batch", "2",
                 "--gpu", "RTX-4090", "--examples", "10000", "--epochs", "3")
    assert result.exit_code == 0, result.output
    for word in ("weights", "gradients", "optimizer state", "activations", "logits", "CUDA context", "total",
                 "fits on RTX-4090", "smallest catalogued GPU", "tokens/s", "10,000 examples × 3 epochs", "$"):
        assert word in result.output, word


def test_json_output_is_machine_readable():
    result = run("estimate", "--model", "llama-3.1-70b", "--method", "qlora", "--gpu", "H100-80GB", "--json",
                 "--examples", "1000")
    data = json.loads(result.output)
    assert data["model"] == "llama-3.1-70b" and data["setup"]["method"] == "qlora"
    assert data["memory_gib"]["peak_checkpointed"] < data["memory_gib"]["peak"]
    assert data["hours"] > 0 and data["cost_usd"] > 0


def test_a_local_folder_is_sized_from_its_config(tiny_model_dir):
    result = run("estimate", "--model", str(tiny_model_dir), "--method", "full", "--json")
    data = json.loads(result.output)
    assert data["fits"] and data["smallest_gpu"] == "T4"


def test_70b_full_fits_nowhere_and_says_so():
    e = estimate("70b", Setup("full", 4096, 1), gpu="H200")
    assert not e.fits_checkpointed and e.smallest_gpu_checkpointed is None
    assert any("does not fit" in n for n in e.notes)


def test_more_gpus_more_tokens_per_second_same_memory():
    one, four = (estimate("8b", Setup("lora", gpus=g), "A100-80GB", 1000) for g in (1, 4))
    assert four.tokens_per_second == pytest.approx(4 * one.tokens_per_second, rel=1e-4)
    assert four.memory_gib == one.memory_gib
    assert four.cost_usd == pytest.approx(one.cost_usd, rel=0.02)  # 4× the GPUs for ¼ of the time


def test_catalogue_ships_inside_the_package_with_the_issue_gpus():
    gpus = load_gpus()
    for name in ("T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100-80GB", "H200", "RTX-4090"):
        assert gpus[name].memory_gib > 0 and gpus[name].tflops > 0 and gpus[name].hourly_usd > 0
        assert gpus[name].memory_gbps > 0 and gpus[name].source.startswith("https://")
    assert resources.files("tunewise").joinpath("gpus.yaml").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "9b"], "--model '9b': not a size"),
    (["--model", "8b", "--gpu", "B300"], "--gpu 'B300': not in the catalogue"),
    (["--model", "8b", "--method", "dora"], "--method 'dora': expected one of full, lora, qlora"),
    (["--model", "8b", "--precision", "fp8"], "--precision 'fp8'"),
    (["--model", "8b", "--optimizer", "lion"], "--optimizer 'lion'"),
    (["--model", "8b", "--batch", "0"], "--batch 0: must be a positive number"),
    (["--model", "8b", "--examples", "0"], "--examples 0"),
    ([], "--model is required"),
    (["--model", "/no/such/folder"], "--model '/no/such/folder'"),
])
def test_errors_are_one_line_and_exit_non_zero(args, message):
    result = run("estimate", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_folder_without_config_json_is_named(tmp_path):
    result = run("estimate", "--model", str(tmp_path))
    assert result.exit_code != 0 and "config.json" in result.output


def test_unknown_lora_target_is_named():
    with pytest.raises(PlanError, match="lora target 'qkv'"):
        estimate("8b", Setup("lora", lora_targets=("qkv",)))


def test_an_edited_catalogue_in_tunewise_home_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    (tmp_path / "gpus.yaml").write_text(
        "gpus:\n  MyGPU: {memory_gib: 10, tflops: 100, bf16: true, memory_gbps: 500, hourly_usd: 0.5}\n"
        "utilisation: {mfu: 0.5, mfu_source: mine, bandwidth_share: 0.5, bandwidth_share_source: mine}\n")
    e = estimate("1b", Setup("qlora", 256, 1), gpu="MyGPU", examples=100)
    assert e.gpu == "MyGPU" and e.smallest_gpu_checkpointed == "MyGPU"
    (tmp_path / "gpus.yaml").write_text("gpus:\n  Bad: {memory: 10}\n")
    result = run("estimate", "--model", "1b", "--gpu", "Bad")
    assert result.exit_code != 0 and "not a GPU catalogue" in result.output
    assert "gpus.Bad has no memory_gib, tflops, bf16, memory_gbps, hourly_usd" in result.output
    assert str(tmp_path / "gpus.yaml") in result.output and "Traceback" not in result.output


def test_a_catalogue_without_utilisation_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_HOME", str(tmp_path))
    (tmp_path / "gpus.yaml").write_text(
        "gpus:\n  MyGPU: {memory_gib: 10, tflops: 100, bf16: true, memory_gbps: 500, hourly_usd: 0.5}\n")
    result = run("estimate", "--model", "1b", "--gpu", "MyGPU")
    assert result.exit_code != 0 and "needs a utilisation section" in result.output
    assert "Traceback" not in result.output


def test_gpu_names_forgive_case_dashes_and_unique_prefixes():
    from tunewise.plan.estimate import find_gpu

    gpus = load_gpus()
    assert find_gpu("h100", gpus).name == "H100-80GB" and find_gpu("4090", gpus).name == "RTX-4090"
    assert find_gpu("L4", gpus).name == "L4"  # exact beats the L40S prefix
    with pytest.raises(PlanError, match="it could be A100-40GB or A100-80GB"):
        find_gpu("a100", gpus)

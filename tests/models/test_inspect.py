"""`tunewise inspect-model` on a config-built model and on the ways a model folder goes wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.models.inspect import inspect_model, safetensors_params
from tunewise.models.load import ModelError

runner = CliRunner()


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(folder, target)
    return target


def test_config_built_model_is_ready(tiny_model_dir):
    r = inspect_model(str(tiny_model_dir))
    assert r.ready and r.weight_format == "safetensors" and r.source == "local folder"
    assert r.architecture == "LlamaForCausalLM" and r.model_type == "llama"
    assert r.context_length == 512 and r.chat_template and r.tokenizer_round_trip
    assert r.eos_token == "<|im_end|>" and r.pad_token == "<|endoftext|>"
    assert set(r.peft_targets) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert "lm_head" not in r.peft_targets
    assert any("no licence" in w for w in r.warnings)


def test_parameter_count_from_headers_matches_the_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # Tied embeddings are stored once, as the model counts them.
    assert safetensors_params(tiny_model_dir) == sum(p.numel() for p in model.parameters())


def test_pickle_weights_warn_and_are_never_opened(tiny_model_dir, tmp_path):
    folder = copy_of(tiny_model_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle: opening it would fail")
    r = inspect_model(str(folder))
    assert r.weight_format == "pickle" and not r.ready
    assert any("pickle weights" in w for w in r.warnings)
    assert r.parameters > 0  # from config.json


def test_missing_chat_template_and_licence_found(tiny_model_dir, tmp_path):
    folder = copy_of(tiny_model_dir, tmp_path)
    (folder / "chat_template.jinja").unlink()
    (folder / "LICENSE").write_text("Apache License\nVersion 2.0\n")
    r = inspect_model(str(folder))
    assert not r.chat_template and any("no chat template" in w for w in r.warnings)
    assert r.licence == "LICENSE: Apache License"


def test_cli_text_and_json(tiny_model_dir):
    text = runner.invoke(app, ["inspect-model", str(tiny_model_dir)])
    assert text.exit_code == 0
    for word in ("architecture", "context length", "chat template", "eos / pad", "round-trip ok", "lora", "ready: yes"):
        assert word in text.output, word
    data = json.loads(runner.invoke(app, ["inspect-model", str(tiny_model_dir), "--json"]).output)
    assert data["ready"] is True and data["parameters"] > 0


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: tmp / "missing", "no such folder or file"),
    (lambda tmp: tmp, "has no config.json"),
    (lambda tmp: tmp / "missing.gguf", "no such GGUF file"),
])
def test_errors_are_one_line(tmp_path, make, message):
    result = runner.invoke(app, ["inspect-model", str(make(tmp_path))])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    with pytest.raises(ModelError):
        inspect_model(str(make(tmp_path)))


def test_a_folder_without_tokenizer_is_one_clear_error(tiny_model_dir, tmp_path):
    folder = copy_of(tiny_model_dir, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    result = runner.invoke(app, ["inspect-model", str(folder)])
    assert result.exit_code != 0 and "no usable tokenizer" in result.output and "Traceback" not in result.output


def test_a_file_that_is_not_gguf_is_one_line(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"this is not a gguf file at all")
    result = runner.invoke(app, ["inspect-model", str(bad)])
    assert result.exit_code == 1 and "not a GGUF file" in result.output and "Traceback" not in result.output


def test_a_folder_with_only_config_names_the_missing_tokenizer_files(tiny_model_dir, tmp_path):
    folder = tmp_path / "only-config"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder)
    result = runner.invoke(app, ["inspect-model", str(folder)])
    assert result.exit_code == 1 and "tokenizer files present: none" in result.output
    assert "from one of: )" not in result.output


def test_qlora_readiness_is_the_check_training_uses(monkeypatch):
    import importlib.util

    from tunewise.config import ProjectConfig
    from tunewise.models import inspect as insp
    from tunewise.train.methods import MethodError, check_method

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    answer = insp.qlora_readiness()
    assert answer.startswith("no:") and "tunewise[qlora]" in answer
    config = ProjectConfig.model_validate({"task": {"type": "generation"}, "data": {"files": ["x.jsonl"]},
                                           "model": {"base": "m"}, "train": {"method": "qlora"}})
    with pytest.raises(MethodError, match=r"tunewise\[qlora\]"):
        check_method(config)

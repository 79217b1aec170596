"""tunewise export on the tiny model: adapter, merged safetensors and GGUF round trips, the chat
template token ids, DEPLOY.md, the Modelfile and MODEL_CARD.md."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from tiny import write_tiny_project

from tunewise.config import load_config
from tunewise.export.run import export_run
from tunewise.ladder import run_ladder
from tunewise.models.load import ModelError

FAST = ["train.max_steps=2", "train.eval_steps=2", "train.batch_size=4", "train.max_val_examples=4",
        "train.max_train_examples=12", "eval.max_test_examples=6", "eval.bootstrap=100"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    torch.set_num_threads(1)
    project = write_tiny_project(tmp_path_factory.mktemp("export") / "proj", tiny_model_dir)
    report = run_ladder(load_config(project, FAST), project, ["zero-shot", "lora", "prefix", "full"])
    ladder = json.loads((report / "ladder.json").read_text())
    return {r["name"]: project / r["run_dir"] for r in ladder["rungs"]}


def test_merged_gguf_export_round_trips(runs, tmp_path):
    out = export_run(runs["lora"], merge=True, fmt="gguf", out=tmp_path / "x")
    report = json.loads((out / "export.json").read_text())
    assert report["prompts"] == "test split"
    for check in ("safetensors_round_trip", "gguf_round_trip"):
        assert report[check]["ok"] and report[check]["greedy_same"] and report[check]["max_abs_logit_diff"] <= 1e-3
    assert report["template"]["same_token_ids"] and report["gguf_template"]["same_token_ids"]
    assert (out / "model" / "model.safetensors").exists() and (out / report["gguf"]).exists()
    assert "chat_template" in (out / "model" / "tokenizer_config.json").read_text() or \
        (out / "model" / "chat_template.jinja").exists()
    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{report['gguf']}" in modelfile
    assert 'TEMPLATE """<|im_start|>user\nclassify the topic\n\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n"""' \
        in modelfile
    deploy = (out / "DEPLOY.md").read_text()
    assert "llama-server -m" in deploy and "--jinja" in deploy and "ollama create tiny-lora" in deploy
    card = (out / "MODEL_CARD.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] and meta["model-index"][0]["results"][0]["metrics"][0]["type"]
    assert "Ladder results" in card and "| lora |" in card and "Recommendation:" in card


def test_adapter_export_is_the_peft_folder_for_vllm(runs, tmp_path):
    out = export_run(runs["lora"], out=tmp_path / "a")
    assert (out / "adapter" / "adapter_config.json").exists()
    assert "--enable-lora" in (out / "DEPLOY.md").read_text() and "--lora-modules tiny/lora=" in (out / "DEPLOY.md").read_text()


def test_full_fine_tune_exports_its_weights(runs, tmp_path):
    out = export_run(runs["full"], out=tmp_path / "f")
    report = json.loads((out / "export.json").read_text())
    assert report["safetensors_round_trip"]["max_abs_logit_diff"] == 0.0 and report["template"]["same_token_ids"]
    assert "vllm serve" in (out / "DEPLOY.md").read_text() and (out / "Modelfile").read_text().startswith("FROM ./model")


def test_export_refuses_what_it_cannot_do(runs, tmp_path):
    with pytest.raises(ModelError, match="has no trained LLM weights"):
        export_run(runs["zero-shot"], out=tmp_path / "z")
    with pytest.raises(ModelError, match="add --merge"):
        export_run(runs["lora"], fmt="gguf", out=tmp_path / "g")
    with pytest.raises(ModelError, match="cannot be merged"):
        export_run(runs["prefix"], merge=True, out=tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_export_never_deletes_what_it_did_not_write(runs, tmp_path):
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "plan.txt").write_text("my plan")
    (out / "DEPLOY.md").write_text("my own deploy notes")
    with pytest.raises(ModelError, match=r"already holds 2 entries \(DEPLOY.md, notes\).*--force.*nothing was written"):
        export_run(runs["lora"], out=out)
    assert sorted(p.name for p in out.iterdir()) == ["DEPLOY.md", "notes"]
    assert (out / "DEPLOY.md").read_text() == "my own deploy notes"

    export_run(runs["lora"], out=out, force=True)
    assert (out / "notes" / "plan.txt").read_text() == "my plan"  # the user's file is kept
    report = json.loads((out / "export.json").read_text())
    assert report["replaced"] == ["DEPLOY.md"] and "adapter" in report["files"]
    assert "--enable-lora" in (out / "DEPLOY.md").read_text() and (out / "adapter" / "adapter_config.json").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert (export_run(runs["lora"], out=empty) / "export.json").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ModelError, match="is a file, not a folder"):
        export_run(runs["lora"], out=tmp_path / "afile")

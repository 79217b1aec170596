"""Early stopping on val, MLflow tracking, and merge/export of a trained adapter."""

from __future__ import annotations

import json

import pytest
import torch

from tunewise.models.load import ModelError, load_model
from tunewise.train.merge import load_trained, merge_adapter
from tunewise.train.run import train_project


def test_early_stopping_and_mlflow(tiny_project, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = train_project(tiny_project, "lora", [
        "train.max_steps=30", "train.eval_steps=1", "train.batch_size=4", "train.learning_rate=3.0",
        "train.max_val_examples=4", "train.early_stopping_patience=1", "train.tensorboard=false",
        f"train.mlflow_uri={uri}", "train.save_total_limit=1",
    ])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] < 30  # a learning rate this high makes val loss rise early

    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert len(runs) == 1
    assert runs[0].data.params["train.method"] == "lora"
    assert "eval_loss" in runs[0].data.metrics


def test_merge_exports_safetensors_that_predict_like_the_adapter(tiny_project, tmp_path):
    run = train_project(tiny_project, "lora", ["train.max_steps=2", "train.eval_steps=2", "train.batch_size=4",
                                               "train.tensorboard=false"])
    merged = merge_adapter(run / "adapter", tmp_path / "merged")
    assert (merged / "model.safetensors").exists() and (merged / "tokenizer_config.json").exists()
    assert "chat_template" in (merged / "tokenizer_config.json").read_text() or (merged / "chat_template.jinja").exists()
    adapter_model, _ = load_trained(run / "adapter")
    ids = torch.tensor([[5, 9, 14, 30]])
    with torch.no_grad():
        torch.testing.assert_close(load_model(merged)(input_ids=ids).logits, adapter_model(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)


def test_pickle_weights_are_refused_unless_allowed(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelError, match="pickle"):
        merge_adapter(folder, tmp_path / "out")
    with pytest.raises(ModelError, match="pickle"):
        load_trained(folder)

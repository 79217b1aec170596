"""The method matrix: every method trains a few steps, saves, reloads and predicts; trainable
parameters changed and frozen ones did not."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import set_seed

from tunewise.models.load import load
from tunewise.rungs.base import RunContext
from tunewise.rungs.table import rung_class
from tunewise.train.merge import load_trained
from tunewise.train.methods import output_name, prepare_model
from tunewise.train.sft import train_adapter

CASES = {
    "full": ["train.method=full"],
    "lora": ["train.method=lora"],
    "dora": ["train.method=dora"],
    "qlora-4bit": ["train.method=qlora", "train.quant_bits=4"],
    "qlora-8bit": ["train.method=qlora", "train.quant_bits=8"],
    "prefix": ["train.method=prefix"],
    "prompt-tuning": ["train.method=prompt-tuning"],
    "ia3": ["train.method=ia3"],
    "dpo-lora": ["train.method=dpo", "train.dpo.pairs_from_labels=true"],
    "dpo-full": ["train.method=dpo", "train.dpo.pairs_from_labels=true", "train.dpo.weights=full"],
    "kto-lora": ["train.method=kto"],
}


def _kto_file(project, splits) -> str:
    """Unpaired preference rows from the train split: the right label desirable, a wrong one not."""
    labels = ["business", "sports", "tech"]
    rows = []
    for i, r in enumerate(splits.train):
        answer = r.target if i % 2 else labels[(labels.index(r.target) + 1) % 3]
        rows.append({"prompt": r.input, "completion": answer, "label": answer == r.target})
    path = project / "kto.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return f"train.kto.data={path}"


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("case", CASES)
def test_method_trains_saves_reloads_predicts(case, make_config, splits, tiny_model_dir, tmp_path, tiny_project):
    extra = [_kto_file(tiny_project, splits)] if case.startswith("kto") else []
    config = make_config(*CASES[case], *extra)
    method = config.train.method
    model, tok, _ = load(str(tiny_model_dir))
    set_seed(config.train.seed)
    before = _snapshot(prepare_model(load(str(tiny_model_dir))[0], config))

    result = train_adapter(model, tok, config, splits.train, splits.val, tmp_path)

    trained = dict(result.model.named_parameters())
    assert set(trained) == set(before)
    changed = [n for n, p in trained.items() if p.requires_grad and not torch.equal(p.detach(), before[n])]
    still = [n for n, p in trained.items() if p.requires_grad and torch.equal(p.detach(), before[n])]
    frozen_moved = [n for n, p in trained.items() if not p.requires_grad and not torch.equal(p.detach(), before[n])]
    assert changed and not still, f"trainable parameters that did not change: {still[:3]}"
    assert not frozen_moved, f"frozen parameters that changed: {frozen_moved[:3]}"
    assert result.steps == 2 and result.tokens > 0

    saved = tmp_path / output_name(config)
    assert any(saved.glob("*.safetensors")) and not any(saved.glob("*.bin"))
    assert (saved / "tokenizer_config.json").exists()
    reloaded, tok2 = load_trained(saved)
    for n, p in reloaded.named_parameters():
        key = n if n in trained else None
        if key and trained[key].requires_grad and method != "qlora":
            torch.testing.assert_close(p.detach(), trained[key].detach())

    rung = rung_class(method)(config, RunContext(tmp_path, tmp_path / "predict", base=(reloaded, tok2, saved)))
    preds = rung.predict(splits.test[:4])
    assert [p.id for p in preds] == [r.id for r in splits.test[:4]]
    assert all(p.output in config.task.labels for p in preds)

"""Every rung saves what it learned into its run folder and loads again without refitting:
the reloaded rung gives the same predictions as the fitted one, and nothing is pickled."""

from __future__ import annotations

import pytest
import torch
from tiny import write_tiny_project

from tunewise import workspace as ws
from tunewise.config import dump_config, load_config
from tunewise.ladder import load_splits
from tunewise.rungs.saved import RungLoadError, load_rung
from tunewise.rungs.table import build_rung

FAST = ["train.max_steps=2", "train.eval_steps=2", "train.batch_size=4", "train.max_val_examples=4",
        "train.max_train_examples=12"]
CASES = {
    "zero-shot": [], "few-shot": [], "few-shot-similar": ["few_shot.selection=similar"], "rag": [],
    "embedding-classifier": [], "encoder-finetune": [],
    "lora": [], "dora": [], "qlora": [], "prefix": [], "prompt-tuning": [], "ia3": [], "full": [],
    "dpo": ["train.dpo.pairs_from_labels=true"],
}


@pytest.fixture
def project(tmp_path, tiny_model_dir, tiny_encoder_dir):
    extra = (f"few_shot: {{k: 3, max_example_tokens: 8}}\nencoder: {{model: {tiny_encoder_dir}, epochs: 1, "
             "batch_size: 8}\nretrieval: {chunk_words: 12, overlap_words: 2, top_k: 2}\n")
    folder = write_tiny_project(tmp_path / "proj", tiny_model_dir, extra=extra)
    docs = folder / "docs"
    docs.mkdir()
    (docs / "business.md").write_text("the market shares profit bank economy " * 5)
    (docs / "sports.txt").write_text("the match team goal cup player " * 5)
    return folder


@pytest.mark.parametrize("case", CASES)
def test_reloaded_rung_predicts_like_the_fitted_one(case, project):
    torch.set_num_threads(1)
    name = case.removesuffix("-similar")
    config = load_config(project, [*FAST, "data.documents=docs", *CASES[case]])
    splits = load_splits(config, project)
    run_dir = ws.new_dir(project, "runs", f"{name}-test")
    ws.write_text(run_dir / "config.yaml", dump_config(config))
    rung = build_rung(name, config, project, run_dir, lambda d, t: (lambda n, **f: None))
    rung.fit(splits.train, splits.val)
    rung.save(run_dir)
    test = splits.test[:5]
    fitted = rung.predict(test)

    reloaded = load_rung(run_dir)
    assert type(reloaded) is type(rung) and reloaded.name == name
    again = reloaded.predict(test)
    assert [p.output for p in again] == [p.output for p in fitted]
    for a, b in zip(again, fitted, strict=True):
        assert list(a.scores) == list(b.scores)
        assert list(a.scores.values()) == pytest.approx(list(b.scores.values()), abs=1e-4)
    files = [p.name for p in run_dir.rglob("*") if p.is_file() and "checkpoints" not in p.parts]
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".bin", ".pt", ".joblib"))], files


def test_a_run_without_saved_state_names_the_file(tmp_path):
    with pytest.raises(RungLoadError, match=r"rung.json: no such file"):
        load_rung(tmp_path)
    (tmp_path / "rung.json").write_text("{not json")
    with pytest.raises(RungLoadError, match=r"rung.json: not valid JSON"):
        load_rung(tmp_path)

"""Every rung of the table of rungs saves what it learned into its run folder and loads again without
refitting, in a fresh process, from the run folder alone: the reloaded rung gives the same predictions
as the fitted one, and nothing is pickled.

The cases are the table's entries (a new rung is covered without a change here), each given what its
entry ``needs``, plus the settings that change what a rung saves (VARIANTS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import write_tiny_project

from tunewise import workspace as ws
from tunewise.config import dump_config, load_config
from tunewise.ladder import load_splits
from tunewise.rungs.saved import RungLoadError, load_rung
from tunewise.rungs.table import build_rung
from tunewise.rungspec import DPO, FEW_SHOT, KTO, NEEDS, QLORA, RUNGS

ROOT = Path(__file__).resolve().parents[2]
FAST = ["train.max_steps=2", "train.eval_steps=2", "train.batch_size=4", "train.max_val_examples=4",
        "train.max_train_examples=12"]
# What each need of a table entry takes in the fixture's project (the encoder is set there for all).
GIVEN = {"labelled-rows": [], "documents": ["data.documents=docs"], "encoder": [],
         "preference": ["train.dpo.pairs_from_labels=true"], "unpaired-preference": ["train.kto.data=kto.jsonl"]}
# Settings that change what a rung saves: few-shot's embedded pool, preference methods on full weights.
VARIANTS = {"few-shot-similar": (FEW_SHOT, ["few_shot.selection=similar"]),
            "dpo-full-weights": (DPO, ["train.dpo.weights=full"]),
            "kto-full-weights": (KTO, ["train.kto.weights=full"])}
CASES = {**{name: (name, []) for name in RUNGS}, **VARIANTS}
RELOAD = """
import json, sys
import torch
torch.set_num_threads(1)
from tunewise.core import Record
from tunewise.rungs.saved import load_rung
run_dir, rows, out = sys.argv[1:]
rung = load_rung(run_dir)
preds = rung.predict([Record.from_json(r) for r in json.load(open(rows))])
json.dump({"class": type(rung).__name__, "name": rung.name, "predictions": [p.to_json() for p in preds]},
          open(out, "w"))
"""


def test_the_cases_cover_every_need():
    assert set(GIVEN) == set(NEEDS)


@pytest.fixture
def project(tmp_path, tiny_model_dir, tiny_encoder_dir):
    extra = (f"few_shot: {{k: 3, max_example_tokens: 8}}\nencoder: {{model: {tiny_encoder_dir}, epochs: 1, "
             "batch_size: 8}\nretrieval: {chunk_words: 12, overlap_words: 2, top_k: 2}\n")
    folder = write_tiny_project(tmp_path / "proj", tiny_model_dir, extra=extra)
    docs = folder / "docs"
    docs.mkdir()
    (docs / "business.md").write_text("the market shares profit bank economy " * 5)
    (docs / "sports.txt").write_text("the match team goal cup player " * 5)
    rows = [json.loads(line) for line in (folder / "data" / "rows.jsonl").read_text().splitlines()]
    (folder / "kto.jsonl").write_text("".join(
        json.dumps({"prompt": r["text"], "completion": r["label"] if i % 2 else "tech", "label": bool(i % 2)}) + "\n"
        for i, r in enumerate(rows[::3])))
    return folder


def reload_in_a_fresh_process(run_dir: Path, records: list, tmp_path: Path) -> dict:
    """load_rung(run_dir) and predict ``records`` in a new Python process: nothing of this one is reused."""
    rows, out = tmp_path / "rows.json", tmp_path / "reloaded.json"
    rows.write_text(json.dumps([r.to_json() for r in records]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", RELOAD, str(run_dir), str(rows), str(out)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", CASES)
def test_reloaded_rung_predicts_like_the_fitted_one(case, project, tmp_path):
    torch.set_num_threads(1)
    name, settings = CASES[case]
    spec = RUNGS[name]
    if name == QLORA:
        from tunewise.models.inspect import qlora_support

        if not qlora_support()[0]:
            pytest.skip(qlora_support()[1])
    given = [s for need in NEEDS if need in spec.needs for s in GIVEN[need]]
    config = load_config(project, [*FAST, *given, *settings])
    splits = load_splits(config, project)
    run_dir = ws.new_dir(project, "runs", f"{case}-test")
    ws.write_text(run_dir / "config.yaml", dump_config(config))
    rung = build_rung(name, config, project, run_dir, lambda d, t: (lambda n, **f: None))
    rung.fit(splits.train, splits.val)
    rung.save(run_dir)
    test = splits.test[:5]
    fitted = rung.predict(test)

    reloaded = reload_in_a_fresh_process(run_dir, test, tmp_path)
    assert reloaded["class"] == type(rung).__name__ and reloaded["name"] == name
    again = reloaded["predictions"]
    assert [p["output"] for p in again] == [p.output for p in fitted]
    for a, b in zip(again, fitted, strict=True):
        assert list(a["scores"]) == list(b.scores)
        assert list(a["scores"].values()) == pytest.approx(list(b.scores.values()), abs=1e-4)
    files = [p.name for p in run_dir.rglob("*") if p.is_file() and "checkpoints" not in p.parts]
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".bin", ".pt", ".joblib"))], files


def test_a_run_without_saved_state_names_the_file(tmp_path):
    with pytest.raises(RungLoadError, match=r"rung.json: no such file"):
        load_rung(tmp_path)
    (tmp_path / "rung.json").write_text("{not json")
    with pytest.raises(RungLoadError, match=r"rung.json: not valid JSON"):
        load_rung(tmp_path)


def test_an_unknown_rung_names_the_known_ones(tmp_path):
    (tmp_path / "rung.json").write_text(json.dumps({"rung": "no-such-rung", "format": 1}))
    (tmp_path / "config.yaml").write_text("task: {type: generation}\ndata: {files: [x.jsonl]}\nmodel: {base: x}\n")
    with pytest.raises(RungLoadError, match=r"unknown rung 'no-such-rung' \(known: zero-shot, few-shot"):
        load_rung(tmp_path)

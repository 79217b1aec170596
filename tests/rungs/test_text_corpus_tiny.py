"""task.type text on the tiny model: continued pre-training scored by perplexity (docs/config.md, README)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from tunewise.config import ConfigError, load_config
from tunewise.evaluate.perplexity import evaluate_text, window_nll, windows
from tunewise.ladder import run_ladder
from tunewise.models.chat import IGNORE
from tunewise.train.sft import tokenize_corpus

WORDS = ["market", "shares", "profit", "bank", "economy", "the", "of", "to", "in", "and", "is", "on", "for", "with"]


def write_text_project(folder, model_dir, rungs="[zero-shot, lora]", docs=40, extra=""):
    rng = random.Random(0)
    rows = [{"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))} for _ in range(docs)]
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tunewise.yaml").write_text(f"""name: corpus
task: {{type: text}}
data: {{files: [data/corpus.jsonl], split: {{train: 0.6, val: 0.2, test: 0.2}}, seed: 1}}
model: {{base: {model_dir}}}
rungs: {rungs}
train: {{max_steps: 6, batch_size: 4, learning_rate: 0.01, max_length: 16, eval_steps: 3, tensorboard: false,
         lora: {{r: 4, alpha: 8, dropout: 0.0}}}}
eval: {{batch_size: 8, bootstrap: 200, timing_examples: 0}}
{extra}""")
    return folder


def test_windows_predict_every_token_but_the_first_exactly_once():
    ids = list(range(40))
    for size in (2, 5, 16, 40, 64):
        cut = windows(ids, size)
        assert all(len(w) <= size for w in cut)
        predicted = [t for w in cut for t in w[1:]]
        assert predicted == ids[1:]


def test_padding_neither_scored_nor_attended(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    short, long_ = [5, 9, 13, 7], [5, 9, 13, 7, 22, 30, 11, 4, 8, 17]
    alone = window_nll(model, [short], pad_id=0, batch_size=1)[0]
    beside = window_nll(model, [long_, short], pad_id=0, batch_size=2)
    assert beside[1] == pytest.approx(alone, rel=1e-5)
    assert beside[0] == pytest.approx(window_nll(model, [long_], pad_id=0, batch_size=1)[0], rel=1e-5)


def test_perplexity_is_the_token_weighted_mean_with_a_bootstrap_interval():
    nll, tokens = np.array([10.0, 40.0, 6.0]), np.array([5, 10, 3])
    metrics, items = evaluate_text(nll, tokens, 500, 0)
    assert metrics["perplexity"] == pytest.approx(math.exp(56 / 18))
    lo, hi = metrics["perplexity_ci"]
    assert lo <= metrics["perplexity"] <= hi and lo < hi
    assert items["perplexity"].mean() == pytest.approx(56 / 18)  # the items' mean is log perplexity


def test_training_rows_take_the_loss_on_the_whole_text_and_say_when_they_cut(tiny_model_dir):
    from transformers import AutoTokenizer

    from tunewise.core import Record

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    recs = [Record("a", "market shares profit bank economy " * 6, None), Record("b", "the bank", None)]
    notes: list[str] = []
    rows = tokenize_corpus(recs, tok, 16, notes)
    assert all(r["labels"][0] == IGNORE and r["labels"][1:] == r["input_ids"][1:] for r in rows)
    assert len(notes) == 1 and "1 of 2 documents" in notes[0] and "train.max_length=16" in notes[0]
    whole = tok(recs[1].input, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert rows[-1]["input_ids"] == whole  # a short document is one window, closed by the EOS


def test_rungs_that_make_no_sense_for_text_are_refused_when_the_config_loads(tmp_path, tiny_model_dir):
    project = write_text_project(tmp_path, tiny_model_dir, rungs="[zero-shot, few-shot, rag, embedding-classifier, dpo]")
    with pytest.raises(ConfigError) as err:
        load_config(project)
    message = str(err.value)
    assert "few-shot, rag, embedding-classifier, dpo do not run on task.type text" in message
    assert "rungs that do: zero-shot, lora, full" in message and "\n" not in message
    with pytest.raises(ConfigError, match="train.method: kto does not train on task.type text"):
        load_config(write_text_project(tmp_path, tiny_model_dir), ["train.method=kto"])


def test_text_ladder_scores_perplexity_on_the_test_split(tmp_path, tiny_model_dir):
    project = write_text_project(tmp_path, tiny_model_dir)
    report_dir = run_ladder(load_config(project), project)
    ladder = json.loads((report_dir / "ladder.json").read_text())
    assert ladder["primary"] == "perplexity" and ladder["task"] == "text"
    test_ids = {json.loads(line)["id"] for line in (report_dir / "test.jsonl").read_text().splitlines()}
    for r in ladder["rungs"]:
        m = r["metrics"]
        assert math.isfinite(m["perplexity"]) and m["perplexity_ci"][0] <= m["perplexity"] <= m["perplexity_ci"][1]
        preds = [json.loads(line) for line in (project / r["run_dir"] / "predictions.jsonl").read_text().splitlines()]
        assert {p["id"] for p in preds} == test_ids and all(p["scored_tokens"] > 0 for p in preds)
        assert sum(p["scored_tokens"] for p in preds) == m["tokens"]
    # Windows of 16 tokens: the longer documents were cut, and the run says so.
    assert any("were cut into windows" in w for r in ladder["rungs"] for w in r["warnings"])
    rec = ladder["recommendation"]
    assert "domain adaptation" in rec["reason"] and rec["domain_adaptation"]
    md = (report_dir / "report.md").read_text()
    assert "perplexity (95% CI)" in md and "domain adaptation" in md
    card = next((project / ".tunewise" / "datasets").glob("*/DATACARD.md")).read_text()
    assert "Document length per split" in card and "missing target" not in card


def test_curve_and_pool_refuse_a_text_task(tmp_path, tiny_model_dir):
    from tunewise.curve import export_pool_review, run_curve

    project = write_text_project(tmp_path, tiny_model_dir)
    config = load_config(project)
    with pytest.raises(ConfigError, match="task.type text is not supported"):
        run_curve(config, project)
    with pytest.raises(ConfigError, match="nothing to label"):
        export_pool_review(config, project, project / "data" / "corpus.jsonl", 5, "random")



def test_audit_of_a_text_corpus_counts_every_text_as_usable(tmp_path, tiny_model_dir):
    from tunewise.data.audit import audit_project

    project = write_text_project(tmp_path, tiny_model_dir)
    audit, _, _ = audit_project(project)
    assert audit["task"] == "text" and audit["usable_rows"] == audit["rows"] == 40
    assert audit["checks"]["missing_targets"]["count"] == 0 and "has no targets" in audit["checks"]["missing_targets"]["skipped"]
    assert "eos_coverage" not in audit["checks"] and not audit["hints"]


def test_a_served_text_rung_continues_the_prompt_as_raw_text(tiny_model_dir, tmp_path):
    """Serving a text rung (the generation engine calls prompt_ids): the prompt is the start of a document,
    tokenized as the corpus was for training and perplexity, not wrapped in a chat template."""
    from tunewise.core import Record
    from tunewise.evaluate.perplexity import document_ids
    from tunewise.models.chat import PromptBuilder
    from tunewise.models.load import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    text = "the market shares profit"
    builder = PromptBuilder(load_config(write_text_project(tmp_path, tiny_model_dir)).task, tok)
    assert builder.prompt_ids(Record(id="1", input=text, target=None)) == document_ids(tok, text)[:-1]

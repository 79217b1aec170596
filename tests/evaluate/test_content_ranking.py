"""Done-when of content scoring: on the company-glossary example, a rung that invents in the right
shape and a rung that copies the glossary are ranked by content, with p < 0.05, and the
recommendation follows, even when the ladder is told to rank on ROUGE-L."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tunewise.config import ProjectConfig
from tunewise.core import Prediction, Record
from tunewise.evaluate.score import score_predictions
from tunewise.report.decide import compare, recommend
from tunewise.report.build import render_markdown

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "company-glossary"


def _glossary(n: int = 40) -> list[Record]:
    rows = [json.loads(x) for x in (EXAMPLE / "data" / "questions.jsonl").read_text().splitlines()][:n]
    return [Record(r["id"], r["question"], r["answer"], {"entry": r["entry"]}) for r in rows]


def _config(**eval_) -> ProjectConfig:
    return ProjectConfig.model_validate({
        "task": {"type": "generation", "input_field": "question", "target_field": "answer",
                 "instruction": "Answer the question about our company's internal terms in one sentence."},
        "data": {"files": ["data/questions.jsonl"], "documents": "documents"}, "model": {"base": "m"},
        "eval": {"bootstrap": 500, **eval_},
    })


def _neighbour(records: list[Record], i: int) -> str:
    return records[(i + 1) % len(records)].target


def _copies(records: list[Record]) -> list[Prediction]:
    """What a small model with the passages does: garbles the head word, copies the content in its
    own order and runs on into the next passage."""
    out = []
    for i, r in enumerate(records):
        term = r.input.split()[-1].rstrip("?")
        what, rest = r.target.split(" is ", 1)[1].rstrip(".").split(" that the ", 1)
        team, rest = rest.split(" team ", 1)
        out.append(Prediction(r.id, f"{term[0].upper()}{term}: {team} {rest}; {what} [1]. [2] {_neighbour(records, i)}"))
    return out


def _invents(records: list[Record]) -> list[Prediction]:
    """What a rung fine-tuned on other terms does: the trained shape, another term's definition."""
    rng = random.Random(0)
    others = [json.loads(x)["answer"] for x in (EXAMPLE / "data" / "questions.jsonl").read_text().splitlines()[60:]]
    out = []
    for r in records:
        term = r.input.split()[-1].rstrip("?")
        out.append(Prediction(r.id, f"A {term} is " + rng.choice(others).split(" is ", 1)[1]))
    return out


def _rung(name: str, scored, cost: float) -> dict:
    return {"name": name, "primary": scored.primary, "metrics": scored.metrics, "item_scores": scored.item_scores.tolist(),
            "binary_items": scored.binary, "metric_items": {k: v.tolist() for k, v in scored.items.items()},
            "cost": {"usd_first_month": cost, "train_usd": 0, "usd_per_1k_requests": 0}, "train_seconds": 0,
            "ms_per_example": 1.0, "prompt_tokens_per_request": 10}


def _ladder(config: ProjectConfig) -> tuple[list[dict], dict]:
    records = _glossary()
    # The retrieved passages of each question: its glossary entry and the next one.
    evidence = [[r.meta["entry"] + " " + r.target, _neighbour(records, i)] for i, r in enumerate(records)]
    rungs = [_rung("rag", score_predictions(config, records, _copies(records), evidence=evidence), 2.0),
             _rung("lora", score_predictions(config, records, _invents(records), evidence=evidence), 1.0)]
    compare(rungs)
    return rungs, recommend(rungs)


def test_default_metric_ranks_copying_above_invention_and_recommendation_follows():
    rungs, rec = _ladder(_config())
    rag, lora = rungs
    assert rag["primary"] == "content_f1"
    assert rag["metrics"]["content_f1"] > 0.5 and lora["metrics"]["content_f1"] < 0.3
    gap = rag["paired_vs_best_of_rest"]
    assert gap["vs"] == "lora" and gap["p_value"] < 0.05 and gap["diff_ci"][0] > 0
    assert rag["metrics"]["groundedness"] > lora["metrics"]["groundedness"] + 0.3
    # lora is cheaper, but significantly worse on content: not recommended.
    assert rec["rung"] == "rag" and "overruled" not in rec
    assert any(n.startswith("rouge_l alone would rank lora first") for n in rec["notes"])


def test_surface_primary_is_overruled_by_content_and_the_report_says_so():
    from tunewise.evaluate.cost import resolve_prices

    rungs, rec = _ladder(_config(primary="rouge_l"))
    rag, lora = rungs
    # The invented answers share the template, so ROUGE-L prefers them ...
    assert lora["metrics"]["rouge_l"] > rag["metrics"]["rouge_l"]
    # ... but the recommendation does not follow a surface metric against content.
    assert rec["rung"] == "rag" and rec["overruled"]["rung"] == "lora"
    assert any("rouge_l ranks lora above rag" in n for n in rec["notes"])
    ladder = {"project": "g", "task": "generation", "primary": "rouge_l", "test_hash": "ab" * 32, "n_test": 40,
              "n_train": 1, "n_val": 1, "n_ood": 0, "n_rejected": 0, "rungs": rungs, "recommendation": rec,
              "break_even": {"comparisons": [], "prices": resolve_prices(None).model_dump(), "reference": None}}
    md = render_markdown(ladder)
    assert "Overruled: **lora**" in md and "set by `eval.primary`" in md


def test_template_and_question_words_count_for_nothing(tiny_encoder_dir):
    config = _config()
    minilm = tiny_encoder_dir
    rec = [Record("1", "What is a stardle?", "A stardle is a travel voucher kept in Driftbox.")]
    echo = score_predictions(config, rec, [Prediction("1", "A stardle is a stardle.")], encoder=minilm)
    right = score_predictions(config, rec, [Prediction("1", "Travel voucher, kept in Driftbox.")], encoder=minilm)
    assert echo.metrics["content_f1"] == 0.0 and right.metrics["content_f1"] == pytest.approx(1.0)
    assert 0 <= echo.metrics["semantic_similarity"] <= 1
    same = score_predictions(config, rec, [Prediction("1", rec[0].target)], encoder=minilm)
    assert same.metrics["semantic_similarity"] == pytest.approx(1.0, abs=1e-5)


def test_bad_primary_names_the_key_and_the_choices():
    from tunewise.config import ConfigError
    from tunewise.evaluate.score import check_primary

    with pytest.raises(ConfigError, match=r"tunewise.yaml: bad value for 'eval.primary': 'bleu' .*content_f1"):
        check_primary(_config(primary="bleu"), "tunewise.yaml")
    no_docs = ProjectConfig.model_validate({**_config().model_dump(), "data": {"files": ["x.jsonl"]},
                                            "eval": {"primary": "groundedness"}})
    with pytest.raises(ConfigError, match=r"'groundedness' needs 'data.documents'"):
        check_primary(no_docs, "tunewise.yaml")
    check_primary(_config(primary="rouge_l"), "tunewise.yaml")


def test_init_materialises_the_glossary_example(tmp_path):
    from tunewise.config import load_config
    from tunewise.examples import init_example

    project = init_example(tmp_path / "g", "company-glossary")
    config = load_config(project)
    assert config.data.documents == "documents" and len(list((project / "documents").glob("*.md"))) == 8
    assert len((project / "data" / "questions.jsonl").read_text().splitlines()) == 160

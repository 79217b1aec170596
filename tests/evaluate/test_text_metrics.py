"""Extraction and generation metrics on hand-checked examples."""

from __future__ import annotations

import pytest

from tunewise.config import ProjectConfig
from tunewise.core import Prediction, Record
from tunewise.evaluate.text_metrics import evaluate_extraction, evaluate_generation, parse_json_object


def _config(task_type: str, **eval_) -> ProjectConfig:
    return ProjectConfig.model_validate({
        "task": {"type": task_type}, "data": {"files": ["x.jsonl"]}, "model": {"base": "m"},
        "eval": {"bootstrap": 200, **eval_},
    })


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "city": {"type": "string"}},
          "required": ["name"]}


def test_extraction_validity_fields_and_hallucination():
    recs = [
        Record("1", "Anna Berg moved to Oslo last year.", '{"name": "Anna Berg", "city": "Oslo"}'),
        Record("2", "Tom lives in Rome.", '{"name": "Tom", "city": "Rome"}'),
        Record("3", "Li is from Xian.", '{"name": "Li", "city": "Xian"}'),
    ]
    preds = [
        Prediction("1", 'Sure! {"name": "Anna Berg", "city": "Oslo"}'),  # prose around the JSON is fine
        Prediction("2", '{"name": "Tom", "city": "Paris"}'),  # Paris is not in the text: hallucinated
        Prediction("3", "I cannot"),  # not JSON at all
    ]
    m, items = evaluate_extraction(_config("extraction"), recs, preds, SCHEMA)
    assert m["json_valid_rate"] == pytest.approx(2 / 3)
    assert items["field_f1"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert m["field_f1"] == pytest.approx(0.5)
    assert m["hallucination_rate"] == pytest.approx(0.25)  # (0 + 1/2) / 2 items with values
    lo, hi = m["field_f1_ci"]
    assert lo <= m["field_f1"] <= hi


def test_schema_violation_is_invalid_json():
    recs = [Record("1", "Anna", '{"name": "Anna"}')]
    m, _ = evaluate_extraction(_config("extraction"), recs, [Prediction("1", '{"city": "Oslo"}')], SCHEMA)
    assert m["json_valid_rate"] == 0.0


def test_generation_metrics_and_format():
    config = _config("generation", format={"max_words": 6, "required_phrases": ["days"], "regex": r"\.$"})
    recs = [Record("1", "q", "Shipping to Spain takes 3 days."), Record("2", "q", "Returns are free.")]
    preds = [Prediction("1", "Shipping to Spain takes 3 days."), Prediction("2", "We do not know, sorry")]
    m, items = evaluate_generation(config, recs, preds, evidence=[["Spain: 3 days shipping"], ["returns free"]])
    assert items["rouge_l"][0] == pytest.approx(1.0) and items["rouge_l"][1] < 0.5
    assert m["exact_match"] == 0.5 and m["chrf"] > 0.5
    assert m["format_compliance"] == 0.5
    # New content of the first answer: shipping, spain, takes, 3, days; "takes" is not in the passage.
    assert items["groundedness"][0] == pytest.approx(4 / 5) and items["groundedness"][1] == 0.0


def test_parse_json_object_skips_broken_braces():
    assert parse_json_object('{oops} then {"a": 1}') == {"a": 1}
    assert parse_json_object("[1, 2]") is None

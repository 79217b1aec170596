"""The fine-tune break-even from a ladder.json, by hand-checkable arithmetic."""

from __future__ import annotations

import json

import pytest

from tunewise.config import PlanConfig
from tunewise.plan.breakeven import Prices, break_even, prices_from_plan, project_break_even, render_break_even_md
from tunewise.plan.estimate import PlanError


def rung(name, train_s, ms, tokens, acc=0.9):
    return {"name": name, "train_seconds": train_s, "ms_per_example": ms, "prompt_tokens_per_request": tokens,
            "metrics": {"accuracy": acc}}


LADDER = {"project": "bbc", "rungs": [
    rung("zero-shot", 0, 200.0, 300, 0.6),
    rung("few-shot", 0, 900.0, 2000, 0.8),
    rung("lora", 3600.0, 150.0, 250, 0.95),
]}
PRICES = Prices(gpu_hourly_usd=3.6, train_gpu_hourly_usd=3.6, usd_per_1k_prompt_tokens=0.001, amortise_months=1)


def test_cost_per_request_and_volume():
    result = break_even(LADDER, PRICES)
    by_pair = {(c["finetuned"], c["prompting"]): c for c in result["comparisons"]}
    # few-shot: 2000 tokens × $0.001/1k = $0.002 + 0.9 s × $3.6/h = $0.0009 → $0.0029 per request.
    # lora: 250 tokens → $0.00025 + 0.15 s → $0.00015 → $0.0004. Saving $0.0025 per request.
    # One-off: 1 h × $3.6 = $3.6 → 3.6 / 0.0025 = 1,440 requests per month.
    few = by_pair[("lora", "few-shot")]
    assert few["one_off_usd"] == pytest.approx(3.6)
    assert few["saving_per_1k_requests_usd"] == pytest.approx(2.5)
    assert few["break_even_requests_per_month"] == 1440
    assert {r["name"]: r["usd_per_1k_requests"] for r in result["rungs"]}["lora"] == pytest.approx(0.4)


def test_never_when_finetuned_is_not_cheaper():
    ladder = {"rungs": [rung("zero-shot", 0, 10.0, 50), rung("lora", 60.0, 200.0, 60)]}
    (pair,) = break_even(ladder, PRICES)["comparisons"]
    assert pair["break_even_requests_per_month"] is None
    assert "never" in "\n".join(render_break_even_md(break_even(ladder, PRICES)))


def test_amortising_over_more_months_lowers_the_monthly_volume():
    twelve = Prices(**{**PRICES.__dict__, "amortise_months": 12})
    one = break_even(LADDER, PRICES)["comparisons"][0]["break_even_requests_per_month"]
    many = break_even(LADDER, twelve)["comparisons"][0]["break_even_requests_per_month"]
    assert many == pytest.approx(one / 12, abs=1)


def test_markdown_section_lists_every_pair():
    lines = render_break_even_md(break_even(LADDER, PRICES))
    text = "\n".join(lines)
    assert lines[0].startswith("## Break-even")
    assert "| lora | few-shot |" in text and "| lora | zero-shot |" in text and "1,440" in text


def test_no_pairs_says_so():
    lines = render_break_even_md(break_even({"rungs": [rung("zero-shot", 0, 10, 50)]}))
    assert any("no break-even" in line for line in lines)


def test_prices_from_plan_use_the_catalogue_unless_overridden():
    assert prices_from_plan(PlanConfig(gpu="H100-80GB")).gpu_hourly_usd == pytest.approx(2.49)
    assert prices_from_plan(PlanConfig(gpu="T4", gpu_hourly_usd=0.2)).gpu_hourly_usd == 0.2
    with pytest.raises(PlanError, match="'B300'"):
        prices_from_plan(PlanConfig(gpu="B300"))


def test_project_break_even_reads_the_latest_ladder(tmp_path):
    report = tmp_path / ".tunewise" / "reports" / "20260101-000000-000001"
    report.mkdir(parents=True)
    (report / "ladder.json").write_text(json.dumps(LADDER))
    result = project_break_even(tmp_path)  # no tunewise.yaml: default prices
    assert result["project"] == "bbc" and len(result["comparisons"]) == 2


def test_project_without_a_ladder_is_one_clear_error(tmp_path):
    with pytest.raises(PlanError, match="no saved ladder"):
        project_break_even(tmp_path)

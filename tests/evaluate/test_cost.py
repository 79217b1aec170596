"""The one cost model: per-rung cost and the break-even by hand-checkable arithmetic, the same figures
in the ladder report and in `tunewise estimate --break-even`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tunewise import locate
from tunewise.cli import app
from tunewise.config import CostConfig
from tunewise.evaluate.cost import (
    break_even,
    break_even_requests,
    project_break_even,
    render_break_even_md,
    resolve_prices,
    rung_cost,
)
from tunewise.plan.estimate import PlanError


def rung(name, train_s, ms, tokens, acc=0.9):
    return {"name": name, "primary": "accuracy", "train_seconds": train_s, "ms_per_example": ms,
            "prompt_tokens_per_request": tokens, "metrics": {"accuracy": acc}}


# $3.6/h is $0.001 a second; $1 per 1M tokens is $0.001 per 1,000.
PRICES = {"usd_per_hour": 3.6, "usd_per_1m_prompt_tokens": 1.0, "requests_per_month": 1000}
LADDER = {"project": "bbc", "prices": PRICES, "rungs": [
    rung("zero-shot", 0, 200.0, 300, 0.6),
    rung("few-shot", 0, 900.0, 2000, 0.8),
    rung("lora", 3600.0, 150.0, 250, 0.95),
]}


def test_rung_cost_and_break_even_requests_by_hand():
    prices = resolve_prices(CostConfig(usd_per_hour=3.6, usd_per_1m_prompt_tokens=1.0, requests_per_month=1000))
    prompt = rung_cost(0, 100, 1000, prices)  # 0.1 s at $0.001/s + 1000 tokens at $1/M = $0.0011 a request
    assert prompt["usd_per_1k_requests"] == pytest.approx(1.1)
    assert prompt["usd_first_month"] == pytest.approx(1.1)  # 1,000 requests, no training
    tuned = rung_cost(1000, 100, 100, prices)  # $1 of training, $0.0002 a request
    assert tuned["train_usd"] == pytest.approx(1.0)
    assert break_even_requests(tuned, prompt) == 1112  # ceil(1 / 0.0009)
    assert break_even_requests(prompt, tuned) == 0
    assert break_even_requests(rung_cost(1000, 500, 1000, prices), prompt) is None


def test_break_even_pairs_by_hand():
    result = break_even(LADDER)
    by_pair = {(c["trained"], c["vs"]): c for c in result["comparisons"]}
    # few-shot: 2000 tokens × $0.001/1k = $0.002 + 0.9 s × $0.001/s = $0.0009 → $0.0029 per request.
    # lora: 250 tokens → $0.00025 + 0.15 s → $0.00015 → $0.0004. Saving $0.0025 per request.
    # One-off: 1 h × $3.6 = $3.6 → 3.6 / 0.0025 = 1,440 requests = 1.44 months at 1,000 a month.
    few = by_pair[("lora", "few-shot")]
    assert few["one_off_usd"] == pytest.approx(3.6)
    assert few["saving_per_1k_requests_usd"] == pytest.approx(2.5)
    assert few["break_even_requests"] == 1440 and few["break_even_months"] == pytest.approx(1.44)
    assert result["reference"] == "few-shot"  # the best rung that needs no training
    assert {r["name"]: r["usd_per_1k_requests"] for r in result["rungs"]}["lora"] == pytest.approx(0.4)


def test_a_separate_training_machine_prices_only_the_training():
    result = break_even(LADDER, {**PRICES, "train_usd_per_hour": 7.2})
    few = next(c for c in result["comparisons"] if c["vs"] == "few-shot")
    assert few["one_off_usd"] == pytest.approx(7.2) and few["break_even_requests"] == 2880
    assert few["saving_per_1k_requests_usd"] == pytest.approx(2.5)


def test_never_when_trained_is_not_cheaper():
    ladder = {"prices": PRICES, "rungs": [rung("zero-shot", 0, 10.0, 50), rung("lora", 60.0, 200.0, 60)]}
    (pair,) = break_even(ladder)["comparisons"]
    assert pair["break_even_requests"] is None and pair["break_even_months"] is None
    assert "never" in "\n".join(render_break_even_md(break_even(ladder)))


def test_markdown_section_lists_every_pair_and_says_it_plainly():
    lines = render_break_even_md(break_even(LADDER))
    text = "\n".join(lines)
    assert lines[0].startswith("## Break-even")
    assert "| lora | few-shot |" in text and "| lora | zero-shot |" in text and "1,440" in text
    assert "lora repays its $3.60 of training against few-shot after 1,440 requests (1.4 months at 1,000" in text


def test_no_pairs_says_so():
    lines = render_break_even_md(break_even({"rungs": [rung("zero-shot", 0, 10, 50)]}))
    assert any("no break-even" in line for line in lines)


def test_gpu_prices_come_from_the_catalogue_unless_set():
    assert resolve_prices(CostConfig(gpu="H100-80GB")).usd_per_hour == pytest.approx(2.49)
    both = resolve_prices(CostConfig.model_validate({"gpu": "T4", "usd_per_hour": 0.2}))
    assert both.usd_per_hour == 0.2 and both.train_usd_per_hour == 0.2
    assert resolve_prices(resolve_prices(CostConfig(gpu="T4"))) == resolve_prices(CostConfig(gpu="T4"))
    with pytest.raises(PlanError, match="'B300'"):
        resolve_prices(CostConfig(gpu="B300"))


def saved(tmp_path, ladder):
    report = tmp_path / ".tunewise" / "reports" / "20260101-000000-000001"
    report.mkdir(parents=True)
    (report / "ladder.json").write_text(json.dumps(ladder))


def test_project_break_even_reads_the_latest_ladder_at_its_own_prices(tmp_path):
    saved(tmp_path, LADDER)
    ladder = locate.ladder(tmp_path).data
    result = project_break_even(tmp_path, ladder)  # no tunewise.yaml: the ladder's prices
    assert result["project"] == "bbc" and result == {"project": "bbc", **break_even(LADDER)}
    on_t4 = project_break_even(tmp_path, ladder, gpu="T4")
    assert on_t4["prices"]["gpu"] == "T4" and on_t4["prices"]["usd_per_hour"] == pytest.approx(0.35)


def test_project_without_a_ladder_is_one_clear_error(tmp_path):
    from typer.testing import CliRunner

    from tunewise.cli import app
    from tunewise.config import ConfigError

    with pytest.raises(ConfigError, match="no saved ladder"):
        locate.ladder(tmp_path)
    # The same missing prerequisite, the same exit code, whichever command meets it.
    runner = CliRunner()
    codes = {runner.invoke(app, args).exit_code for args in (["estimate", "--break-even", str(tmp_path)],
                                                             ["report", str(tmp_path)])}
    assert codes == {2}


def test_the_cli_prints_the_break_even(tmp_path):
    saved(tmp_path, LADDER)
    runner = CliRunner()
    text = runner.invoke(app, ["estimate", "--break-even", str(tmp_path)])
    assert text.exit_code == 0 and text.stdout.strip() == "\n".join(render_break_even_md(break_even(LADDER))).strip()
    # Which ladder it priced, on stderr: stdout stays the table (or the JSON).
    assert "using ladder .tunewise/reports/20260101-000000-000001/ (the newest finished ladder" in text.stderr
    data = json.loads(runner.invoke(app, ["estimate", "--break-even", str(tmp_path), "--json"]).stdout)
    assert data["comparisons"][0]["break_even_requests"] > 0
    missing = runner.invoke(app, ["estimate", "--break-even", str(tmp_path / "none")])
    assert missing.exit_code != 0 and "no saved ladder" in missing.output

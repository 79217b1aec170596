"""A ladder keeps what finished: identical rungs are reused, a failing rung does not lose the others,
and Ctrl-C writes the report of the rungs that finished."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tunewise import ladder as ladder_mod
from tunewise.cli import app
from tunewise.config import load_config

runner = CliRunner()
CHEAP = ["zero-shot", "few-shot"]


def read(report_dir) -> dict:
    return json.loads((report_dir / "ladder.json").read_text())


def test_a_second_run_reuses_finished_rungs_and_fresh_recomputes(tiny_project):
    config = load_config(tiny_project, ["few_shot.k=2"])
    first = read(ladder_mod.run_ladder(config, tiny_project, CHEAP))
    second_dir = ladder_mod.run_ladder(config, tiny_project, CHEAP)
    second = read(second_dir)
    assert "`tunewise ladder --fresh` recomputes them" in (second_dir / "report.md").read_text()
    assert first["reused"] == [] and second["reused"] == CHEAP
    for a, b in zip(first["rungs"], second["rungs"], strict=True):
        assert b["reused_from"] == a["run_dir"] and b["metrics"] == a["metrics"]
    assert second["recommendation"]["rung"] == first["recommendation"]["rung"]
    # A changed setting of one rung recomputes it (the whole config is in the key).
    changed = read(ladder_mod.run_ladder(load_config(tiny_project, ["few_shot.k=1"]), tiny_project, CHEAP))
    assert changed["reused"] == []
    fresh = read(ladder_mod.run_ladder(config, tiny_project, CHEAP, fresh=True))
    assert fresh["reused"] == []


def test_a_failing_rung_is_recorded_and_the_others_are_reported(tiny_project, monkeypatch):
    real = ladder_mod.run_rung

    def flaky(name, *args, **kwargs):
        if name == "few-shot":
            raise RuntimeError("out of memory while scoring\nsecond line")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ladder_mod, "run_rung", flaky)
    result = runner.invoke(app, ["ladder", str(tiny_project), "--rungs", "zero-shot,few-shot", "-q"])
    assert result.exit_code == 1
    assert "rung few-shot failed: RuntimeError: out of memory while scoring" in result.output
    report = sorted((tiny_project / ".tunewise" / "reports").iterdir())[-1]
    saved = read(report)
    assert saved["status"] == "partial" and [r["name"] for r in saved["rungs"]] == ["zero-shot"]
    assert saved["failed"] == [{"name": "few-shot", "error": "RuntimeError: out of memory while scoring"}]
    assert "**Failed**: rung `few-shot`" in (report / "report.md").read_text()
    assert "Failed: rung few-shot" in (report / "report.html").read_text()


def test_ctrl_c_writes_the_partial_report_and_exits_130(tiny_project, monkeypatch):
    real = ladder_mod.run_rung

    def interrupt_second(name, *args, **kwargs):
        if name == "few-shot":
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ladder_mod, "run_rung", interrupt_second)
    result = runner.invoke(app, ["ladder", str(tiny_project), "--rungs", "zero-shot,few-shot", "-q"])
    assert result.exit_code == 130
    saved = read(sorted((tiny_project / ".tunewise" / "reports").iterdir())[-1])
    assert saved["status"] == "interrupted" and [r["name"] for r in saved["rungs"]] == ["zero-shot"]
    # The finished rung is reused by the next run.
    monkeypatch.setattr(ladder_mod, "run_rung", real)
    again = read(ladder_mod.run_ladder(load_config(tiny_project), tiny_project, ["zero-shot", "few-shot"]))
    assert again["reused"] == ["zero-shot"] and again["status"] == "complete"


def test_every_rung_failing_is_one_error(tiny_project, monkeypatch):
    monkeypatch.setattr(ladder_mod, "run_rung", lambda name, *a, **k: (_ for _ in ()).throw(ValueError("bad")))
    with pytest.raises(ladder_mod.RungsFailed, match="every rung failed: zero-shot: ValueError: bad"):
        ladder_mod.run_ladder(load_config(tiny_project), tiny_project, ["zero-shot"])


def test_changing_only_the_prices_reuses_every_rung_and_the_report_reprices(tiny_project):
    """Prices are computed from the recorded work: a change under `cost:` re-runs nothing, and
    `tunewise report --set cost.gpu=…` writes a new report priced on that GPU."""
    cpu = read(ladder_mod.run_ladder(load_config(tiny_project), tiny_project, CHEAP))
    h100 = read(ladder_mod.run_ladder(load_config(tiny_project, ["cost.gpu=H100-80GB"]), tiny_project, CHEAP))
    assert h100["reused"] == CHEAP and h100["machine"]["name"] == "H100-80GB"
    assert cpu["machine"]["name"].startswith("this CPU")
    for a, b in zip(cpu["rungs"], h100["rungs"], strict=True):
        assert b["compute"] == a["compute"] and b["cost"] != a["cost"]
    result = runner.invoke(app, ["report", str(tiny_project), "--set", "cost.gpu=L4"])
    assert result.exit_code == 0, result.output
    latest = sorted((tiny_project / ".tunewise" / "reports").iterdir())[-1]
    l4 = read(latest)
    assert l4["machine"]["name"] == "L4" and l4["prices"]["usd_per_hour"] == 0.7
    assert [r["name"] for r in l4["rungs"]] == CHEAP and "one L4" in (latest / "report.md").read_text()
    # Same work, same machine, same prices: the re-priced report agrees with a ladder run at them.
    again = read(ladder_mod.run_ladder(load_config(tiny_project, ["cost.gpu=L4"]), tiny_project, CHEAP))
    assert [r["cost"] for r in again["rungs"]] == [r["cost"] for r in l4["rungs"]]
    assert again["recommendation"] == l4["recommendation"] and again["break_even"] == l4["break_even"]
    refused = runner.invoke(app, ["report", str(tiny_project), "--set", "few_shot.k=1"])
    assert refused.exit_code == 2 and "re-prices only" in refused.output and "Traceback" not in refused.output


def test_repricing_restores_the_content_scores_from_the_run_folders(tmp_path):
    """ladder.json leaves per-item content scores out; re-pricing reads them back from each run's
    result.json so the recommendation's content check runs again."""
    run = tmp_path / "runs" / "rag-1"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"metric_items": {"content_f1": [1.0, 0.0]}}))
    rungs = [{"name": "rag", "run_dir": str(run)}, {"name": "gone", "run_dir": str(tmp_path / "nope")}, {"name": "x"}]
    ladder_mod.restore_metric_items(rungs, tmp_path)
    assert rungs[0]["metric_items"] == {"content_f1": [1.0, 0.0]}
    assert "metric_items" not in rungs[1] and "metric_items" not in rungs[2]

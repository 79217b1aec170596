import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from tunewise.config import ConfigError, load_config
from tunewise.ladder import run_ladder


def test_ladder_on_tiny_model_writes_report(tiny_project):
    config = load_config(tiny_project)
    report_dir = run_ladder(config, tiny_project)
    ladder = json.loads((report_dir / "ladder.json").read_text())
    assert [r["name"] for r in ladder["rungs"]] == ["zero-shot", "lora"]
    assert ladder["n_test"] == 12
    for r in ladder["rungs"]:
        lo, hi = r["metrics"]["accuracy_ci"]
        assert lo <= r["metrics"]["accuracy"] <= hi
    assert (report_dir / "report.md").read_text().count(ladder["test_hash"]) == 1
    # Every figure is recomputed from the predictions each run wrote, and the paired test from scipy.
    correct = {}
    for r in ladder["rungs"]:
        preds = [json.loads(line) for line in (tiny_project / r["run_dir"] / "predictions.jsonl").read_text().splitlines()]
        correct[r["name"]] = np.array([p["output"] == p["target"] for p in preds])
        assert r["metrics"]["accuracy"] == pytest.approx(correct[r["name"]].mean())
    best = max(ladder["rungs"], key=lambda r: r["metrics"]["accuracy"])
    other = next(r for r in ladder["rungs"] if r is not best)
    a, b = correct[other["name"]], correct[best["name"]]
    discordant = int((a & ~b).sum()), int((~a & b).sum())
    expected = binomtest(discordant[0], sum(discordant), 0.5).pvalue if sum(discordant) else 1.0
    assert other["paired_vs_best"]["p_value"] == pytest.approx(expected)
    lora = ladder["rungs"][1]
    assert lora["break_even"]["vs"] == "zero-shot" and lora["train_history"]
    (pair,) = ladder["break_even"]["comparisons"]
    assert (pair["trained"], pair["vs"], pair["break_even_requests"]) == ("lora", "zero-shot", lora["break_even"]["requests"])
    assert "## Break-even" in (report_dir / "report.md").read_text()
    # No prepared dataset matched: the ladder prepared one, said so and recorded it; never raw data.
    assert ladder["dataset"]["auto_prepared"] and "no prepared dataset matches" in ladder["dataset"]["note"]
    assert "Data: no prepared dataset matches this config" in (report_dir / "report.md").read_text()
    from tunewise.core import Record
    from tunewise.data.split import records_hash

    scored = [Record.from_json(json.loads(line)) for line in (report_dir / ladder["test_file"]).read_text().splitlines()]
    assert records_hash(scored) == ladder["test_hash"] and len(scored) == ladder["n_test"]


def test_an_unknown_cost_gpu_fails_before_any_work(tiny_project):
    from tunewise.plan.estimate import PlanError

    config = load_config(tiny_project, ["cost.gpu=B300"])
    with pytest.raises(PlanError, match="'B300'"):
        run_ladder(config, tiny_project)
    assert not (tiny_project / ".tunewise" / "runs").exists()


def ood_outputs(rung: dict, project: Path) -> tuple[list[str], list[str]]:
    """(outputs, targets) of the OOD predictions the run folder wrote."""
    rows = [json.loads(line) for line in (project / rung["run_dir"] / "ood_predictions.jsonl").read_text().splitlines()]
    return [r["output"] for r in rows], [r["target"] for r in rows]


def test_full_cheap_ladder_with_ood_writes_every_metric(tmp_path, tiny_model_dir, tiny_encoder_dir):
    from tiny import write_tiny_project

    extra = (f"few_shot: {{k: 3, max_example_tokens: 8}}\nencoder: {{model: {tiny_encoder_dir}, epochs: 2}}\n"
             "cost: {usd_per_hour: 2.0, usd_per_1m_prompt_tokens: 0.5}\n")
    project = write_tiny_project(tmp_path / "p", tiny_model_dir, extra=extra)
    rows = (project / "data" / "rows.jsonl").read_text().splitlines()[::6]
    (project / "data" / "ood.jsonl").write_text("\n".join(rows) + "\n")
    names = ["zero-shot", "few-shot", "embedding-classifier", "encoder-finetune"]
    config = load_config(project, ["data.ood_test=data/ood.jsonl"])
    report_dir = run_ladder(config, project, names)
    ladder = json.loads((report_dir / "ladder.json").read_text())
    assert [r["name"] for r in ladder["rungs"]] == names
    assert ladder["n_ood"] == 10
    for r in ladder["rungs"]:
        m = r["metrics"]
        assert {"accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "per_class", "confusion_matrix"} <= set(m)
        assert "ood_metrics" in r and r["ood_metrics"]["accuracy"] == pytest.approx(
            np.mean([p == t for p, t in zip(*ood_outputs(r, project), strict=True)]))
        assert r["cost"]["usd_per_1k_requests"] > 0 and r["prompt_tokens_per_request"] > 0
    by = {r["name"]: r for r in ladder["rungs"]}
    assert by["few-shot"]["prompt_tokens_per_request"] > by["zero-shot"]["prompt_tokens_per_request"]
    assert by["encoder-finetune"]["train_seconds"] > 0 and "break_even" in by["encoder-finetune"]
    few = by["few-shot"]
    assert [d["seed"] for d in few["draws"]] == [0, 1, 2] and few["draw_summary"]["k"] == 3
    assert few["draws"][0]["value"] == few["metrics"]["accuracy"]  # the first set is the rung as served
    rec = ladder["recommendation"]
    # Withheld (a split too small to tell rungs apart) exactly when no rung is named; else a good one.
    assert (rec["rung"] is None) == bool(rec.get("withheld"))
    assert rec["rung"] is None or rec["rung"] in rec["non_inferior"]
    html = (report_dir / "report.html").read_text()
    assert all(f">{n}</td>" in html for n in names)


def test_unknown_rung_is_a_one_line_error_naming_the_file(tiny_project):
    config = load_config(tiny_project)
    with pytest.raises(ConfigError, match=r"tunewise.yaml: unknown rung 'few_shot'.*known: zero-shot"):
        run_ladder(config, tiny_project, ["few_shot"])


def test_unknown_rung_in_yaml_names_the_key(tiny_project):
    path = tiny_project / "tunewise.yaml"
    path.write_text(path.read_text().replace("rungs: [zero-shot, lora]", "rungs: [zero-shot, magic]"))
    with pytest.raises(ConfigError, match=r"tunewise.yaml: bad value for 'rungs.1'"):
        load_config(tiny_project)


def test_cli_unknown_rung_exits_non_zero_with_one_line(tiny_project):
    cmd = [sys.executable, "-c", "from tunewise.cli import main; main()", "ladder", str(tiny_project), "--rungs", "nope", "-q"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown rung 'nope'" in done.stderr and "Traceback" not in done.stderr


def test_encoder_rung_on_a_generation_task_is_refused(tiny_project):
    config = load_config(tiny_project, ["task.type=generation"])
    with pytest.raises(ConfigError, match="rung 'embedding-classifier' needs task.type: classification"):
        run_ladder(config, tiny_project, ["embedding-classifier"])


def test_missing_encoder_folder_names_the_key(tiny_project):
    config = load_config(tiny_project, ["encoder.model=no/such/dir"])
    with pytest.raises(ConfigError, match=r"bad value for 'encoder.model'"):
        run_ladder(config, tiny_project, ["embedding-classifier"])

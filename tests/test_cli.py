"""Whole-project CLI checks: every command has help and is in the README; user errors are one line."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunewise.cli import app

ROOT = Path(__file__).parents[1]
runner = CliRunner()


def commands() -> list[str]:
    import typer.main

    group = typer.main.get_group(app)
    return sorted(group.commands)


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in commands():
        assert name in result.output


@pytest.mark.parametrize("name", commands())
def test_every_command_has_help_and_is_in_readme(name):
    result = runner.invoke(app, [*name.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip()) > 40
    assert re.search(rf"tunewise {re.escape(name)}\b", (ROOT / "README.md").read_text())


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", "from tunewise.cli import main; main()", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )


def test_unknown_key_is_one_line_exit_2(tiny_project):
    text = (tiny_project / "tunewise.yaml").read_text().replace("  batch_size: 4", "  batch_sise: 4")
    (tiny_project / "tunewise.yaml").write_text(text)
    result = run_cli("ladder", str(tiny_project))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown key 'train.batch_sise'" in lines[0]
    assert str(tiny_project / "tunewise.yaml") in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_set_value_exit_2(tiny_project):
    result = run_cli("ladder", str(tiny_project), "--set", "train.learning_rate=-1")
    assert result.returncode == 2
    assert "bad value for 'train.learning_rate'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_file_is_one_line(tiny_project):
    (tiny_project / "data" / "rows.jsonl").unlink()
    result = run_cli("ladder", str(tiny_project), "-q")
    assert result.returncode == 1
    assert "no such data file" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_without_ladder_is_a_clear_error(tiny_project):
    result = run_cli("report", str(tiny_project))
    assert result.returncode == 2
    assert "no saved ladder" in result.stderr


def test_init_refuses_to_overwrite(tmp_path):
    (tmp_path / "tunewise.yaml").write_text("x: 1\n")
    result = run_cli("init", str(tmp_path))
    assert result.returncode == 1
    assert "already exists" in result.stderr


def test_summary_prints_the_primary_metric_of_any_task(tmp_path, capsys):
    import json

    from tunewise.cli import _print_summary

    rung = {"name": "zero-shot", "metrics": {"rouge_l": 0.42, "rouge_l_ci": [0.3, 0.5]}, "train_seconds": 0,
            "ms_per_example": 12.0, "prompt_tokens_per_request": 80}
    ladder = {"project": "chat", "n_test": 10, "test_hash": "ab" * 32, "primary": "rouge_l", "rungs": [rung],
              "recommendation": {"rung": "zero-shot", "reason": "only rung"}}
    (tmp_path / "ladder.json").write_text(json.dumps(ladder))
    (tmp_path / "report.html").write_text("<html></html>")
    _print_summary(tmp_path)
    printed = capsys.readouterr().out
    assert "42.0 (30.0–50.0)" in printed and "report.html" in printed


def test_no_usable_rows_is_one_line(tiny_project):
    result = run_cli("ladder", str(tiny_project), "-q", "--set", "task.labels=[x, y]")
    assert result.returncode == 1
    assert "no usable rows" in result.stderr and "Traceback" not in result.stderr


def test_set_errors_name_the_option_not_the_file(tiny_project):
    result = runner.invoke(app, ["ladder", str(tiny_project), "--set", "train.epochs=many"])
    assert result.exit_code == 2
    assert "--set train.epochs=many: bad value for 'train.epochs'" in result.output
    assert "tunewise.yaml" not in result.output
    result = runner.invoke(app, ["ladder", str(tiny_project), "--set", "train.epoch=2"])
    assert result.exit_code == 2 and "--set train.epoch=2: unknown key 'train.epoch'" in result.output

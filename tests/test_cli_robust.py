"""A new user's environment problems end in one line and a documented exit code, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.examples import known_examples

runner = CliRunner()


def cli(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from tunewise.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("argv", [["ladder", "{p}"], ["prepare", "{p}"], ["audit", "{p}"], ["train", "{p}"],
                                  ["sweep", "{p}"], ["curve", "{p}"], ["review", "export", "{p}"],
                                  ["monitor", "{p}", "--log", "{p}/requests.jsonl"]])
def test_unwritable_workspace_fails_up_front_in_one_line(tiny_project, argv):
    # .tunewise as a plain file: the workspace cannot be created (a real OSError, also for root).
    (tiny_project / ".tunewise").write_text("not a folder")
    (tiny_project / "requests.jsonl").write_text('{"input": "the market"}\n')
    result = cli(*(a.replace("{p}", str(tiny_project)) for a in argv))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and ".tunewise" in lines[0], result.stderr


def test_missing_project_is_exit_2_in_one_line(tmp_path):
    result = cli("ladder", str(tmp_path / "nope"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "tunewise.yaml: no such file" in result.stderr


@pytest.mark.parametrize("after", [0.5, 2.5, 6.0])
def test_ctrl_c_at_any_moment_exits_130_without_traceback(tiny_project, after):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "from tunewise.cli import main; main()", "ladder",
                             str(tiny_project), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    time.sleep(after)
    finished_first = proc.poll() is not None
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr
    if not finished_first:
        assert proc.returncode == 130, (proc.returncode, stderr)
    # Nothing half-written: no temporary files are left in the workspace.
    leftovers = [p for p in (tiny_project / ".tunewise").rglob("*.tmp")] if (tiny_project / ".tunewise").exists() else []
    assert not leftovers


def test_init_knows_every_bundled_example(tmp_path):
    names = known_examples()
    assert {"bbc-news", "support-chat"} <= set(names)
    for name in names:
        target = tmp_path / name
        result = runner.invoke(app, ["init", str(target), "--example", name])
        assert result.exit_code == 0, result.output
        assert (target / "tunewise.yaml").exists()
        for command in ("audit", "prepare", "ladder"):
            assert f"tunewise {command} {target}" in result.output
    result = runner.invoke(app, ["init", str(tmp_path / "x"), "--example", "nope"])
    assert result.exit_code == 1 and all(n in result.output for n in names)


def test_support_chat_example_config_loads_after_init(tmp_path):
    from tunewise.config import load_config

    runner.invoke(app, ["init", str(tmp_path / "sc"), "--example", "support-chat"])
    config = load_config(tmp_path / "sc")
    for f in config.data.files:
        assert (tmp_path / "sc" / f).is_file()


def test_review_export_prints_an_import_command_that_works(tiny_project):
    from tunewise.data.prepare import export_project_review

    path, *_ = export_project_review(tiny_project, None, ["audit.mislabels=false"])
    result = runner.invoke(app, ["review", "export", str(tiny_project), "--set", "audit.mislabels=false"])
    assert result.exit_code == 0, result.output
    printed = result.output.split("then: ", 1)[1].split()
    assert printed[:3] == ["tunewise", "review", "import"]
    result = runner.invoke(app, printed[1:] + ["--set", "audit.mislabels=false"])
    assert result.exit_code == 0, result.output
    assert Path(printed[3]) == path

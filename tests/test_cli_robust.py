"""A new user's environment problems end in one line and a documented exit code, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def _signal_at(project: Path, stage: str, signum: int) -> tuple[int, str, bool]:
    """Run `tunewise ladder`, send ``signum`` as soon as it prints ``stage: <stage>`` (TUNEWISE_STAGE_MARKERS),
    and return (exit code, stderr, whether the signal was sent while the process ran).

    Synchronised on what the process prints, never on sleep times, so the signal lands in the same stage
    on an idle machine and under load."""
    import queue
    import threading

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNEWISE_STAGE_MARKERS": "1"}
    small = ["--set", "train.max_steps=2", "--set", "eval.timing_repeats=1", "--set", "eval.timing_examples=2"]
    proc = subprocess.Popen([sys.executable, "-m", "tunewise", "ladder", str(project), "-q", *small],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []

    def read():
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    sent = False
    while (line := lines.get(timeout=600)) is not None:
        seen.append(line)
        if line.strip() == f"stage: {stage}" and not sent:
            sent = proc.poll() is None
            proc.send_signal(signum)
    proc.wait(timeout=120)
    return proc.returncode, "".join(seen), sent


# A stage of every kind, each signal at some: imports, data, model loading, training, scoring, writing.
@pytest.mark.parametrize(("stage", "signum"), [
    ("start", signal.SIGINT), ("imports", signal.SIGTERM), ("prepare", signal.SIGINT),
    ("zero-shot: load", signal.SIGINT), ("lora: fit", signal.SIGINT), ("lora: predict test", signal.SIGTERM),
    ("report", signal.SIGINT)])
def test_signal_at_every_stage_exits_cleanly(tiny_project, stage, signum):
    code, stderr, sent = _signal_at(tiny_project, stage, signum)
    assert sent, f"the ladder finished before stage {stage!r} was reached:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert code == 128 + signum, (code, stderr)
    assert f"stage: {stage}" in stderr
    # Honoured at once: no later stage started after the signal (the partial report aside).
    after = stderr.split(f"stage: {stage}", 1)[1]
    later = [line for line in after.splitlines() if line.startswith("stage: ") and line != "stage: report"]
    assert not later, (stage, later)
    workspace = tiny_project / ".tunewise"
    # Nothing half-written: no temporary file, and every run folder left is a finished run.
    assert not list(workspace.rglob("*.tmp")) if workspace.exists() else True
    runs = list((workspace / "runs").glob("*")) if (workspace / "runs").exists() else []
    assert all((run / "metrics.json").is_file() and (run / "result.json").is_file() for run in runs), runs
    if stage in ("lora: fit", "lora: predict test"):  # zero-shot had finished: kept in a partial report
        import json

        (ladder,) = workspace.glob("reports/*/ladder.json")
        report = json.loads(ladder.read_text())
        assert report["status"] == "interrupted" and [r["name"] for r in report["rungs"]] == ["zero-shot"]


def test_interrupt_check_raises_until_handled(monkeypatch):
    """A KeyboardInterrupt that a library swallowed still stops the next progress tick or training step."""
    from tunewise import interrupt
    from tunewise.core import no_progress

    monkeypatch.setattr(interrupt, "_state", {"signum": signal.SIGTERM, "handled": False, "installed": True})
    monkeypatch.setattr(interrupt, "_stop", __import__("threading").Event())
    advance = no_progress("scoring", 10)
    advance(1)  # no signal yet: nothing happens
    interrupt._stop.set()
    with pytest.raises(KeyboardInterrupt):
        advance(1)
    assert interrupt.exit_code() == 143
    interrupt.handled()
    advance(1)  # the caller took charge (writing the partial report): no second interrupt


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

"""Ladder jobs started from the browser: one per project at a time, each a `tunewise ladder`
subprocess (a crash or its memory stays out of the server; Ctrl-C semantics give cancel for free:
the ladder writes the report of the rungs that finished). Its output lines are the job's log, which
the page streams (server-sent events)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunewise import workspace as ws

# What the `tunewise` command runs: its signal handlers are in place before the heavy imports.
LAUNCH = "from tunewise.__main__ import run; run()"


@dataclass
class Job:
    project: str
    rungs: list[str]
    overrides: list[str]
    state: str = "running"  # running, done, failed, cancelled
    lines: list[str] = field(default_factory=list)
    report: str | None = None  # the report folder's name, when one was written
    proc: subprocess.Popen | None = None
    cancelled: bool = False
    lock: object = None  # the project's lock file, held while the ladder runs

    def say(self, line: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {line}")


class Jobs:
    def __init__(self):
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}

    def get(self, name: str) -> Job | None:
        return self.jobs.get(name)

    def start(self, name: str, project: Path, rungs: list[str], overrides: list[str], on_done=None) -> Job | None:
        """Start a ladder on ``project``; None when one is already running there."""
        with self.lock:
            running = self.jobs.get(name)
            if running and running.state == "running":
                return None
            ws.workspace(project).mkdir(parents=True, exist_ok=True)
            lock = open(ws.workspace(project) / ".ui-ladder.lock", "w")  # noqa: SIM115 - held until the job ends
            try:  # a second `tunewise ui` on the same project must not start a ladder beside this one
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                return None
            job = self.jobs[name] = Job(name, rungs, overrides, lock=lock)
            command = [sys.executable, "-c", LAUNCH, "ladder", str(project)]
            command += ["--rungs", ",".join(rungs)] if rungs else []
            for o in overrides:
                command += ["--set", o]
            job.say("$ tunewise " + " ".join(command[3:]))
            env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
            job.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        bufsize=1, env=env, start_new_session=True)
        threading.Thread(target=self._follow, args=(job, project, on_done), daemon=True).start()
        return job

    def cancel(self, name: str) -> bool:
        """Interrupt the running ladder as Ctrl-C would (it writes the partial report); False if none runs."""
        job = self.jobs.get(name)
        if job is None or job.state != "running" or job.proc is None:
            return False
        job.say("cancel asked: interrupting the ladder (the report covers the rungs that finished)")
        job.proc.send_signal(signal.SIGINT)
        job.cancelled = True
        return True

    def _follow(self, job: Job, project: Path, on_done) -> None:
        before = set(_reports(project))
        for line in job.proc.stdout:
            if line.strip():
                job.say(line.rstrip())
        code = job.proc.wait()
        job.lock.close()  # releases the flock
        new = sorted(set(_reports(project)) - before)
        job.report = new[-1] if new else None
        job.state = "cancelled" if job.cancelled else "done" if code == 0 else "failed"
        job.say(f"ladder {job.state} (exit {code}){f'; report {job.report}' if job.report else ''}")
        if on_done and job.report:
            on_done()


def _reports(project: Path) -> list[str]:
    root = ws.workspace(project) / "reports"
    return [p.name for p in root.iterdir() if (p / "ladder.json").exists()] if root.is_dir() else []

"""Ladder jobs started from the browser: one per project at a time, in a background thread, with a
log the page streams (server-sent events). A job cannot be cancelled mid-rung yet: the page says so."""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    project: str
    rungs: list[str]
    overrides: list[str]
    state: str = "running"  # running, done, failed
    lines: list[str] = field(default_factory=list)
    report: str | None = None  # the report folder's name when done
    started: float = field(default_factory=time.time)

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
            job = self.jobs[name] = Job(name, rungs, overrides)
        threading.Thread(target=self._run, args=(job, project, on_done), daemon=True).start()
        return job

    def _run(self, job: Job, project: Path, on_done) -> None:
        from tunewise.config import load_config
        from tunewise.ladder import run_ladder

        def progress(description: str, total: int):
            job.say(f"{description} (0/{total})")
            done = [0]

            def advance(n: int = 1, **fields) -> None:
                done[0] += n
                extra = " ".join(f"{k}={v}" for k, v in fields.items())
                job.say(f"{description} ({done[0]}/{total}){' ' + extra if extra else ''}")
            return advance

        try:
            job.say(f"ladder started: rungs {', '.join(job.rungs) or '(from the config)'}"
                    f"{'; --set ' + ' '.join(job.overrides) if job.overrides else ''}")
            config = load_config(project, job.overrides or None)
            folder = run_ladder(config, project, job.rungs or None, progress)
            job.report = Path(folder).name
            job.say(f"ladder finished: report {job.report}")
            job.state = "done"
            if on_done:
                on_done()
        except Exception as e:  # noqa: BLE001 -- the page shows why; the server keeps running
            job.say(f"ladder failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            job.say(traceback.format_exc(limit=3).splitlines()[-1])
            job.state = "failed"

"""Ctrl-C and SIGTERM, honoured at every moment of a command: imports, loading, prepare, fitting,
scoring and writing.

Python's own SIGINT handling raises KeyboardInterrupt at the next bytecode, but that exception can be
lost before it reaches the command: a library that catches ``BaseException``, a finaliser ("Exception
ignored in ..."), a callback run from C++ code. A lost interrupt meant a ladder that went on for
minutes after Ctrl-C. SIGTERM (what ``kill``, a container stop or a job scheduler sends) killed the
process outright, without the partial report. So the command-line handler does three things:

1. it records the signal in a flag no library can swallow, then raises KeyboardInterrupt at once;
2. every long loop calls :func:`check` (the progress callbacks, the trainer's step callback, each
   stage boundary), which raises again while the flag stands and no caller has taken charge of it;
3. a watchdog ends the process ``GRACE_SECONDS`` later if it is still running (a long C call, an
   interrupt lost on a path with no check), first removing the temporary files of writes in flight,
   so nothing half-written is left; a second signal does the same at once.

Only the command line installs the handler (``install``); the library used from Python keeps the
interpreter's default behaviour. Standard library only: this runs before any heavy import.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time

GRACE_SECONDS = 15.0
"""How long the command may take to stop cleanly (the partial report) before it is ended."""

_stop = threading.Event()
_state: dict = {"signum": None, "handled": False, "installed": False}
_stages: list[tuple[str, float, float]] = []


def install() -> None:
    """Route SIGINT and SIGTERM through :func:`_on_signal` (main thread only; idempotent)."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
    _state["installed"] = True


def _on_signal(signum: int, frame) -> None:
    if _stop.is_set():  # the second signal: the user wants out now
        hard_exit("stopped at the second signal")
    _state["signum"] = signum
    _stop.set()
    threading.Thread(target=_watchdog, name="tunewise-interrupt-watchdog", daemon=True).start()
    raise KeyboardInterrupt


def _watchdog() -> None:
    threading.Event().wait(GRACE_SECONDS)
    hard_exit(f"did not stop within {GRACE_SECONDS:.0f} s of the signal; ended")


def requested() -> bool:
    """True once SIGINT or SIGTERM arrived."""
    return _stop.is_set()


def check() -> None:
    """Raise KeyboardInterrupt when a signal arrived and no caller has taken charge of it yet.

    Cheap (one flag read): called from every progress tick and training step."""
    if _stop.is_set() and not _state["handled"]:
        raise KeyboardInterrupt


def handled() -> None:
    """The caller caught the interrupt and is finishing up (the partial report): stop raising it."""
    _state["handled"] = True


def exit_code() -> int:
    """128 + the signal's number, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + int(_state["signum"] or signal.SIGINT)


def signal_name() -> str:
    return "SIGTERM" if _state["signum"] == signal.SIGTERM else "Ctrl-C"


def hard_exit(why: str) -> None:
    """Remove the temporary files of writes in flight and end the process with the signal's exit code."""
    workspace = sys.modules.get("tunewise.workspace")
    if workspace is not None:
        workspace.discard_in_flight()
    with contextlib.suppress(OSError, ValueError):  # a closed pipe must not keep the process alive
        sys.stderr.write(f"interrupted ({signal_name()}): {why}\n")
        sys.stderr.flush()
        sys.stdout.flush()
    os._exit(exit_code())


def stage(name: str) -> None:
    """Mark the start of a stage of a command (the previous one ends here): honours a pending
    interrupt, records the time for :func:`stage_times`, and when the environment variable
    TUNEWISE_STAGE_MARKERS is set, prints ``stage: NAME`` on stderr — what tests and wrapper scripts
    wait for, instead of guessing how long a stage takes on this machine."""
    check()
    _stages.append((name, time.perf_counter(), time.process_time()))
    if os.environ.get("TUNEWISE_STAGE_MARKERS"):
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"stage: {name}\n")
            sys.stderr.flush()


def stage_times(since: int = 0) -> list[dict]:
    """Wall and CPU seconds of each stage marked from index ``since`` on (the last one ends now)."""
    marks = [*_stages[since:], ("", time.perf_counter(), time.process_time())]
    return [{"stage": a[0], "wall_s": round(b[1] - a[1], 2), "cpu_s": round(b[2] - a[2], 2)}
            for a, b in itertools.pairwise(marks)]


def stage_count() -> int:
    return len(_stages)

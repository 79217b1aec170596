"""What every command module of the CLI shares: the one Typer app, the consoles, the common options,
the error handler and the progress bars.

`tunewise.cli` and `tunewise.cli_lifecycle` both register their commands on ``app`` from here, so
neither imports the other's module for it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    help="tunewise: audit your data, climb the ladder from prompting to fine-tuning, and prove with "
    "numbers whether fine-tuning was worth it.",
    epilog="Exit codes: 0 done; 1 data, model or machine problem; 2 usage or config error; 130 interrupted (Ctrl-C), 143 stopped (SIGTERM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

ProjectArg = Annotated[Path, typer.Argument(help="Project folder holding tunewise.yaml.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="No progress bars; warnings and errors only.")]


# (module, class) of every error a user can cause. Looked up in sys.modules, never imported: an error can
# only come from a module that is already loaded, and importing torch-heavy modules inside the handler
# turned a Ctrl-C during start-up into a second error (or a crash).
USER_ERRORS = (
    ("tunewise.assets", "AssetMissing"), ("tunewise.config", "ConfigError"), ("tunewise.data.load", "DataError"),
    ("tunewise.examples", "ExampleError"), ("tunewise.gpus", "GpuError"), ("tunewise.models.chat", "TemplateError"),
    ("tunewise.models.load", "ModelError"), ("tunewise.plan.estimate", "PlanError"),
    ("tunewise.train.dpo", "PreferenceDataError"), ("tunewise.train.launch", "LaunchError"),
    ("tunewise.train.methods", "MethodError"), ("tunewise.train.common", "TrainingGuardError"),
)


def _user_errors() -> tuple[type[BaseException], ...]:
    return tuple(getattr(sys.modules[m], c) for m, c in USER_ERRORS if m in sys.modules)


def friendly(fn):
    """Turn the errors a user can cause into one line on stderr and a non-zero exit, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            from tunewise import interrupt

            console.print(f"[yellow]interrupted[/] ({interrupt.signal_name()})")
            raise typer.Exit(interrupt.exit_code()) from None
        except _user_errors() as e:
            config_error = sys.modules.get("tunewise.config")
            console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2 if config_error and isinstance(e, config_error.ConfigError) else 1) from None
        except OSError as e:  # a read-only folder, a full disk, a missing permission: the path and the cause
            where = f"{e.filename}: " if e.filename else ""
            console.print(f"[bold red]error:[/] {where}{e.strerror or e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _methods() -> tuple[str, ...]:
    from tunewise.config import METHODS

    return METHODS


def _strategies() -> tuple[str, ...]:
    from tunewise.train.launch import STRATEGIES

    return STRATEGIES


def _check_choice(option: str, value: str | None, choices: tuple[str, ...], key: str = "") -> None:
    """An option value outside its choices is a usage error, refused before any work (exit 2)."""
    if value is not None and value not in choices:
        from tunewise.config import ConfigError

        raise ConfigError(f"{option} {value}: expected one of {', '.join(choices)}" + (f" (as {key})" if key else ""))


def _writable(project: Path) -> None:
    """Fail before any work when the project's .tunewise/ folder cannot be written."""
    from tunewise import workspace as ws

    ws.ensure_writable(project)


def _setup_logging(quiet: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)], force=True,
    )
    # bitsandbytes warns on import that an optional hub kernel cannot be fetched (never, offline); the
    # AVX512-BF16 workaround in train/methods.py does not need it.
    for noisy in ("transformers", "peft", "accelerate", "httpx", "bitsandbytes", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextlib.contextmanager
def progress_bars(quiet: bool) -> Iterator:
    """Yield a ``progress(description, total) -> advance(n)`` function backed by Rich."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from tunewise import interrupt
    from tunewise.core import no_progress

    if quiet or not console.is_terminal:  # bars are for a person at a terminal: a log or a pipe gets none
        yield no_progress
        return
    bars = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[rate]}"), console=console,
    )

    def progress(description: str, total: int):
        if not bars.live.is_started:  # started at the first bar: a command that needs none prints nothing
            bars.start()
        task = bars.add_task(description, total=total, rate="")
        # Fields such as rate="1,234 tok/s" (the trainer's real tokens per second) update the bar.
        def advance(n, **fields):
            bars.update(task, advance=n, **fields)
            interrupt.check()  # every tick honours a Ctrl-C that a library swallowed

        return advance

    try:
        yield progress
    finally:
        if bars.live.is_started:
            bars.stop()

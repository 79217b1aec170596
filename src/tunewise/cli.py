"""The tunewise command line: one command per stage, each calling one library function."""

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
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

ProjectArg = Annotated[Path, typer.Argument(help="Project folder holding tunewise.yaml.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="No progress bars; warnings and errors only.")]


def _user_errors() -> tuple[type[BaseException], ...]:
    from tunewise.assets import AssetMissing
    from tunewise.config import ConfigError
    from tunewise.data.load import DataError
    from tunewise.examples import ExampleError
    from tunewise.models.chat import TemplateError
    from tunewise.models.load import ModelError
    from tunewise.train.dpo import PreferenceDataError
    from tunewise.train.launch import LaunchError
    from tunewise.train.methods import MethodError
    from tunewise.train.sft import TrainingGuardError

    return (ConfigError, DataError, ExampleError, TemplateError, ModelError, AssetMissing, TrainingGuardError,
            MethodError, PreferenceDataError, LaunchError)


def friendly(fn):
    """Turn the errors a user can cause into one line on stderr and a non-zero exit, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tunewise.config import ConfigError

        try:
            return fn(*args, **kwargs)
        except _user_errors() as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2 if isinstance(e, ConfigError) else 1) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def _setup_logging(quiet: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)], force=True,
    )
    for noisy in ("transformers", "peft", "accelerate", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextlib.contextmanager
def progress_bars(quiet: bool) -> Iterator:
    """Yield a ``progress(description, total) -> advance(n)`` function backed by Rich."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from tunewise.rungs.base import no_progress

    if quiet:
        yield no_progress
        return
    bars = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=console,
    )

    def progress(description: str, total: int):
        task = bars.add_task(description, total=total)
        return lambda n: bars.advance(task, n)

    with bars:
        yield progress


@app.command()
@friendly
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    example: Annotated[str, typer.Option(help="Bundled example to copy: bbc-news.")] = "bbc-news",
    force: Annotated[bool, typer.Option(help="Overwrite an existing tunewise.yaml.")] = False,
) -> None:
    """Create a project from a bundled example, with its data written from the installed package."""
    from tunewise.examples import init_example

    path = init_example(directory, example, force)
    out.print(f"created {path}/tunewise.yaml and {path}/data/ — next: tunewise ladder {path}")


@app.command()
@friendly
def ladder(
    project: ProjectArg = Path("."),
    rungs: Annotated[str | None, typer.Option(help="Comma-separated rungs to run (default: the config's).")] = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run every rung on the same frozen test split and write ladder.json and the report."""
    from tunewise.config import load_config

    config = load_config(project, set_)
    _setup_logging(quiet)
    from tunewise.ladder import run_ladder

    chosen = [r.strip() for r in rungs.split(",")] if rungs else None
    with progress_bars(quiet) as progress:
        report_dir = run_ladder(config, project, chosen, progress)
    _print_summary(report_dir)


def _print_summary(report_dir: Path) -> None:
    import json

    from rich.table import Table

    ladder = json.loads((report_dir / "ladder.json").read_text())
    table = Table(title=f"{ladder['project']}: {ladder['n_test']} test examples, sha256 {ladder['test_hash'][:12]}…")
    for col in ("rung", "accuracy % (95% CI)", "macro-F1 %", "train s", "ms/example"):
        table.add_column(col)
    for r in ladder["rungs"]:
        m = r["metrics"]
        lo, hi = m["accuracy_ci"]
        table.add_row(r["name"], f"{100 * m['accuracy']:.1f} ({100 * lo:.1f}–{100 * hi:.1f})",
                      f"{100 * m['macro_f1']:.1f}", f"{r['train_seconds']:.0f}", f"{r['ms_per_example']:.1f}")
    out.print(table)
    rec = ladder["recommendation"]
    out.print(f"[bold]recommendation:[/] {rec['rung']} — {rec['reason']}", highlight=False)
    out.print(f"report: {report_dir / 'report.md'}")


@app.command()
@friendly
def report(
    project: ProjectArg = Path("."),
    run: Annotated[Path | None, typer.Option(help="A report folder (default: the latest).")] = None,
) -> None:
    """Rebuild the report files from the latest (or a given) saved ladder.json."""
    from tunewise import workspace as ws
    from tunewise.config import ConfigError
    from tunewise.report.build import rebuild

    folder = run or ws.latest_dir(project, "reports")
    if folder is None or not (folder / "ladder.json").exists():
        raise ConfigError(f"{project}: no saved ladder to report on (run `tunewise ladder {project}` first)")
    rebuild(folder)
    out.print(f"report: {folder / 'report.md'}")


@contextlib.contextmanager
def training_bar(quiet: bool) -> Iterator:
    """Like progress_bars, with the real (non-pad) tokens per second the trainer reports."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if quiet:
        yield None
        return
    bars = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[tps]} tok/s"), console=console,
    )

    def progress(description: str, total: int):
        task = bars.add_task(description, total=total, tps="…")
        return lambda n, **fields: bars.update(task, advance=n, **fields)

    with bars:
        yield progress


@app.command()
@friendly
def train(
    project: ProjectArg = Path("."),
    method: Annotated[str | None, typer.Option(help="full, lora, dora, qlora, prefix, prompt-tuning, ia3 or dpo "
                                               "(default: train.method).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the latest run of this method (or --run) from its "
                                         "newest complete checkpoint.")] = False,
    run: Annotated[Path | None, typer.Option(help="The run folder to write or resume.")] = None,
    nproc: Annotated[int, typer.Option(help="Processes per node; above 1 launches through torchrun.")] = 1,
    strategy: Annotated[str, typer.Option(help="With --nproc: ddp (torchrun; CPU or GPU), fsdp, zero2 or zero3 "
                                          "(accelerate; GPUs).")] = "ddp",
    nnodes: Annotated[int, typer.Option(help="Number of machines (multi-node).")] = 1,
    node_rank: Annotated[int, typer.Option(help="This machine's rank (multi-node).")] = 0,
    master: Annotated[str, typer.Option(help="host:port of the rank-0 machine (multi-node).")] = "127.0.0.1:29500",
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune the base model on the train split; checkpoints, lineage and metrics go to .tunewise/runs/."""
    from tunewise.config import load_config

    load_config(project, set_)  # fail on a bad config before any model is loaded
    _setup_logging(quiet)
    if nproc > 1 or nnodes > 1 or strategy != "ddp":
        from tunewise.train.launch import launch

        run_dir = launch(project, method, nproc, set_ or [], resume, run, strategy, nnodes, node_rank, master)
    else:
        from tunewise.train.run import train_project

        with training_bar(quiet) as progress:
            run_dir = train_project(project, method, set_, resume, run, progress)
    out.print(f"run: {run_dir}")


@app.command()
@friendly
def merge(
    trained: Annotated[Path, typer.Argument(help="A run's adapter/ (or model/) folder.")],
    output: Annotated[Path, typer.Argument(help="Folder to write the merged model to.")],
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickle (.bin) weights; they can run code.")] = False,
) -> None:
    """Merge a LoRA adapter into its base and export safetensors with the tokenizer and chat template."""
    from tunewise.train.merge import merge_adapter

    out.print(f"merged: {merge_adapter(trained, output, allow_pickle)}")


@app.command()
@friendly
def sweep(
    project: ProjectArg = Path("."),
    trials: Annotated[int, typer.Option(help="How many trials Optuna may run.")] = 8,
    method: Annotated[str | None, typer.Option(help="Method to tune (default: train.method).")] = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Search learning rate, LoRA rank/alpha/dropout, batch size and warm-up with Optuna, on val loss only."""
    from tunewise.config import load_config

    load_config(project, set_)
    _setup_logging(quiet)
    from tunewise.train.sweep import run_sweep

    folder = run_sweep(project, trials, method, set_ or [])
    out.print(f"sweep: {folder / 'sweep.json'}")


def main() -> None:
    import warnings

    from tunewise.assets import offline

    offline()
    # Deprecation chatter from the libraries underneath says nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The tunewise command line: one command per stage, each calling one library function.

The lifecycle commands (monitor, serve, ui, export) are in tunewise.cli_lifecycle; both modules
register on the one app of tunewise.cli_common.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tunewise.cli_common import (
    ProjectArg,
    QuietOpt,
    SetOpt,
    _check_choice,
    _methods,
    _setup_logging,
    _strategies,
    _writable,
    app,
    console,
    friendly,
    out,
    progress_bars,
)
from tunewise.rungspec import LORA


@app.command()
@friendly
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    example: Annotated[str, typer.Option(help="Bundled example to copy (bbc-news, support-chat, …; an unknown "
                                         "name lists them).")] = "bbc-news",
    force: Annotated[bool, typer.Option(help="Overwrite an existing tunewise.yaml.")] = False,
) -> None:
    """Create a project from a bundled example, with its data written from the installed package."""
    from tunewise.examples import init_example

    path = init_example(directory, example, force)
    out.print(f"created {path}/tunewise.yaml and {path}/data/ — next:\n"
              f"  tunewise audit {path}\n  tunewise prepare {path}\n  tunewise ladder {path}", highlight=False, soft_wrap=True)


@app.command()
@friendly
def ladder(
    project: ProjectArg = Path("."),
    rungs: Annotated[str | None, typer.Option(help="Comma-separated rungs to run (default: the config's).")] = None,
    fresh: Annotated[bool, typer.Option(help="Recompute every rung, even those an identical earlier run finished.")] = False,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run every rung on the same frozen test split and write ladder.json and the report.

    A rung whose config, data and tunewise version match an earlier finished run is reused (--fresh
    recomputes). A failing rung is recorded and the report is written for the others (exit 1); Ctrl-C
    or SIGTERM writes the report of the rungs that finished (exit 130, or 143 for SIGTERM)."""
    from tunewise import interrupt
    from tunewise.config import load_config

    interrupt.stage("config")
    config = load_config(project, set_)
    _writable(project)
    _setup_logging(quiet)
    interrupt.stage("imports")
    from tunewise.ladder import LadderInterrupted, run_ladder

    chosen = [r.strip() for r in rungs.split(",")] if rungs else None
    try:
        with progress_bars(quiet) as progress:
            report_dir = run_ladder(config, project, chosen, progress, fresh)
    except LadderInterrupted as stop:
        from tunewise import interrupt

        if stop.report_dir is not None:
            _print_summary(stop.report_dir)
        console.print(f"[yellow]interrupted[/] ({interrupt.signal_name()}): the report covers the rungs that finished")
        raise typer.Exit(interrupt.exit_code()) from None
    _print_summary(report_dir)
    if not quiet:
        _print_stages(interrupt.stage_times())
    import json

    failed = json.loads((report_dir / "ladder.json").read_text()).get("failed", [])
    for f in failed:
        console.print(f"[bold red]error:[/] rung {f['name']} failed: {f['error']}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command()
@friendly
def curve(
    project: ProjectArg = Path("."),
    rungs: Annotated[str | None, typer.Option(help="Comma-separated rungs (default: the config's).")] = None,
    sizes: Annotated[str | None, typer.Option(help="Comma-separated train sizes, e.g. 50,100,200,400 "
                                              "(default: 50, 100, 200, … and the whole train split).")] = None,
    more: Annotated[int | None, typer.Option(help="Project the gain from this many more labelled rows "
                                             "(default: as many as the train split has).")] = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Learning curves per rung on the frozen test split: the gain from more labels, and whether labels or a bigger rung is cheaper."""
    import json

    from tunewise.config import load_config
    from tunewise.curve import parse_sizes, run_curve

    config = load_config(project, set_)
    chosen_sizes = parse_sizes(sizes)
    _writable(project)
    _setup_logging(quiet)
    chosen = [r.strip() for r in rungs.split(",")] if rungs else None
    with progress_bars(quiet) as progress:
        folder = run_curve(config, project, chosen, chosen_sizes, more, progress)
    result = json.loads((folder / "curve.json").read_text(encoding="utf-8"))
    for line in result["advice"]:
        out.print(f"- {line}", highlight=False, soft_wrap=True)
    from tunewise import workspace as ws

    where = f" and the report in {ws.resolve(project, result['report_dir'])}" if result["report_dir"] else ""
    out.print(f"wrote {folder / 'curve.json'}{where}", highlight=False, soft_wrap=True)


def _print_stages(stages: list[dict]) -> None:
    """Where the time went: wall and CPU seconds per stage of this command, in order."""
    from rich.table import Table

    table = Table(title="time per stage", title_justify="left")
    for column in ("stage", "wall s", "cpu s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for s in stages:
        table.add_row(s["stage"], f"{s['wall_s']:.1f}", f"{s['cpu_s']:.1f}")
    table.add_row("total", f"{sum(s['wall_s'] for s in stages):.1f}", f"{sum(s['cpu_s'] for s in stages):.1f}")
    out.print(table)


def _print_summary(report_dir: Path) -> None:
    import json

    from rich.table import Table

    from tunewise.report.build import metric_cell, metric_head

    ladder = json.loads((report_dir / "ladder.json").read_text())
    primary = ladder.get("primary", "accuracy")
    table = Table(title=f"{ladder['project']}: {ladder['n_test']} test examples, sha256 {ladder['test_hash'][:12]}…")
    recent = ladder.get("n_recent", 0)
    for col in ("rung", metric_head(primary), "train s", "latency ms", "prompt tokens"):
        table.add_column(col)
    if recent:
        table.add_column(f"{primary} % on {recent} recent")
    for r in ladder["rungs"]:
        m = r["metrics"]
        table.add_row(r["name"] + (" (reused)" if r.get("reused_from") else ""), metric_cell(primary, m),
                      f"{r['train_seconds']:.0f}", f"{(r.get('latency') or {}).get('median_ms', r['ms_per_example']):.1f}",
                      f"{r['prompt_tokens_per_request']:.0f}", *([_recent_cell(r, primary)] if recent else []))
    out.print(table)
    rec = ladder["recommendation"]
    out.print(f"[bold]recommendation:[/] {rec['rung']} — {rec['reason']}", highlight=False)
    _print_report_paths(report_dir)


def _recent_cell(r: dict, primary: str) -> str:
    """The rung on the recent split, beside what the deployed model answered when served (McNemar)."""
    cell = f"{100 * r['recent_metrics'][primary]:.1f}"
    served = r.get("recent_vs_served")
    return cell + (f" (served {100 * served['served_accuracy']:.1f}, p={served['p_value']:.2g})" if served else "")


def _print_report_paths(report_dir: Path) -> None:
    for name in ("report.html", "report.md", "ladder.json"):
        if (report_dir / name).exists():
            out.print(f"report: {report_dir / name}")


@app.command()
@friendly
def report(
    project: ProjectArg = Path("."),
    run: Annotated[Path | None, typer.Option(help="A report folder (default: the latest).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Re-price with a `cost.` key changed (e.g. cost.gpu=H100-80GB): writes a new report "
                      "folder from the rungs' recorded work, re-running nothing (repeatable).")] = None,
) -> None:
    """Rebuild the report files from the ladder in use (the newest finished one) or a given report
    folder; --set cost.…: re-price it into a new report folder."""
    from tunewise import locate
    from tunewise.config import ConfigError
    from tunewise.report.build import rebuild

    if set_:
        if bad := [s for s in set_ if not s.startswith("cost.")]:
            raise ConfigError(f"--set {bad[0]}: the report re-prices only; change other keys and re-run the ladder")
        from tunewise.ladder import reprice_report

        found = locate.ladder(project, run)
        console.print(found.line("given by --run" if run else "the newest finished ladder"), highlight=False,
                      markup=False, soft_wrap=True)
        _print_report_paths(reprice_report(project, set_, found.folder))
        return
    found = locate.ladder(project, run)
    console.print(found.line("given by --run" if run else "the newest finished ladder"), highlight=False,
                  markup=False, soft_wrap=True)
    rebuild(found.folder)
    _print_report_paths(found.folder)


@app.command()
@friendly
def estimate(
    project: Annotated[Path, typer.Argument(help="Project folder (with --break-even).")] = Path("."),
    model: Annotated[str | None, typer.Option(help="Size (1b … 70b), family, bundled alias or folder.")] = None,
    method: Annotated[str, typer.Option(help="full, lora or qlora.")] = LORA,
    seq_len: Annotated[int, typer.Option(help="Tokens per training sequence.")] = 512,
    batch: Annotated[int, typer.Option(help="Micro-batch per GPU.")] = 8,
    gpu: Annotated[str | None, typer.Option(help="A GPU of tunewise/gpus.yaml (default A100-80GB).")] = None,
    gpus: Annotated[int, typer.Option(help="Data-parallel GPUs.")] = 1,
    precision: Annotated[str, typer.Option(help="bf16, fp16, mixed or fp32.")] = "bf16",
    optimizer: Annotated[str, typer.Option(help="adamw, adamw8bit, paged_adamw8bit or sgd.")] = "adamw",
    lora_r: Annotated[int, typer.Option(help="LoRA rank (all linear layers adapted).")] = 8,
    examples: Annotated[int | None, typer.Option(help="Training examples, for time and cost.")] = None,
    epochs: Annotated[float, typer.Option(help="Epochs, for time and cost.")] = 1.0,
    break_even: Annotated[bool, typer.Option(
        "--break-even", help="Requests after which the project's trained rungs repay their training, "
                           "priced by its `cost:` section (--gpu: priced as that GPU).")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Estimate peak memory, fit, speed, time and cost before training; --break-even: when fine-tuning pays off."""
    import json

    from tunewise.evaluate import cost as be
    from tunewise.plan import estimate as est

    if break_even:
        from tunewise import locate

        found = locate.ladder(project)
        console.print(found.line(), highlight=False, markup=False, soft_wrap=True)
        result = be.project_break_even(project, found.data, gpu)
        text = json.dumps(result, indent=2) if json_ else "\n".join(be.render_break_even_md(result))
        out.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    if not model:
        raise est.PlanError("--model is required: a size (8b), a family (llama-3.1-8b), a bundled alias or a folder")
    setup = est.Setup(method=method, seq_len=seq_len, batch=batch, precision=precision, optimizer=optimizer,
                      lora_r=lora_r, gpus=gpus)
    result = est.estimate(model, setup, gpu or "A100-80GB", examples, epochs)
    text = json.dumps(result.to_dict(), indent=2) if json_ else "\n".join(est.render_text(result))
    out.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command("inspect-model")
@friendly
def inspect_model(
    model: Annotated[str, typer.Argument(help="A local model folder, a .gguf file or a bundled alias.")],
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Readiness report: architecture, size, context, chat template, tokens, PEFT targets, weight format, licence."""
    import json

    from tunewise.models.inspect import inspect_model as inspect_
    from tunewise.models.inspect import render_text

    with progress_bars(quiet) as progress:  # a GGUF is converted once, on stderr; the report goes to stdout
        report = inspect_(model, progress=progress)
    text = json.dumps(report.to_dict(), indent=2) if json_ else "\n".join(render_text(report))
    out.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command()
@friendly
def audit(
    project: ProjectArg = Path("."),
    data: Annotated[list[Path] | None, typer.Option("--data", help="Data file(s) to audit instead of the config's.")] = None,
    test: Annotated[Path | None, typer.Option(help="A test file to check for leakage from the training data.")] = None,
    input_field: Annotated[str | None, typer.Option(help="Field holding the input.")] = None,
    target_field: Annotated[str | None, typer.Option(help="Field holding the target.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Flag rows longer than this many tokens.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Where to write audit.json.")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Where to write audit.html.")] = None,
    fail_on: Annotated[str | None, typer.Option(help="Comma-separated checks that fail the run when their count > 0.")] = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Audit the data before any training: duplicates, conflicts, PII, leakage, mislabels, and more."""
    from rich.table import Table

    from tunewise.data.audit import audit_project, check_fail_on, gate, summary_rows
    from tunewise.report.audit_html import render_audit

    gates = [c.strip() for c in fail_on.split(",") if c.strip()] if fail_on else []
    check_fail_on(gates)  # a misspelt check fails now, not after the whole audit
    if json_path is None or html_path is None:
        _writable(project)
    _setup_logging(quiet)
    with progress_bars(quiet) as progress:
        result, json_file, html_file = audit_project(
            project, [str(d) for d in data] if data else None, str(test) if test else None, input_field, target_field,
            max_tokens, json_path, html_path, set_, progress=progress, render_html=render_audit)
    table = Table(title=f"audit: {result['rows']} rows")
    for col in ("check", "count", "detail"):
        table.add_column(col)
    for row in summary_rows(result):
        table.add_row(*row)
    out.print(table)
    for warning in result.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    out.print(f"audit: {json_file}\nhtml: {html_file}")
    if result["usable_rows"] == 0:
        from tunewise.data.load import DataError

        raise DataError(f"no usable rows: {' | '.join(result['hints'])}; rejects: {json_file.parent / 'rejects.jsonl'}")
    for hint in result.get("hints", []):
        console.print(f"[yellow]hint:[/] {hint}", highlight=False, soft_wrap=True)
    gate(result, gates)


@app.command()
@friendly
def prepare(project: ProjectArg = Path("."), set_: SetOpt = None, quiet: QuietOpt = False,
            resplit: Annotated[bool, typer.Option(help="Split afresh, forgetting which part earlier rows were in: "
                                                  "comparisons with earlier reports become void.")] = False) -> None:
    """Clean, redact and split the data by the config's policy into a versioned dataset folder.

    Rows split before stay in their part (train, val or test); only new rows are split."""
    from tunewise.config import load_config
    from tunewise.data.frozen import summary_lines
    from tunewise.data.prepare import prepare_project

    config = load_config(project, set_)
    _writable(project)
    _setup_logging(quiet)
    with progress_bars(quiet) as progress:
        folder, manifest = prepare_project(config, project, progress=progress, resplit=resplit)
    for hint in manifest.get("hints", []):
        console.print(f"[yellow]hint:[/] {hint}", highlight=False, soft_wrap=True)
    counts = manifest["counts"]
    ood = f", ood {counts['ood']}" if "ood" in counts else ""
    out.print(f"dataset {manifest['hash'][:16]}: train {counts['train']}, val {counts['val']}, test {counts['test']}{ood}, "
              f"rejected {counts['rejected']}\n{folder}")
    for line in summary_lines(manifest["frozen_split"]):
        out.print(line, highlight=False, soft_wrap=True)


review_app = typer.Typer(help="The expert review loop: export flagged rows, import corrections.", no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("export")
@friendly
def review_export(
    project: ProjectArg = Path("."),
    output: Annotated[Path | None, typer.Option("--out", help="CSV to write (default: .tunewise/reviews/review.csv).")] = None,
    set_: SetOpt = None,
    pool: Annotated[Path | None, typer.Option(help="Unlabelled rows (JSONL/CSV with the input field): pick which "
                                              "to label next instead of exporting flagged rows.")] = None,
    n: Annotated[int | None, typer.Option("-n", help="With --pool: how many rows to pick.")] = None,
    strategy: Annotated[str, typer.Option(help="With --pool: uncertainty (the model is least sure), diverse "
                                          "(cover the embedding space) or random.")] = "uncertainty",
    quiet: QuietOpt = False,
) -> None:
    """Write a CSV of flagged rows plus the review sample, with an empty corrected_target column.

    It uses the newest audit of the same data and config, and audits only when there is none. With
    --pool it picks which unlabelled rows to label next instead."""
    if pool is not None:
        return _review_export_pool(project, pool, n, strategy, output, set_)
    from tunewise.data.prepare import export_project_review
    from tunewise.report.audit_html import render_audit

    if output is None:
        _writable(project)
    _setup_logging(quiet)
    with progress_bars(quiet) as progress:
        path, n, audit_file, reused = export_project_review(project, output, set_, progress, render_audit)
    console.print(f"{'using the audit' if reused else 'no audit matched this data and config; audited now:'} "
                  f"{audit_file}", highlight=False, soft_wrap=True)
    out.print(f"wrote {n} rows to {path}; fill in corrected_target (or DROP), then: "
              f"tunewise review import {path} {project}", highlight=False, soft_wrap=True)


def _review_export_pool(project: Path, pool: Path, n: int | None, strategy: str, output: Path | None,
                        set_: list[str] | None) -> None:
    from tunewise.config import load_config
    from tunewise.curve import export_pool_review

    config = load_config(project, set_)
    _writable(project)
    _setup_logging(True)  # warnings still show: a too-early uncertainty pick, a pool smaller than -n
    path, s = export_pool_review(config, project, pool, n, strategy, output)
    out.print(f"picked {s['picked']} of {s['pool_rows']} pool rows by {strategy} ({s['model']}); left out "
              f"{s['pool_near_duplicates']} near-duplicates within the pool, {s['near_duplicates_of_labelled']} of rows "
              f"already labelled, {len(s['skipped_empty'])} empty, {len(s['skipped_labelled'])} that hold a target; "
              f"PII redacted in {s['pii_redacted']}. Wrote {path}: "
              "fill in corrected_target, then add the rows to your data", highlight=False, soft_wrap=True)


@review_app.command("import")
@friendly
def review_import(
    file: Annotated[Path, typer.Argument(help="The filled-in review CSV.")],
    project: ProjectArg = Path("."),
    set_: SetOpt = None,
) -> None:
    """Record the corrections of a review CSV; `tunewise prepare` applies them."""
    from tunewise.data.prepare import import_project_review
    from tunewise.monitor.loop import is_served_review

    if is_served_review(file):  # written by `tunewise monitor --export-review`: new labelled rows, not corrections
        from tunewise.config import load_config
        from tunewise.monitor.loop import import_served

        out.print(import_served(load_config(project, set_), project, file).line(project), highlight=False,
                  soft_wrap=True)
        return
    n, store = import_project_review(project, file, set_)
    out.print(f"recorded {n} corrections in {store}; run `tunewise prepare {project}` to apply them",
              highlight=False, soft_wrap=True)


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

    _check_choice("--method", method, _methods(), "train.method")
    _check_choice("--strategy", strategy, _strategies())
    load_config(project, set_)  # fail on a bad config before any model is loaded
    _writable(project)
    _setup_logging(quiet)
    if nproc > 1 or nnodes > 1 or strategy != "ddp":
        from tunewise.train.launch import launch

        run_dir = launch(project, method, nproc, set_ or [], resume, run, strategy, nnodes, node_rank, master)
    else:
        from tunewise.train.run import train_project

        with progress_bars(quiet) as progress:
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

    _check_choice("--method", method, _methods(), "train.method")
    load_config(project, set_)
    _writable(project)
    _setup_logging(quiet)
    from tunewise.train.sweep import run_sweep

    folder = run_sweep(project, trials, method, set_ or [])
    out.print(f"sweep: {folder / 'sweep.json'}")


def main() -> None:
    from tunewise import interrupt

    interrupt.install()  # also when called as tunewise.cli.main (tunewise.__main__ installs it earlier)
    try:
        import warnings

        from tunewise.assets import offline

        offline()
        # Deprecation chatter from the libraries underneath says nothing a user can act on.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        app()
    except KeyboardInterrupt:  # before a command's own handler is in place (start-up, argument parsing)
        console.print(f"[yellow]interrupted[/] ({interrupt.signal_name()})")
        sys.exit(interrupt.exit_code())


# Imported last so that `tunewise --help` lists the lifecycle commands (monitor, serve, ui, export)
# after the stages above; they register on the same app.
from tunewise import cli_lifecycle  # noqa: F401

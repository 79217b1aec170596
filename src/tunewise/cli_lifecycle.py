"""The lifecycle after the ladder: serve what was measured, export it, monitor it, and the web app.

These commands register on the one Typer app of tunewise.cli_common; tunewise.cli imports this
module at its end, so `tunewise --help` lists them with the rest. They are here only to keep each
file readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunewise.cli_common import ProjectArg, QuietOpt, SetOpt, _setup_logging, _writable, app, console, friendly, out


@app.command()
@friendly
def monitor(
    project: ProjectArg = Path("."),
    log: Annotated[Path, typer.Option(help="The request log: the server's SQLite file or a JSONL of inputs.")] = ...,
    since: Annotated[str | None, typer.Option(help="Only requests at or after this ISO time.")] = None,
    labeled: Annotated[Path | None, typer.Option(help="Labelled requests (the project's input/target fields): "
                                                 "accuracy re-measured against the ladder's.")] = None,
    export_review: Annotated[int | None, typer.Option(min=1, help="Write a review CSV for `tunewise review import`: "
                                                      "the N requests most worth labelling (rows to train on) and a "
                                                      "random sample of N (the only rows fit to test on).")] = None,
    set_: SetOpt = None,
) -> None:
    """Compare served inputs with the training data per time window; exit 0 stable, 3 retrain, 4 watch.

    Calibrated on the ladder whose rungs were served (recorded beside the server's log, else the newest
    finished ladder); refused (exit 2) when that ladder was measured on another test split."""
    from tunewise.config import load_config

    config = load_config(project, set_)
    _writable(project)
    from tunewise.monitor.run import monitor_project, summary_line

    folder, result = monitor_project(config, project, log, since, labeled, export_review,
                                     lambda msg: console.print(msg, highlight=False, markup=False, soft_wrap=True))
    out.print(summary_line(result), highlight=False)
    for why in result["why"][:8]:
        out.print(f"  {why}", highlight=False, markup=False)
    if "review_export" in result:
        from tunewise import workspace as ws

        x, path = result["review_export"], ws.resolve(project, result["review_export"]["path"])
        out.print(f"review: {x['rows']} requests in {path}; fill in corrected_target, then: "
                  f"tunewise review import {path} {project}", highlight=False)
    out.print(f"monitor: {folder / 'monitor.json'}\nhtml: {folder / 'monitor.html'}")
    raise typer.Exit(result["exit_code"])


@app.command()
@friendly
def serve(
    targets: Annotated[list[Path] | None, typer.Argument(
        help="A project (serves the rungs of its newest finished ladder) or run folders.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token: Annotated[str | None, typer.Option(envvar="TUNEWISE_API_TOKEN",
                                              help="Bearer token every request must carry.")] = None,
    engine: Annotated[str, typer.Option(help="builtin, or vllm: the plain LoRA adapters of generation rungs run on "
                                        "vLLM's OpenAI server (needs vllm and a GPU) behind this server; every "
                                        "other rung stays on the built-in engine, named at start-up.")] = "builtin",
    vllm_timeout: Annotated[float, typer.Option(help="Seconds --engine vllm waits for vLLM to be ready.")] = 900.0,
    quiet: QuietOpt = False,
) -> None:
    """Serve saved rungs behind an OpenAI-compatible API (/v1/chat/completions, /v1/completions,
    /v1/models, /v1/classify, /health, /metrics); model ids are <project>/<rung>."""
    from tunewise.serve.app import build, check_bind, run

    check_bind(host, token)
    _setup_logging(quiet)
    if engine not in ("builtin", "vllm"):
        raise typer.BadParameter(f"expected builtin or vllm, got {engine!r}", param_hint="--engine")
    from tunewise import locate

    for target in targets or [Path(".")]:
        if (Path(target) / "tunewise.yaml").exists():
            console.print(f"{target}: {locate.ladder(target).line()}", highlight=False, markup=False, soft_wrap=True)
    if engine == "vllm":
        _serve_vllm(targets or [Path(".")], token, host, port, vllm_timeout)
        return
    app_ = build(targets or [Path(".")], token, host)
    out.print(f"serving {', '.join(app_.state.served)} on http://{host}:{port}/v1 (Ctrl-C stops)")
    run(app_, host, port)


def _serve_vllm(targets: list[Path], token: str | None, host: str, port: int, timeout: float) -> None:
    """vLLM's children started from the plan, tunewise's front before them; the children stop with it."""
    from tunewise import workspace as ws
    from tunewise.rungs.state import project_of
    from tunewise.serve.app import build, run
    from tunewise.serve.registry import expand_targets, load_served
    from tunewise.serve.vllm import builtin_line, plan_or_refuse, running

    folder = ws.workspace(project_of(expand_targets(targets)[0])) / "serve"
    served = load_served(targets)
    plan = plan_or_refuse(served, folder, port, host)
    if plan["ports_in_use"]:
        out.print(f"ports in use, passed over for vLLM: {', '.join(map(str, plan['ports_in_use']))}", highlight=False)
    for p in plan["processes"]:
        out.print(f"vLLM on 127.0.0.1:{p['port']}: {', '.join(p['adapters'])} (base {p['base']}); starting, up to "
                  f"{timeout:.0f} s", highlight=False, soft_wrap=True)
    out.print(f"on the built-in engine: {builtin_line(plan)}", highlight=False, soft_wrap=True)
    with running(plan, folder / "vllm", timeout) as engines:
        app_ = build(targets, token, host, served=served, engines=engines)
        out.print(f"serving {', '.join(app_.state.served)} on http://{host}:{port}/v1 (Ctrl-C stops it and vLLM)")
        run(app_, host, port)


@app.command()
@friendly
def ui(
    projects: Annotated[list[Path] | None, typer.Argument(help="Project folders (default: the current one).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token: Annotated[str | None, typer.Option(envvar="TUNEWISE_UI_TOKEN",
                                              help="Token every request must carry (?token= once sets a cookie).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """A local web app: projects, data findings, the review queue, rungs compared side by side, ladder
    jobs and the monitor, in the browser."""
    from tunewise.serve.app import is_loopback
    from tunewise.serve.registry import ServeError
    from tunewise.ui.app import create_app, project_names, run

    if not is_loopback(host) and not token:
        raise ServeError(f"--host {host} is reachable from other machines: give --token (or set "
                         "TUNEWISE_UI_TOKEN) so that every request must carry it")
    _setup_logging(quiet)
    found = project_names(projects or [Path(".")])
    # On loopback the Host header must name this machine (a web page cannot reach the app through DNS
    # rebinding); on any other address the token guards every request.
    hosts = ["127.0.0.1", "localhost", "::1", "[::1]", host] if is_loopback(host) else ["*"]
    app_ = create_app(found, token, hosts)
    out.print(f"tunewise ui: {', '.join(found)} on http://{host}:{port}/{f'?token={token}' if token else ''} "
              "(Ctrl-C stops)", highlight=False, soft_wrap=True)
    run(app_, host, port)


@app.command()
@friendly
def export(
    run: Annotated[Path, typer.Argument(help="A trained run folder (.tunewise/runs/<rung>-<time>).")],
    merge: Annotated[bool, typer.Option(help="Merge the adapter into its base (needed for GGUF).")] = False,
    format_: Annotated[str, typer.Option("--format", help="safetensors or gguf (Llama-family models).")] = "safetensors",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (default: RUN/export); must be new "
                                                 "or empty unless --force.")] = None,
    force: Annotated[bool, typer.Option(help="Write into a folder that holds files: replace only the entries export "
                                        "writes (adapter/, model/, *.gguf, DEPLOY.md, MODEL_CARD.md, Modelfile, "
                                        "export.json); everything else there is kept.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a trained run (adapter, merged safetensors or GGUF) with DEPLOY.md and MODEL_CARD.md,
    after checking that it reproduces the trained model and its training prompt token for token."""
    _setup_logging(quiet)
    from tunewise import locate
    from tunewise.export.run import export_run

    found = locate.ladder_of_run(run)
    console.print(found.line("the newest finished ladder that lists this run") if found else
                  f"using no ladder: no finished ladder lists {run}; the export is checked on fixed probes",
                  highlight=False, markup=False, soft_wrap=True)
    folder = export_run(run, merge, format_, out_dir, force)
    out.print(f"exported to {folder} (checks: {folder / 'export.json'}; next: {folder / 'DEPLOY.md'})")

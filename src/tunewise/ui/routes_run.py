"""The Compare, Ladder and Monitor pages: rungs answering side by side, ladder jobs, drift."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from tunewise.config import ConfigError
from tunewise.models.load import ModelError
from tunewise.rungspec import NAMES, RUNGS
from tunewise.ui import pages

log = logging.getLogger(__name__)


def loaded_rungs(ui, name: str) -> tuple[str | None, dict]:
    """The saved rungs of the project's ladder in use (tunewise.locate: the one serve and monitor use),
    loaded once per ladder (shared bases)."""
    from tunewise import locate
    from tunewise.serve.registry import load_served

    found = locate.find_ladder(ui.project(name))
    if found is None:
        return None, {}
    with ui.model_lock:
        cached = ui.served.get(name)
        if cached is None or cached[0] != found.name:
            log.info("%s: %s", name, found.line())
            ui.served[name] = cached = (found.name, load_served(found.runs()))
    return cached


def test_rows(project: Path, limit: int = 50) -> list[dict]:
    """The first rows of the test split of the dataset prepared for this config (tunewise.locate;
    empty when none is prepared)."""
    from tunewise import locate
    from tunewise.config import load_config
    from tunewise.data.prepare import read_part

    data = locate.dataset(load_config(project), project)
    if data is None:
        return []
    return [{"id": r.id, "input": r.input if isinstance(r.input, str) else json.dumps(r.input), "target": r.target,
             "messages": r.meta.get("messages")} for r in read_part(data.folder, "test")[:limit]]


def answers(ui, served: dict, text: str, messages: list[dict] | None = None) -> list[dict]:
    """Every rung's answer to one input, rendered as the server renders a request: a rung measured
    on chat rows gets the turns (a chat test row's own, or the text as one user turn)."""
    from tunewise.data.load import check_messages, transcript
    from tunewise.rungs.saved import label_probabilities, request_record

    out = []
    with ui.model_lock:  # one model call at a time: rungs share a base model
        for model_id, s in served.items():
            if s.chat:
                turns = check_messages(messages or [{"role": "user", "content": text}])
                record = request_record(transcript(turns), turns)
            else:
                record = request_record(text)
            started = time.perf_counter()
            with s.context():
                pred = s.rung.predict([record])[0]
            probs = label_probabilities(pred.scores) if pred.scores else {}
            out.append({"rung": model_id.split("/", 1)[-1], "output": pred.output,
                        "probs": sorted(probs.items(), key=lambda kv: -kv[1]),
                        "latency_ms": round(1000 * (time.perf_counter() - started), 1)})
    return out


# --set keys a page may change: how rungs train and are scored. Paths (data.*, model.base,
# train.dpo.data, tracking URIs) stay as the project's tunewise.yaml sets them, so a page cannot
# point a job at a file outside the project.
SETTABLE = ("train.", "eval.", "few_shot.", "rag.", "prepare.", "cost.")
UNSETTABLE = ("train.dpo.", "train.tracking", "train.mlflow")


def check_job_args(rungs: list[str], overrides: list[str]) -> None:
    for r in rungs:
        if r not in RUNGS:  # the table of rungs: refused here, not by a ladder process started for nothing
            raise HTTPException(400, f"rung {r!r}: expected one of the rungs {', '.join(NAMES)}")
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        if "=" not in o or not re.fullmatch(r"[a-z_][a-z0-9_.]*", key):
            raise HTTPException(400, f"--set {o!r}: expected KEY=VALUE, e.g. train.epochs=2")
        if not key.startswith(SETTABLE) or key.startswith(UNSETTABLE):
            raise HTTPException(400, f"--set {key}: the page may only change {', '.join(k + '*' for k in SETTABLE)} "
                                     "(paths stay as tunewise.yaml sets them); run `tunewise ladder` for the rest")


def add_run_routes(app, ui, page) -> None:
    @app.get("/p/{name}/compare", response_class=HTMLResponse)
    def compare_form(request: Request, name: str, text: str = ""):
        """The form only: asking loads models, so it is a POST with the page's CSRF token."""
        return page(request, "compare.html", name=name, rows=test_rows(ui.project(name)), text=text, picked=None,
                    ladder=None, answers=[], error=None)

    @app.post("/p/{name}/compare", response_class=HTMLResponse)
    async def compare(request: Request, name: str):
        form = await ui.form(request)  # 403 without the page's CSRF token
        project = ui.project(name)
        rows = test_rows(project)
        row = form.get("row", "")
        picked = next((r for r in rows if r["id"] == row), None)
        if row and picked is None:
            raise HTTPException(404, "no test row with that id")
        text = picked["input"] if picked else form.get("text", "")
        if not text.strip():
            raise HTTPException(400, "give an input text or pick a test row")
        try:
            ladder, served = await asyncio.to_thread(loaded_rungs, ui, name)
            found = await asyncio.to_thread(answers, ui, served, text, picked and picked["messages"]) if served else []
        except (ConfigError, ModelError, ValueError) as e:  # say which run or turn, keep the page
            return page(request, "compare.html", name=name, rows=rows, text=text, picked=picked, ladder=None,
                        answers=[], error=str(e).splitlines()[0])
        return page(request, "compare.html", name=name, rows=rows, text=text, picked=picked, ladder=ladder,
                    answers=found, error=None)

    @app.get("/p/{name}/ladder", response_class=HTMLResponse)
    def ladder(request: Request, name: str):
        from tunewise.config import load_config

        project = ui.project(name)
        summary, config = pages.project_summary(project), load_config(project)
        return page(request, "ladder.html", name=name, job=ui.jobs.get(name), rungs=list(config.rungs),
                    known=[s for s in RUNGS.values() if config.task.type in s.task_types],
                    task=config.task.type, ladders=summary["ladders"], in_use=summary["in_use"],
                    in_use_line=summary["in_use_line"])

    @app.post("/p/{name}/ladder")
    async def start(request: Request, name: str):
        form = await ui.form(request)
        project = ui.project(name)
        rungs = [r.strip() for r in form.get("rungs", "").replace(",", " ").split() if r.strip()]
        overrides = [s.strip() for s in form.get("set", "").splitlines() if s.strip()]
        check_job_args(rungs, overrides)
        job = ui.jobs.start(name, project, rungs, overrides, on_done=lambda: ui.served.pop(name, None))
        if job is None:
            raise HTTPException(409, "a ladder is already running on this project (here or in another tunewise ui); "
                                     "wait for it to finish or cancel it")
        return RedirectResponse(f"/p/{name}/ladder", 303)

    @app.post("/p/{name}/ladder/cancel")
    async def cancel(request: Request, name: str):
        await ui.form(request)
        ui.project(name)
        if not ui.jobs.cancel(name):
            raise HTTPException(409, "no ladder is running on this project")
        return RedirectResponse(f"/p/{name}/ladder", 303)

    @app.get("/p/{name}/ladder/events")
    async def events(request: Request, name: str):
        ui.project(name)

        async def stream():
            sent = 0
            while True:
                job = ui.jobs.get(name)
                lines = job.lines if job else []
                for line in lines[sent:]:
                    yield f"data: {json.dumps({'line': line})}\n\n"
                sent = len(lines)
                if job is None or job.state != "running":
                    end = {"state": job.state if job else "none", "report": job.report if job else None}
                    yield f"event: end\ndata: {json.dumps(end)}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/p/{name}/monitor", response_class=HTMLResponse)
    def monitor(request: Request, name: str):
        summary = pages.project_summary(ui.project(name))
        return page(request, "monitor.html", name=name, latest=summary["monitors"][0] if summary["monitors"] else None)

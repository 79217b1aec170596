"""The Data and Review queue pages: the latest audit's findings, and one decision per keystroke."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tunewise.ui import decisions as dec
from tunewise.ui import pages

LIMIT = 500  # rows on one Data page


def add_data_routes(app, ui, page) -> None:
    @app.get("/p/{name}/data", response_class=HTMLResponse)
    def data(request: Request, name: str, check: str = "", label: str = "", file: str = "", q: str = ""):
        audit_name, rows = ui.rows(name)
        matching = pages.filter_rows(rows, check, label, file, q)
        shown = matching[:LIMIT]  # a page a browser can hold; the filters narrow the rest
        return page(request, "data.html", name=name, audit=audit_name, rows=shown, total=len(rows),
                    matching=len(matching),
                    checks=sorted({f for r in rows for f in r["flags"]}), labels=sorted({r["target"] for r in rows}),
                    files=sorted({r["source"].rsplit(":", 1)[0] for r in rows}),
                    f={"check": check, "label": label, "file": file, "q": q})

    @app.get("/p/{name}/review", response_class=HTMLResponse)
    def review(request: Request, name: str, after: str = ""):
        from tunewise.config import load_config

        project = ui.project(name)
        audit_name, rows = ui.rows(name)
        decided = dec.read_decisions(project)
        pending = [r for r in rows if r["id"] not in decided]
        ids = [r["id"] for r in rows]
        start = ids.index(after) + 1 if after in ids else 0
        current = next((r for r in rows[start:] + rows[:start] if r["id"] not in decided and r["id"] != after),
                       None) or (pending[0] if pending else None)
        config = load_config(project)
        labels = config.task.labels if config.task.type == "classification" else []
        found = pages.latest_audit(project)
        annotators = found[1]["checks"].get("annotator_agreement") if found else None
        return page(request, "review.html", name=name, audit=audit_name, row=current, labels=labels,
                    annotators=annotators,
                    done=len(rows) - len(pending), total=len(rows), stats=dec.agreement(decided),
                    file=dec.review_file(project).relative_to(project), task=config.task.type)

    @app.post("/p/{name}/review")
    async def decide(request: Request, name: str):
        from tunewise.config import load_config
        from tunewise.data.review import DROP

        form = await ui.form(request)
        project = ui.project(name)
        _, rows = ui.rows(name)
        row = next((r for r in rows if r["id"] == form.get("id")), None)
        if row is None:
            raise HTTPException(404, "no flagged row with that id in the latest audit")
        action = form.get("action", "")
        if action == "skip":
            return RedirectResponse(f"/p/{name}/review?after={row['id']}", 303)
        config = load_config(project)
        corrected = {"accept": row["suggested_target"], "keep": row["target"], "drop": DROP,
                     "label": form.get("label", "").strip(), "edit": form.get("text", "").strip()}.get(action)
        if not corrected:
            raise HTTPException(400, f"action {action!r} needs a value (accept needs a suggestion, label a label)")
        labels = config.task.labels if config.task.type == "classification" else None
        if labels and corrected != DROP and corrected not in labels:
            raise HTTPException(400, f"{corrected!r} is not in task.labels ({', '.join(labels)})")
        dec.save_decision(project, {**row, "input": row["input"]}, action, corrected)
        return RedirectResponse(f"/p/{name}/review?after={row['id']}", 303)

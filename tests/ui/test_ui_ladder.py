"""A ladder started from the page runs as a background job, streams its progress, and one job per
project runs at a time."""

from __future__ import annotations

import fcntl
import json

import httpx
from ui_helpers import FAST, Server, csrf_of

from tunewise import locate
from tunewise import workspace as ws
from tunewise.ui.app import create_app, project_names


def test_a_ladder_job_started_from_the_page_runs_to_completion(tiny_project):
    name = tiny_project.name
    app = create_app(project_names([tiny_project]))
    with Server(app) as s, httpx.Client(base_url=s.root, timeout=300) as c:
        page = c.get(f"/p/{name}/ladder").text
        assert "No ladder" in c.get(f"/p/{name}").text
        form = {"rungs": "zero-shot", "set": "\n".join(FAST), "csrf": csrf_of(page)}
        assert c.post(f"/p/{name}/ladder", data=form, follow_redirects=False).status_code == 303
        lines, end = [], None
        with c.stream("GET", f"/p/{name}/ladder/events") as events:
            for raw in events.iter_lines():
                if raw.startswith("data: "):
                    data = json.loads(raw[6:])
                    if "state" in data:
                        end = data
                        break
                    lines.append(data["line"])
        assert end == {"state": "done", "report": locate.ladder(tiny_project).name}, lines
        assert any(line.split(" ", 1)[1].startswith("$ tunewise ladder") for line in lines), lines
        assert any(f"ladder done (exit 0); report {end['report']}" in line for line in lines), lines
        page = c.get(f"/p/{name}/ladder").text
        assert f'/p/{name}/reports/{end["report"]}/report.html' in page
        assert "zero-shot" in c.get(f"/p/{name}/reports/{end['report']}/report.html").text
        app.state.ui.jobs.get(name).state = "running"  # as if still running: a second start is refused
        again = c.post(f"/p/{name}/ladder", data=form)
        assert again.status_code == 409 and "already running" in again.text


def test_a_running_ladder_can_be_cancelled(tiny_project):
    name = tiny_project.name
    with Server(create_app(project_names([tiny_project]))) as s, httpx.Client(base_url=s.root, timeout=300) as c:
        csrf = csrf_of(c.get(f"/p/{name}/ladder").text)
        assert c.post(f"/p/{name}/ladder/cancel", data={"csrf": csrf}).status_code == 409  # nothing runs yet
        form = {"rungs": "zero-shot,lora", "set": "train.max_steps=50", "csrf": csrf}
        ws.workspace(tiny_project).mkdir(exist_ok=True)
        with open(ws.workspace(tiny_project) / ".ui-ladder.lock", "w") as held:  # as another server would
            fcntl.flock(held, fcntl.LOCK_EX)
            refused = c.post(f"/p/{name}/ladder", data=form)
        assert refused.status_code == 409 and "already running" in refused.text
        assert c.post(f"/p/{name}/ladder", data=form, follow_redirects=False).status_code == 303
        assert "Cancel" in c.get(f"/p/{name}/ladder").text
        assert c.post(f"/p/{name}/ladder/cancel", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        with c.stream("GET", f"/p/{name}/ladder/events") as events:
            end = next(json.loads(raw[6:]) for raw in events.iter_lines()
                       if raw.startswith("data: ") and "state" in json.loads(raw[6:]))
        assert end["state"] == "cancelled"

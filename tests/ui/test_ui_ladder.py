"""A ladder started from the page runs as a background job, streams its progress, and one job per
project runs at a time."""

from __future__ import annotations

import json

import httpx
from conftest import FAST, Server, csrf_of

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
        assert end == {"state": "done", "report": ws.latest_dir(tiny_project, "reports").name}, lines
        assert any(line.split(" ", 1)[1].startswith("ladder started") for line in lines)
        assert any("ladder finished" in line for line in lines)
        page = c.get(f"/p/{name}/ladder").text
        assert f'/p/{name}/reports/{end["report"]}/report.html' in page
        assert "zero-shot" in c.get(f"/p/{name}/reports/{end['report']}/report.html").text
        app.state.ui.jobs.get(name).state = "running"  # as if still running: a second start is refused
        again = c.post(f"/p/{name}/ladder", data=form)
        assert again.status_code == 409 and "already running" in again.text

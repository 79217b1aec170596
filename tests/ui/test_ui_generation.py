"""A generation project: the review queue edits the target text; the data page works without labels."""

from __future__ import annotations

import csv
import json

import httpx
from ui_helpers import Server, csrf_of

from tunewise import workspace as ws
from tunewise.data.audit import audit_project
from tunewise.ui.app import create_app, project_names


def test_an_edited_answer_is_saved_for_a_generation_project(tmp_path, tiny_model_dir):
    project = tmp_path / "gen"
    (project / "data").mkdir(parents=True)
    rows = [{"id": str(i), "input": f"question {i} about the market", "target": f"answer {i}"} for i in range(30)]
    (project / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (project / "tunewise.yaml").write_text(f"""name: gen
task: {{type: generation, instruction: answer}}
data: {{files: [data/rows.jsonl], split: {{train: 0.6, val: 0.2, test: 0.2}}, seed: 1}}
model: {{base: {tiny_model_dir}}}
rungs: [zero-shot]
""")
    audit_project(project)
    with Server(create_app(project_names([project]))) as s, httpx.Client(base_url=s.root) as c:
        assert "in the random review sample" in c.get("/p/gen/data").text
        page = c.get("/p/gen/review").text
        assert "Corrected text" in page and "accept suggestion" not in page
        rid = page.split('name="id" value="')[1].split('"')[0]
        r = c.post("/p/gen/review", data={"id": rid, "action": "edit", "text": "a better,\nlonger answer",
                                          "csrf": csrf_of(page)}, follow_redirects=False)
        assert r.status_code == 303
        blank = c.post("/p/gen/review", data={"id": rid, "action": "edit", "text": " ", "csrf": csrf_of(page)})
        assert blank.status_code == 400
    saved = {row["id"]: row for row in csv.DictReader((ws.workspace(project) / "reviews" / "ui-review.csv").open())}
    assert saved[rid]["corrected_target"] == "a better,\nlonger answer" and saved[rid]["decision"] == "edit"
    store = json.loads((ws.workspace(project) / "reviews" / "corrections.json").read_text())
    assert store[rid] == saved[rid]["corrected_target"]

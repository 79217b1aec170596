"""The run folders of a project's latest ladder are found whatever folder the ladder ran from."""

from __future__ import annotations

import json

from tunewise import workspace as ws
from tunewise.serve.registry import runs_of_project


def test_run_dirs_recorded_relative_to_another_folder_are_found_by_name(tmp_path):
    project = tmp_path / "bbc"
    run = ws.new_dir(project, "runs", "zero-shot-1")
    report = ws.new_dir(project, "reports", "20260101-000000-000000")
    # `tunewise ladder bbc` run from tmp_path records the run as reached from there
    (report / "ladder.json").write_text(json.dumps({"rungs": [{"rung": "zero-shot", "run_dir": "bbc/.tunewise/runs/zero-shot-1"}]}))
    assert runs_of_project(project) == [run]

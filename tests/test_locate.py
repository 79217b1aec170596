"""One locator (tunewise.locate): serve, monitor, export, report and the web app use the same ladder
(the newest finished one), say which and record it; monitor refuses a ladder measured on another
test split; paths in artefacts are relative to the project, so a moved project still finds its runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import pytest
import torch
from loopback import Server
from tiny import TOPICS, write_tiny_project
from typer.testing import CliRunner

from tunewise import locate
from tunewise import workspace as ws
from tunewise.cli import app
from tunewise.config import load_config
from tunewise.ladder import run_ladder

runner = CliRunner()
# Fast training; the test split is left whole, as tunewise.yaml sets it, so the monitor (run with
# tunewise.yaml alone) scores the same test split as the ladder.
FAST = ["train.max_steps=2", "train.eval_steps=2", "train.batch_size=4", "train.max_val_examples=4",
        "train.max_train_examples=12", "eval.bootstrap=100"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory, tiny_model_dir, tiny_encoder_dir):
    """A tiny project with one finished ladder (zero-shot, lora). Tests copy it before changing it."""
    torch.set_num_threads(1)
    project = write_tiny_project(tmp_path_factory.mktemp("locate") / "proj", tiny_model_dir,
                                 extra=f"encoder: {{model: {tiny_encoder_dir}, max_seq_length: 16}}\n"
                                       "monitor: {min_window: 10, permutations: 100}\n")
    run_ladder(load_config(project, FAST), project, ["zero-shot", "lora"])
    return project


def copy(project, dest):
    shutil.copytree(project, dest)
    return dest


def request_log(path, model="lora", n=30):
    """A JSONL request log of ``n`` in-distribution inputs answered by ``model`` with probabilities."""
    labels = list(TOPICS)
    rows = [{"ts": f"2026-01-01T00:{i:02d}:00Z", "model": model, "input": f"the {TOPICS[labels[i % 3]]}",
             "probs": {lab: 0.8 if k == i % 3 else 0.1 for k, lab in enumerate(labels)}} for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def newest_monitor(project) -> dict:
    return json.loads(max((ws.workspace(project) / "monitor").glob("2*/monitor.json")).read_text())


def test_every_command_uses_the_newest_finished_ladder(measured, tmp_path, monkeypatch):
    project = copy(measured, tmp_path / "proj")
    finished = locate.ladder(project)
    used = f"using ladder .tunewise/reports/{finished.name}/"
    reports = ws.workspace(project) / "reports"
    # Newer than it: a ladder stopped by Ctrl-C (listing the same runs) and one still running.
    stopped = reports / "29990101-000000-000000"
    stopped.mkdir()
    (stopped / "ladder.json").write_text(json.dumps({**finished.data, "status": "interrupted"}))
    (reports / "29990102-000000-000000").mkdir()
    lora = ws.resolve(project, finished.rung("lora")["run_dir"])

    # report: rebuilds the finished ladder's files and says which, and what it passed over.
    res = runner.invoke(app, ["report", str(project)])
    assert res.exit_code == 0, res.output
    assert used in res.output and "29990101-000000-000000 (status interrupted)" in res.output
    assert "29990102-000000-000000 (no ladder.json" in res.output
    assert f"report: {reports / finished.name / 'report.html'}" in res.output.replace("\n", "")  # rich wraps paths

    # serve: says which ladder, serves its runs, and records them beside its request log.
    monkeypatch.setattr("tunewise.serve.app.run", lambda *a, **k: None)  # build the app, do not listen
    res = runner.invoke(app, ["serve", str(project), "-q"])
    assert res.exit_code == 0, res.output
    assert used in res.output
    served = json.loads((ws.workspace(project) / "serve" / "served.json").read_text())["models"]
    assert set(served) == {"tiny/zero-shot", "tiny/lora"}
    assert {m["ladder"]["report"] for m in served.values()} == {f".tunewise/reports/{finished.name}"}
    assert served["tiny/lora"]["run"] == ws.stored(project, lora) and served["tiny/lora"]["run"].startswith(".tunewise/")
    from tunewise.serve.app import build

    with Server(build([project])) as s:
        models = httpx.get(f"{s.url}/models", timeout=60).json()["data"]
    assert {m["ladder"]["report"] for m in models} == {f".tunewise/reports/{finished.name}"}
    assert {m["ladder"]["test_hash"] for m in models} == {finished.test_hash}

    # monitor: a log beside the server's record calibrates on the ladder the server loaded ...
    log = request_log(ws.workspace(project) / "serve" / "log.jsonl")
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log)])
    assert res.exit_code in (0, 3, 4), res.output
    assert used in res.output and "the ladder the server loaded" in res.output
    result = newest_monitor(project)
    assert result["ladder"]["report"] == f".tunewise/reports/{finished.name}"
    assert result["reference"]["ladder"]["report"] == f".tunewise/reports/{finished.name}"
    assert result["ladder"]["test_hash"] == result["test_hash"] == finished.test_hash
    assert result["predictions"].startswith("probabilities from the request log")
    assert result["log"] == ".tunewise/serve/log.jsonl" and result["dataset"].startswith(".tunewise/datasets/")
    # ... and a log anywhere else on the newest finished ladder: the same one.
    res = runner.invoke(app, ["monitor", str(project), "--log", str(request_log(tmp_path / "elsewhere.jsonl"))])
    assert res.exit_code in (0, 3, 4), res.output
    assert used in res.output and "the newest finished ladder" in res.output
    assert newest_monitor(project)["ladder"]["report"] == f".tunewise/reports/{finished.name}"

    # export: the newest finished ladder that lists the run, not the interrupted one listing it too.
    res = runner.invoke(app, ["export", str(lora), "--out", str(tmp_path / "export"), "-q"])
    assert res.exit_code == 0, res.output
    assert used in res.output
    exported = json.loads((tmp_path / "export" / "export.json").read_text())
    assert exported["ladder"]["report"] == f".tunewise/reports/{finished.name}" and exported["prompts"] == "test split"
    assert exported["run"] == ws.stored(project, lora)
    # DEPLOY.md names the folder the export ended in, not the temporary one it was built in.
    assert f"--lora-modules tiny/lora={(tmp_path / 'export').resolve()}/adapter" in (tmp_path / "export" / "DEPLOY.md").read_text()

    # the web app: the ladder page and Compare show the same ladder's rungs.
    from tunewise.ui.app import create_app, project_names

    with Server(create_app(project_names([project]))) as s, httpx.Client(base_url=s.root, timeout=120) as c:
        ladder_page = c.get("/p/proj/ladder").text
        assert f"Ladder in use: {finished.name} (complete)" in ladder_page and used in ladder_page
        form = c.get("/p/proj/compare").text
        csrf = re.search(r'name="csrf" content="([0-9a-f]+)"', form).group(1)
        page = c.post("/p/proj/compare", data={"text": "the market shares", "csrf": csrf}).text
    assert f"Rungs of ladder {finished.name}" in page


def test_monitor_refuses_a_ladder_measured_on_another_test_split(measured, tmp_path):
    project = copy(measured, tmp_path / "proj")
    before = locate.ladder(project)
    lora = ws.resolve(project, before.rung("lora")["run_dir"])
    # A newer finished ladder scored a subset of the test split: another test split.
    res = runner.invoke(app, ["ladder", str(project), "--rungs", "zero-shot", "-q",
                              "--set", "eval.max_test_examples=6", "--set", "eval.bootstrap=100"])
    assert res.exit_code == 0, res.output
    newer = locate.ladder(project)
    data = locate.dataset(load_config(project), project)
    assert newer.name != before.name and newer.test_hash != data.test_hash
    log = request_log(tmp_path / "log.jsonl")
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log)])
    assert res.exit_code == 2, res.output
    assert newer.test_hash in res.output and data.test_hash in res.output and "Traceback" not in res.output
    assert f".tunewise/reports/{newer.name}/" in res.output
    assert not (ws.workspace(project) / "monitor").exists()  # refused before writing anything

    # The server that answered these requests loaded the older ladder, on this test split: the
    # monitor calibrates on that one (recorded beside the log), whatever ran since.
    locate.write_served(log, {"tiny/lora": locate.served_record(lora)})
    res = runner.invoke(app, ["monitor", str(project), "--log", str(log)])
    assert res.exit_code in (0, 3, 4), res.output
    result = newest_monitor(project)
    assert result["ladder"]["report"] == f".tunewise/reports/{before.name}" and "server loaded" in result["ladder"]["why"]


def test_a_moved_project_still_finds_its_runs(measured, tmp_path):
    first = copy(measured, tmp_path / "first")
    finished = locate.ladder(first)
    assert all(r["run_dir"].startswith(".tunewise/runs/") for r in finished.rungs())
    assert finished.data["dataset_dir"].startswith(".tunewise/datasets/")
    assert finished.data["dataset"]["dir"] == finished.data["dataset_dir"]
    # A ladder.json written before paths were relative named the runs as then reached: absolute.
    legacy = {**finished.data, "dataset_dir": str(first / finished.data["dataset_dir"]),
              "rungs": [{**r, "run_dir": str(first / r["run_dir"])} for r in finished.rungs()]}
    (finished.folder / "ladder.json").write_text(json.dumps(legacy))

    moved = copy(first, tmp_path / "elsewhere" / "moved")
    from tunewise.serve.registry import runs_of_project

    # While the old folder still exists, its absolute paths resolve into the copy, not back into it.
    runs = runs_of_project(moved)
    assert runs and all(r.is_dir() and r.is_relative_to(moved / ".tunewise" / "runs") for r in runs)
    shutil.rmtree(first)
    assert runs_of_project(moved) == runs
    lora = next(r for r in runs if r.name.startswith("lora-"))
    assert locate.ladder_of_run(lora).name == finished.name
    res = runner.invoke(app, ["monitor", str(moved), "--log", str(request_log(tmp_path / "log.jsonl"))])
    assert res.exit_code in (0, 3, 4), res.output
    result = newest_monitor(moved)
    assert result["predictions"].startswith("probabilities from the request log")  # the moved run's predictions
    assert f".tunewise/runs/{lora.name}/predictions.jsonl" in result["predictions"]
    res = runner.invoke(app, ["export", str(lora), "--out", str(tmp_path / "x"), "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "x" / "export.json").read_text())["prompts"] == "test split"  # its dataset found


def test_no_finished_ladder_is_one_error_naming_what_was_looked_for(tmp_path):
    reports = ws.workspace(tmp_path) / "reports"
    (reports / "20260101-000000-000000").mkdir(parents=True)
    (reports / "20260102-000000-000000").mkdir()
    (reports / "20260102-000000-000000" / "ladder.json").write_text('{"rungs": [], "status": "interrupted"}')
    (tmp_path / "tunewise.yaml").write_text("name: x\n")
    with pytest.raises(locate.LocateError) as e:
        locate.ladder(tmp_path)
    message = str(e.value)
    assert "no saved ladder" in message and "status complete or partial" in message
    assert "20260102-000000-000000 (status interrupted)" in message and "20260101-000000-000000 (no ladder.json" in message
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no saved ladder" in res.output and "Traceback" not in res.output


def test_recorded_paths_resolve_in_one_place(tmp_path):
    project = tmp_path / "p"
    run = ws.new_dir(project, "runs", "lora-1")
    assert ws.stored(project, run) == ".tunewise/runs/lora-1"
    assert ws.stored(project, tmp_path / "log.jsonl") == str((tmp_path / "log.jsonl").resolve())  # outside: absolute
    for recorded in (".tunewise/runs/lora-1", "p/.tunewise/runs/lora-1", "/old/home/p/.tunewise/runs/lora-1",
                     str(run)):
        assert ws.resolve(project, recorded) == ws.workspace(project) / "runs" / "lora-1", recorded
    assert ws.resolve(project, "data/a.jsonl") == project / "data" / "a.jsonl"
    assert ws.resolve(project, "/srv/logs/a.jsonl") == Path("/srv/logs/a.jsonl")

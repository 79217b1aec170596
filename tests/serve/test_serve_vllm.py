"""`--engine vllm`: the launch configuration it generates (adapters, rank, ports, which rungs stay on
the built-in engine and why), a refusal where vLLM cannot run, and, with a stand-in `vllm`
executable (no GPU here), the children started, waited for, relayed to behind the front and stopped."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from loopback import Server, free_port
from serve_projects import FAST, _generation_project

from tunewise.serve.vllm import SKIP_GPU_CHECK, launch_plan


def test_launch_plan_serves_lora_adapters_and_names_what_stays(served):
    gen_lora = dict(served)
    plan = launch_plan(served, port=9001)
    # the tiny projects' adapters are on a classification task: scored by label likelihood, so none go to vLLM
    assert plan["processes"] == []
    assert "label likelihood" in plan["builtin"]["tiny/lora"]
    assert "not a LoRA adapter" in plan["builtin"]["tiny-gen/zero-shot"]

    lora = served["tiny/lora"]
    for s in (lora, served["tiny/dora"]):  # the same adapters, as if trained on a generation task
        gen_lora[s.id] = dataclasses.replace(s, task="generation")
    plan = launch_plan(gen_lora, host="127.0.0.1", port=9001)
    (proc,) = plan["processes"]
    argv = proc["argv"]
    assert argv[:3] == ["vllm", "serve", proc["base"]] and "--enable-lora" in argv
    assert argv[argv.index("--port") + 1] == "9001" and proc["url"] == "http://127.0.0.1:9001/v1"
    module = argv[argv.index("--lora-modules") + 1]
    name, path = module.split("=", 1)
    config = json.loads((Path(path) / "adapter_config.json").read_text())
    assert name == "tiny/lora" and int(argv[argv.index("--max-lora-rank") + 1]) >= config["r"]
    assert argv[argv.index("--max-loras") + 1] == "1"
    assert "DoRA" in plan["builtin"]["tiny/dora"]  # vLLM serves plain LoRA only


def test_engine_vllm_without_a_gpu_refuses_and_writes_the_plan(served_projects):
    from typer.testing import CliRunner

    from tunewise.cli import app

    cls = served_projects[0]
    r = CliRunner().invoke(app, ["serve", str(cls), "--engine", "vllm"])
    assert r.exit_code == 2 and "--engine vllm:" in r.output and "nothing was started" in r.output
    assert "Traceback" not in r.output
    plan = json.loads((cls / ".tunewise" / "serve" / "vllm-launch.json").read_text())
    assert set(plan["builtin"]) == {"tiny/zero-shot", "tiny/lora", "tiny/dora"}


# --- `--engine vllm` running, with a stand-in `vllm` executable (tests/serve/fake_vllm.py) -------------
# No GPU here: the fake serves OpenAI-style endpoints on the port the plan gives it and records its
# argv and every request; tunewise's check for a GPU is skipped through SKIP_GPU_CHECK (for tests).

FAKE = Path(__file__).with_name("fake_vllm.py")


@pytest.fixture(scope="module")
def gen_lora(tmp_path_factory, tiny_model_dir):
    """A generation project whose ladder ran zero-shot and lora: the lora adapter is one vLLM serves."""

    from tunewise.config import load_config
    from tunewise.ladder import run_ladder

    project = _generation_project(tmp_path_factory.mktemp("vllm") / "gen", tiny_model_dir)
    run_ladder(load_config(project, FAST), project, ["zero-shot", "lora"])
    return project


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    """``vllm`` first on PATH; returns the folder where the fake records what it got."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "vllm").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    (bin_ / "vllm").chmod(0o755)
    record = tmp_path / "fake"
    record.mkdir()
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_VLLM_DIR", str(record))
    monkeypatch.setenv(SKIP_GPU_CHECK, "1")
    return record


def _requests(record: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(record.glob("requests-*.jsonl")) for line in f.read_text().splitlines()]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_front_relays_generation_to_vllm_and_keeps_the_rest(gen_lora, fake_vllm, tmp_path, monkeypatch):

    from tunewise.rungs.saved import request_record
    from tunewise.serve.app import build
    from tunewise.serve.registry import load_served
    from tunewise.serve.vllm import plan_or_refuse, running

    gate = tmp_path / "gate"
    monkeypatch.setenv("FAKE_VLLM_GATE", str(gate))
    served = load_served([gen_lora])
    port = free_port()
    plan = plan_or_refuse(served, tmp_path / "serve", port - 1)
    assert set(plan["builtin"]) == {"tiny-gen/zero-shot"}
    auth = {"Authorization": "Bearer sekrit"}
    chat = {"model": "tiny-gen/lora", "max_tokens": 3, "messages": [{"role": "user", "content": "the match news"}]}
    with running(plan, tmp_path / "serve" / "vllm", timeout=60) as engines, \
            Server(build([gen_lora], "sekrit", served=served, engines=engines)) as s:
        (launch,) = [json.loads(f.read_text()) for f in fake_vllm.glob("argv-*.json")]
        adapter = served["tiny-gen/lora"].run_dir / "adapter"
        assert launch["argv"] == ["vllm", "serve", plan["processes"][0]["base"], "--host", "127.0.0.1", "--port",
                                  str(port), "--enable-lora", "--max-lora-rank", "8", "--max-loras", "1",
                                  "--lora-modules", f"tiny-gen/lora={adapter.resolve()}"]
        assert launch["key"]  # the children demand a key only the front holds

        assert httpx.post(f"{s.url}/chat/completions", json=chat).status_code == 401  # auth is in front
        assert _requests(fake_vllm) == []
        r = httpx.post(f"{s.url}/chat/completions", json=chat, headers=auth, timeout=60).json()
        assert r["choices"][0]["message"]["content"] == "t1 t2 t3" and r["choices"][0]["finish_reason"] == "length"
        (sent,) = _requests(fake_vllm)
        rung = served["tiny-gen/lora"].rung
        assert sent["path"] == "/v1/completions" and sent["authorization"] == f"Bearer {engines.key}"
        assert sent["body"]["model"] == "tiny-gen/lora" and sent["body"]["temperature"] == 0
        assert sent["body"]["prompt"] == rung.prompt_ids([request_record("the match news")])[0]  # the rung's prompt
        assert sent["body"]["stop_token_ids"] == list(rung.builder().stop_ids)

        client = openai.OpenAI(base_url=s.url, api_key="sekrit", max_retries=0, timeout=120)
        pieces, opened = [], False
        for chunk in client.chat.completions.create(**{**chat, "max_tokens": 5}, stream=True,
                                                    stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                gate.touch()  # the fake sends the rest only once the first token reached the client
                opened = True
        assert opened and "".join(pieces) == "t1 t2 t3 t4 t5" and len(pieces) == 5
        assert chunk.usage.completion_tokens == 5
        assert _requests(fake_vllm)[-1]["gate"] == "opened"  # relayed as it came, not buffered

        text = httpx.post(f"{s.url}/completions", headers=auth, timeout=60,
                          json={"model": "tiny-gen/lora", "prompt": "the goal", "max_tokens": 2}).json()
        assert text["choices"][0]["text"] == "t1 t2"
        n = len(_requests(fake_vllm))
        builtin = httpx.post(f"{s.url}/chat/completions", headers=auth, timeout=60,
                             json={**chat, "model": "tiny-gen/zero-shot"})
        assert builtin.status_code == 200 and len(_requests(fake_vllm)) == n  # stays on the built-in engine
        bad = httpx.post(f"{s.url}/chat/completions", headers=auth, timeout=60,
                         json={**chat, "response_format": {"type": "json_object"}})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "answer_not_json"
        health = httpx.get(f"{s.root}/health").json()
        assert health["status"] == "ok" and health["vllm"][0]["running"]

        child = launch["pid"]
        os.kill(child, signal.SIGKILL)  # vLLM dies while serving: a 503 that says so, no internals
        engines.children[0].proc.wait(10)
        down = httpx.post(f"{s.url}/chat/completions", json=chat, headers=auth, timeout=60)
        assert down.status_code == 503 and down.json()["error"]["code"] == "engine_unavailable"
        assert "exited" in down.json()["error"]["message"] and "Traceback" not in down.text
        assert httpx.get(f"{s.root}/health").json()["status"] == "degraded"
    rows = sqlite3.connect(gen_lora / ".tunewise" / "serve" / "requests.sqlite").execute(
        "SELECT model, endpoint, status, input, output FROM requests ORDER BY id").fetchall()
    assert rows == [("tiny-gen/lora", "chat", 200, "the match news", "t1 t2 t3"),
                    ("tiny-gen/lora", "chat", 200, "the match news", "t1 t2 t3 t4 t5"),
                    ("tiny-gen/lora", "completions", 200, "the goal", "t1 t2"),
                    ("tiny-gen/zero-shot", "chat", 200, "the match news", rows[3][4]),
                    ("tiny-gen/lora", "chat", 422, "the match news", "t1 t2 t3")]


def test_nothing_for_vllm_to_serve_is_a_refusal_not_a_builtin_server(served, fake_vllm, tmp_path):
    from tunewise.serve.registry import ServeError
    from tunewise.serve.vllm import plan_or_refuse

    classifiers = {mid: s for mid, s in served.items() if s.task == "classification"}
    with pytest.raises(ServeError) as e:  # the command line turns it into one line and exit 2
        plan_or_refuse(classifiers, tmp_path, 9000)
    assert "no rung here is one vLLM serves" in str(e.value)
    assert "tiny/lora (classification is scored by label likelihood" in str(e.value)


def test_a_vllm_that_dies_or_hangs_at_start_is_a_clear_error(gen_lora, fake_vllm, monkeypatch):
    from typer.testing import CliRunner

    from tunewise.cli import app

    monkeypatch.setenv("FAKE_VLLM_DIE", "1")
    r = CliRunner().invoke(app, ["serve", str(gen_lora), "--engine", "vllm", "--port", "18431", "--vllm-timeout", "60"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "vllm serve" in r.output and "exited with code 1" in r.output
    assert "CUDA out of memory" in r.output  # the end of the child's own log
    assert "on the built-in engine: tiny-gen/zero-shot" in r.output

    monkeypatch.setenv("FAKE_VLLM_DIE", "0")
    monkeypatch.setenv("FAKE_VLLM_STALL", "1")
    r = CliRunner().invoke(app, ["serve", str(gen_lora), "--engine", "vllm", "--port", "18431", "--vllm-timeout", "1"])
    assert r.exit_code == 2 and "was not ready within 1 s" in r.output and "loading" in r.output, r.output
    (launch,) = [json.loads(f.read_text()) for f in fake_vllm.glob("argv-*.json")]
    assert _gone(launch["pid"])  # stopped, not left behind


def test_sigterm_stops_the_server_and_its_vllm_children(gen_lora, fake_vllm, tmp_path):

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "tunewise", "serve", str(gen_lora), "--engine", "vllm",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None or time.monotonic() >= deadline:
                proc.kill()
                raise AssertionError(f"the server did not start (exit {proc.poll()}):\n{proc.communicate()[0].decode()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").json()["vllm"][0]["running"]:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        (launch,) = [json.loads(f.read_text()) for f in fake_vllm.glob("argv-*.json")]
        assert not _gone(launch["pid"])
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _gone(launch["pid"]) and "Traceback" not in output, output


def test_ports_in_use_are_passed_over_for_vllm_and_a_busy_front_port_is_refused(gen_lora, fake_vllm, tmp_path):
    """The children take free ports after the front's, saying which were passed over; a front port in use is
    a refusal before vLLM (minutes of loading) is started."""
    import socket

    from tunewise.serve.registry import ServeError, load_served
    from tunewise.serve.vllm import plan_or_refuse

    served = load_served([gen_lora])
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):  # a free port whose next one is free too, held as the busy one
            port = free_port()
            try:
                busy.bind(("127.0.0.1", port + 1))
                break
            except OSError:
                continue
        busy.listen()
        plan = plan_or_refuse(served, tmp_path, port)
        assert plan["ports_in_use"] == [port + 1] and [p["port"] for p in plan["processes"]] == [port + 2]
        with pytest.raises(ServeError) as e:
            plan_or_refuse(served, tmp_path, port + 1)
    assert f"port {port + 1} on 127.0.0.1 is in use" in str(e.value) and "nothing was started" in str(e.value)
    assert plan_or_refuse(served, tmp_path, port)["ports_in_use"] == []

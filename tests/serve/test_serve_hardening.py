"""Each hardening rule of the server, hit once, with the response read."""

from __future__ import annotations

import hmac
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
from conftest import Server, free_port
from test_serve_limits import CHAT, _held, _wait

from tunewise.config import ServeConfig
from tunewise.serve.app import build, create_app


def test_metrics_labels_come_from_fixed_sets_never_from_requests(server):
    evil = 'x"} 1\ntunewise_pwned{a="'
    httpx.post(f"{server.url}/chat/completions", json={"model": evil, "messages": [{"role": "user", "content": "x"}]})
    for i in range(20):
        httpx.get(f"{server.root}/made-up-{i}-pwned")
    text = httpx.get(f"{server.root}/metrics").text
    assert "pwned" not in text and "made-up" not in text
    labels = {line.split("}")[0] for line in text.splitlines() if line.startswith("tunewise_requests_total{")}
    for label in labels:
        model = label.split('model="')[1].split('"')[0]
        endpoint = label.split('endpoint="')[1].split('"')[0]
        assert model in {"-", *server.app.state.served} and endpoint in {
            "chat", "completions", "classify", "models", "health", "metrics", "other"}
    assert 'endpoint="other",model="-",status="404"' in text


def test_bearer_token_is_compared_in_constant_time(served, tmp_path, monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    with Server(create_app(served, ServeConfig(), tmp_path / "log.sqlite", token="s3cret")) as s:
        assert httpx.get(f"{s.url}/models", headers={"Authorization": "Bearer s3creX"}).status_code == 401
        assert httpx.get(f"{s.url}/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert len(calls) == 2


def test_a_chunked_body_over_the_limit_is_413(served, tmp_path):
    with Server(create_app(served, ServeConfig(max_body_bytes=2000), tmp_path / "log.sqlite")) as s:
        def chunks():  # no Content-Length: sent with Transfer-Encoding: chunked
            yield b'{"model": "tiny/lora", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}]}'

        r = httpx.post(f"{s.url}/chat/completions", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "over the limit of 2000 bytes" in r.json()["error"]["message"]


def test_a_loopback_server_answers_only_loopback_host_names(server):
    r = httpx.get(f"{server.url}/models", headers={"Host": "attacker.example:8000"})
    assert r.status_code == 421 and "'attacker.example' is not this loopback server's" in r.json()["error"]["message"]
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "[::1]"):
        assert httpx.get(f"{server.url}/models", headers={"Host": host}).status_code == 200


def test_health_answers_while_the_server_is_at_its_limits(served, tmp_path):
    server, release = _held(served, ServeConfig(max_concurrency=2, batch_wait_ms=0, max_batch=1), tmp_path, busy=2)
    try:
        _wait(lambda: server.app.state.metrics.in_flight == 2)
        assert httpx.post(f"{server.url}/chat/completions", json=CHAT).status_code == 429
        assert httpx.get(f"{server.root}/health").json()["status"] == "ok"
    finally:
        release()


def test_the_request_log_is_written_off_the_event_loop_with_pii_redacted_by_default(served, tmp_path, monkeypatch):
    from tunewise.serve.requestlog import RequestLog

    assert ServeConfig().redact_pii
    threads = []
    real = RequestLog._insert_row
    monkeypatch.setattr(RequestLog, "_insert_row", lambda self, *a: threads.append(threading.current_thread().name)
                        or real(self, *a))
    with Server(create_app(served, ServeConfig(), tmp_path / "log.sqlite")) as s:
        body = {**CHAT, "messages": [{"role": "user", "content": "call +44 20 7946 0958 or jane@example.com"}]}
        assert httpx.post(f"{s.url}/chat/completions", json=body, timeout=60).status_code == 200
    assert threads and all(t.startswith("tunewise-requestlog") for t in threads)
    (text,) = sqlite3.connect(tmp_path / "log.sqlite").execute("SELECT input FROM requests").fetchone()
    assert "jane@example.com" not in text and "[EMAIL]" in text


def test_each_project_has_its_own_request_log(served_projects):
    cls, gen = served_projects
    with Server(build([cls, gen])) as s:
        assert httpx.post(f"{s.url}/chat/completions", json=CHAT, timeout=60).status_code == 200
        r = httpx.post(f"{s.url}/completions", json={"model": "tiny-gen/zero-shot", "prompt": "the news"}, timeout=60)
        assert r.status_code == 200
    for project, model in ((cls, "tiny/lora"), (gen, "tiny-gen/zero-shot")):
        db = sqlite3.connect(project / ".tunewise" / "serve" / "requests.sqlite")
        assert {m for (m,) in db.execute("SELECT model FROM requests")} == {model}


def test_a_dead_batch_worker_answers_503_and_is_restarted(served, tmp_path):
    app = create_app(served, ServeConfig(batch_wait_ms=0), tmp_path / "log.sqlite")
    metrics = app.state.metrics
    real, died = metrics.observe_batch, []

    def once(size):  # fails outside the model call: the worker itself dies with a batch in hand
        if not died:
            died.append(size)
            raise RuntimeError("worker bug")
        real(size)

    metrics.observe_batch = once
    with Server(app) as s:
        r = httpx.post(f"{s.url}/chat/completions", json=CHAT, timeout=60)
        assert r.status_code == 503 and r.json()["error"]["code"] == "worker_restarted"
        assert httpx.post(f"{s.url}/chat/completions", json=CHAT, timeout=60).status_code == 200
        assert app.state.batcher.restarts == 1
        assert "tunewise_worker_restarts_total 1.0" in httpx.get(f"{s.root}/metrics").text


def test_64_concurrent_streams_have_zero_errors(server):
    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=300)
    models = ["tiny/lora", "tiny/zero-shot", "tiny-gen/zero-shot", "tiny/dora"]

    def one(i):
        stream = client.chat.completions.create(model=models[i % 4], stream=True, max_tokens=4,
                                                messages=[{"role": "user", "content": f"the goal {i}"}])
        chunks = list(stream)
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        return "".join(c.choices[0].delta.content or "" for c in chunks)

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(one, range(64)))
    assert len(answers) == 64 and all(a.strip() for a in answers[::4])


def test_kill_9_mid_request_leaves_a_readable_log_and_a_restart_serves(served_projects):
    from tunewise.monitor.requestlog import read_log

    cls = served_projects[0]
    log = cls / ".tunewise" / "serve" / "requests.sqlite"
    before = _rows(log)

    def start():
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", "from tunewise.cli import main; main()", "serve", str(cls),
                                 "--port", str(port), "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, text=True)
        lines = [proc.stdout.readline()]  # "using ladder ...", then "serving ... on http://..." once it listens
        while lines[-1] and "serving" not in lines[-1] and len(lines) < 20:
            lines.append(proc.stdout.readline())
        assert "serving" in lines[-1], "".join(lines)
        _wait(lambda: _up(port))
        return proc, f"http://127.0.0.1:{port}/v1"

    proc, url = start()
    try:
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(httpx.post, f"{url}/chat/completions", json=CHAT, timeout=60) for _ in range(16)]
            _wait(lambda: _rows(log) > before)  # answers are being logged: the server is mid-work
            os.kill(proc.pid, signal.SIGKILL)
            for f in futures:
                try:
                    f.result()
                except httpx.HTTPError:
                    pass  # cut off by the kill, as expected
        proc.wait(30)
        assert len(read_log(log).rows) > before  # readable, with what was written before the kill
        proc, url = start()
        assert httpx.post(f"{url}/chat/completions", json=CHAT, timeout=60).status_code == 200
    finally:
        proc.kill()
        proc.wait(30)


def _rows(log) -> int:
    from tunewise.data.load import DataError
    from tunewise.monitor.requestlog import read_log

    try:
        return len(read_log(log).rows)
    except DataError:  # no log yet, or no row in it yet
        return 0


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False

"""Every limit and auth rule, hit once, with its status and message checked."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import Server

from tunewise.config import ServeConfig
from tunewise.serve.app import check_bind, create_app
from tunewise.serve.registry import ServeError

CHAT = {"model": "tiny/lora", "messages": [{"role": "user", "content": "the goal"}]}


def _error(r: httpx.Response, status: int, text: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and text in err["message"], err
    return err


def test_refuses_to_listen_beyond_loopback_without_a_token():
    with pytest.raises(ServeError, match="--host 0.0.0.0 is reachable from other machines: give --token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "s3cret")
    check_bind("127.0.0.1", None)
    check_bind("::1", None)


def test_token_body_tokens_and_prompt_limits(served, tmp_path):
    settings = ServeConfig(max_body_bytes=2000, max_tokens=8, max_prompt_chars=50)
    with Server(create_app(served, settings, tmp_path / "log.sqlite", token="s3cret")) as s:
        _error(httpx.post(f"{s.url}/chat/completions", json=CHAT), 401, "missing or wrong bearer token")
        _error(httpx.get(f"{s.url}/models", headers={"Authorization": "Bearer wrong"}), 401, "bearer token")
        assert httpx.get(f"{s.root}/health").status_code == 200  # liveness probes carry no token
        ok = {"Authorization": "Bearer s3cret"}
        assert httpx.post(f"{s.url}/chat/completions", json=CHAT, headers=ok, timeout=60).status_code == 200
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 3000}]}
        _error(httpx.post(f"{s.url}/chat/completions", json=big, headers=ok), 413, "over the limit of 2000 bytes")
        err = _error(httpx.post(f"{s.url}/chat/completions", json={**CHAT, "max_tokens": 9}, headers=ok), 400,
                     "'max_tokens' 9 is over the limit of 8")
        assert err["param"] == "max_tokens"
        long = {**CHAT, "messages": [{"role": "user", "content": "y" * 60}]}
        _error(httpx.post(f"{s.url}/chat/completions", json=long, headers=ok), 400,
               "is 60 characters, over the limit of 50")
        _error(httpx.post(f"{s.url}/chat/completions", json={"messages": []}, headers=ok), 400, "'model' is required")


def _held(served, settings, tmp_path, busy: int):
    """A server whose model is held busy: ``busy`` requests are let in and wait; returns (server, release).

    The first request is sent alone and the next only once the model holds it: sent together, the two
    could both reach the queue before the worker takes the first, and a one-place queue refuses one."""
    gate, entered = threading.Event(), threading.Event()
    rung = served["tiny/lora"].rung
    real = rung.predict

    def slow(records, **kw):
        entered.set()
        gate.wait(60)
        return real(records, **kw)

    rung.predict = slow
    server = Server(create_app(served, settings, tmp_path / "log.sqlite"))
    server.__enter__()
    pool = ThreadPoolExecutor(busy)
    futures = [pool.submit(httpx.post, f"{server.url}/chat/completions", json=CHAT, timeout=60)]
    _wait(entered.is_set)
    futures += [pool.submit(httpx.post, f"{server.url}/chat/completions", json=CHAT, timeout=60)
                for _ in range(busy - 1)]

    def release():
        gate.set()
        results = [f.result() for f in futures]
        rung.predict = real
        server.__exit__()
        return results

    return server, release


def _wait(cond):
    deadline = time.monotonic() + 30
    while not cond():
        assert time.monotonic() < deadline, "the held requests never arrived"
        time.sleep(0.01)


def test_too_many_concurrent_requests_get_429(served, tmp_path):
    settings = ServeConfig(max_concurrency=2, batch_wait_ms=0, max_batch=1)
    server, release = _held(served, settings, tmp_path, busy=2)
    try:
        _wait(lambda: server.app.state.metrics.in_flight == 2)
        r = httpx.post(f"{server.url}/chat/completions", json=CHAT)
        _error(r, 429, "too many concurrent requests (limit 2)")
        assert r.headers["retry-after"] == "1"
    finally:
        assert [x.status_code for x in release()] == [200, 200]


def test_a_full_queue_gets_503(served, tmp_path):
    settings = ServeConfig(max_queue=1, batch_wait_ms=0, max_batch=1)
    server, release = _held(served, settings, tmp_path, busy=2)
    try:
        # One request runs (held), one waits in the queue: the queue is full.
        _wait(lambda: server.app.state.batcher.depth() == 1 and server.app.state.metrics.in_flight == 2)
        err = _error(httpx.post(f"{server.url}/chat/completions", json=CHAT), 503, "the request queue is full")
        assert err["code"] == "queue_full"
    finally:
        assert [x.status_code for x in release()] == [200, 200]


def test_cli_errors_are_one_line(tmp_path, served_projects):
    from typer.testing import CliRunner

    from tunewise.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["serve", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "neither a project (tunewise.yaml) nor a run folder" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["serve", str(served_projects[0]), "--host", "0.0.0.0"], env={"TUNEWISE_API_TOKEN": ""})
    assert r.exit_code == 2 and "give --token" in r.output
    r = runner.invoke(app, ["export", str(tmp_path)])
    assert r.exit_code == 1 and "rung.json: no such file" in r.output


def test_a_model_failure_is_a_fixed_500_with_a_request_id_and_the_connection_stays(served, tmp_path, caplog):
    rung = served["tiny/lora"].rung
    real = rung.predict

    def broken(records, **kw):
        raise RuntimeError("out of memory at 0xdeadbeef")

    rung.predict = broken
    try:
        with Server(create_app(served, ServeConfig(), tmp_path / "log.sqlite")) as s, httpx.Client(timeout=60) as c:
            r = c.post(f"{s.url}/chat/completions", json=CHAT)
            err = _error(r, 500, "the server failed on this request; its log holds the details under request id")
            rid = r.headers["x-request-id"]
            assert err["type"] == "server_error" and rid in err["message"]
            assert "out of memory" not in r.text and "RuntimeError" not in r.text
            assert any(rid in rec.getMessage() and rec.exc_info for rec in caplog.records)
            # the same connection answers the next request
            assert c.post(f"{s.url}/classify", json={"model": "tiny/zero-shot", "input": "x"}).status_code == 200
            assert 'tunewise_requests_total{endpoint="chat",model="-",status="500"} 1.0' in c.get(f"{s.root}/metrics").text
    finally:
        rung.predict = real

"""One bad request fails only itself: validation before batching, a fault inside a batch isolated to
the request that caused it, 5xx bodies without internals, and a seeded fuzz run of malformed and
good requests sent together."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import Server

from tunewise.config import ServeConfig
from tunewise.serve.app import create_app

TEXTS = ["the match goal cup", "the market shares bank", "the phone software", "the team won", "profit fell",
         "new games console"]


def _wait(cond, what: str):
    deadline = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _chat(text: str, model: str = "tiny/lora") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def _answer(r: httpx.Response) -> tuple:
    body = r.json()
    if "choices" in body and "message" in body["choices"][0]:
        return body["choices"][0]["message"]["content"], body.get("tunewise", {}).get("probabilities")
    if "choices" in body:
        return tuple(c["text"] for c in body["choices"]), None
    return body["data"][0]["label"], body["data"][0]["probabilities"]


def _same(got: tuple, want: tuple) -> bool:
    if got[0] != want[0]:
        return False
    return got[1] is None or all(abs(got[1][k] - want[1][k]) < 1e-4 for k in want[1])


def test_validation_refuses_before_the_batch(server):
    """Each malformed body is a 400 naming the field, on one connection that stays usable."""
    cases = [
        ('{"model": "tiny/lora", "messages": [{"role": "user", "content": "\\ud800 hi"}]}', "messages",
         "'messages[0].content' is not valid Unicode text (a lone surrogate at character 0)"),
        ("[" * 50_000 + "]" * 50_000, None, "nests deeper than 16 levels"),
        ('{"model": "tiny/lora", "messages": ' + "[" * 30 + "]" * 30 + "}", "messages", "'messages[0][0][0]"),
        ('{"model": "tiny/lora", "max_tokens": ' + "9" * 5000 + "}", None, "not valid JSON"),
        ('{"model": "tiny/lora", "temperature": 1e999, "messages": []}', None, "out of range"),
        ('{"model": "tiny/lora", "temperature": NaN}', None, "NaN is not a JSON number"),
        (json.dumps({**_chat("x"), "tools": [{"type": "function"}]}), "tools", "unsupported parameter(s)"),
        (json.dumps({**_chat("x"), "response_format": {"type": "yaml"}}), "response_format", "'response_format' must be"),
        (json.dumps({**_chat("x"), "logprobs": True}), "logprobs", "unsupported parameter(s)"),
        (json.dumps({**_chat("x"), "temperature": "hot"}), "temperature", "must be a number"),
        (json.dumps(_chat("   ")), "messages", "is empty"),
        (json.dumps({"model": "tiny/lora", "messages": [{"role": "robot", "content": "x"}]}), "messages",
         "messages[0].role"),
        (json.dumps({"model": "tiny/lora", "messages": [{"role": "user", "content": 7}]}), "messages",
         "messages[0].content"),
    ]
    with httpx.Client(timeout=60) as c:
        for body, param, text in cases:
            r = c.post(f"{server.url}/chat/completions", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, (body[:80], r.text)
            err = r.json()["error"]
            assert text in err["message"] and err["param"] == param, (body[:80], err)
            assert r.headers["x-request-id"]
        assert c.post(f"{server.url}/chat/completions", json=_chat("the goal")).status_code == 200


def _held_batch(served, tmp_path, poison: str):
    """A server whose first request holds the model while the next ones queue up, so they form one
    batch; a batch holding ``poison`` fails inside the model, as a tokenizer or decode fault would."""
    rung = served["tiny/lora"].rung
    real, gate, entered, sizes = rung.predict, threading.Event(), threading.Event(), []

    def predict(records, **kw):
        sizes.append(len(records))
        if not entered.is_set():
            entered.set()
            gate.wait(60)
        if any(poison in r.input for r in records):
            raise ValueError("TextEncodeInput must be Union[...] (the fault)")
        return real(records, **kw)

    rung.predict = predict
    return Server(create_app(served, ServeConfig(batch_wait_ms=0, max_batch=16), tmp_path / "log.sqlite")), \
        gate, entered, sizes, lambda: setattr(rung, "predict", real)


def test_a_fault_in_a_batch_fails_only_the_request_that_caused_it(served, tmp_path):
    with Server(create_app(served, ServeConfig(batch_wait_ms=0), tmp_path / "alone.sqlite")) as s:
        alone = {t: _answer(httpx.post(f"{s.url}/chat/completions", json=_chat(t), timeout=60)) for t in TEXTS}
    server, gate, entered, sizes, restore = _held_batch(served, tmp_path, "POISON")
    try:
        with server as s, ThreadPoolExecutor(8) as pool:
            first = pool.submit(httpx.post, f"{s.url}/chat/completions", json=_chat("warm up"), timeout=60)
            _wait(entered.is_set, "the first request never reached the model")
            bodies = [_chat(t) for t in TEXTS] + [_chat("POISON the batch")]
            futures = [pool.submit(httpx.post, f"{s.url}/chat/completions", json=b, timeout=60) for b in bodies]
            _wait(lambda: s.app.state.batcher.depth() == len(bodies), "the requests never queued")
            gate.set()
            results = [f.result() for f in futures]
            assert first.result().status_code == 200
        assert len(bodies) in sizes  # they did share one batch
        *good, bad = results
        assert bad.status_code == 500 and "the fault" not in bad.text and bad.headers["x-request-id"] in bad.text
        assert [r.status_code for r in good] == [200] * len(TEXTS)
        for t, r in zip(TEXTS, good, strict=True):
            assert _same(_answer(r), alone[t]), t
    finally:
        restore()


def _bad_requests(rng: random.Random, limit: int) -> list[tuple[str, str | bytes]]:
    """(endpoint, raw body) of malformed and adversarial requests."""
    cls = rng.choice(TEXTS)
    return [
        ("chat/completions", json.dumps(_chat(cls + "\udc80"))),  # a lone low surrogate, as an escape
        ("chat/completions", "[" * rng.randint(20, 60_000) + "]" * 3),
        ("chat/completions", json.dumps({"model": 5, "messages": "hi"})),
        ("chat/completions", json.dumps({**_chat(cls), "max_tokens": 10 ** rng.randint(10, 40)})),
        ("chat/completions", '{"model": "tiny/lora", "seed": ' + "7" * rng.randint(4400, 6000) + "}"),
        ("chat/completions", json.dumps({**_chat(cls), "n": rng.randint(2, 9)})),
        ("chat/completions", json.dumps(_chat("y" * (limit + rng.randint(1, 500))))),
        ("chat/completions", json.dumps(_chat(""))),
        ("chat/completions", json.dumps(_chat(cls, model=f"nope/{rng.random()}"))),
        ("chat/completions", json.dumps({**_chat(cls), "logprobs": True})),
        ("chat/completions", json.dumps({"model": "tiny/lora", "messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]})),
        ("chat/completions", "{not json"),
        ("completions", json.dumps({"model": "tiny-gen/zero-shot", "prompt": [cls, None]})),
        ("completions", json.dumps({"model": "tiny-gen/zero-shot", "prompt": [], "max_tokens": -1})),
        ("classify", json.dumps({"model": "tiny/lora", "input": {"text": cls}})),
        ("classify", b'{"model": "tiny/lora", "input": "\xff\xfe"}'),  # not UTF-8
        ("classify", json.dumps({"model": "tiny-gen/zero-shot", "input": cls})),
        ("classify", json.dumps({"model": "tiny/lora", "input": cls, "extra": {"a": [[[[]]]]}})),
        ("classify", json.dumps({"model": "tiny/lora", "input": "z" * 2_000_000})),
    ]


def _good_requests(rng: random.Random) -> list[tuple[str, str, tuple]]:
    """(endpoint, body, key of its lone answer)."""
    t, m = rng.choice(TEXTS), rng.choice(["tiny/lora", "tiny/zero-shot", "tiny/dora"])
    return [("chat/completions", json.dumps(_chat(t, m)), ("chat", m, t)),
            ("classify", json.dumps({"model": m, "input": t}), ("classify", m, t)),
            ("completions", json.dumps({"model": "tiny-gen/zero-shot", "prompt": t}), ("completions", "gen", t))]


def _lone(url: str, key: tuple) -> tuple:
    kind, model, text = key
    if kind == "chat":
        return _answer(httpx.post(f"{url}/chat/completions", json=_chat(text, model), timeout=60))
    if kind == "classify":
        return _answer(httpx.post(f"{url}/classify", json={"model": model, "input": text}, timeout=60))
    return _answer(httpx.post(f"{url}/completions", json={"model": "tiny-gen/zero-shot", "prompt": text}, timeout=60))


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_bad_requests_among_good_ones_fail_alone(served, tmp_path, seed):
    rng = random.Random(seed)
    settings = ServeConfig(batch_wait_ms=5, max_batch=16, max_prompt_chars=2000)
    mix: list[tuple[str, str, tuple | None]] = []
    for _ in range(4):
        mix += [(e, b, None) for e, b in _bad_requests(rng, settings.max_prompt_chars)]
        mix += [g for _ in range(3) for g in _good_requests(rng)]
    rng.shuffle(mix)
    with Server(create_app(served, settings, tmp_path / "log.sqlite")) as s:
        lone = {key: _lone(s.url, key) for _, _, key in mix if key is not None}
        local = threading.local()

        def send(item):
            client = getattr(local, "c", None) or httpx.Client(timeout=120)
            local.c = client  # each thread keeps its connection: an error must not drop it
            endpoint, body, key = item
            raw = body if isinstance(body, bytes) else body.encode("utf-8")
            return item, client.post(f"{s.url}/{endpoint}", content=raw,
                                     headers={"content-type": "application/json"})

        with ThreadPoolExecutor(8) as pool:
            done = list(pool.map(send, mix))  # a dropped connection raises here
        assert not [r.text for _, r in done if r.status_code >= 500]
        for (endpoint, body, key), r in done:
            if key is None:
                assert 400 <= r.status_code < 500, (endpoint, body[:100], r.text)
                assert r.json()["error"]["message"]
                assert "Traceback" not in r.text and "Error:" not in r.text
            else:
                assert r.status_code == 200, (endpoint, body[:100], r.text)
                assert _same(_answer(r), lone[key]), (key, _answer(r), lone[key])


def raw_exchange(port: int, requests: list[tuple[str, bytes]]) -> list[int]:
    """Send each (path, body) in turn on ONE keep-alive socket; return the statuses. A server that
    closes the connection after an error makes the next exchange fail here."""
    import socket

    statuses = []
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        f = sock.makefile("rb")
        for path, body in requests:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status = f.readline()
            assert status.startswith(b"HTTP/1.1 "), f"the connection was dropped after {statuses}"
            headers = {}
            while (line := f.readline()) not in (b"\r\n", b""):
                k, _, v = line.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            assert headers.get("connection", "").lower() != "close", (status, headers)
            f.read(int(headers["content-length"]))
            statuses.append(int(status.split()[1]))
    return statuses


def test_errors_keep_the_connection_usable(served, tmp_path):
    server, gate, entered, _, restore = _held_batch(served, tmp_path, "POISON")
    gate.set()
    try:
        with server as s:
            chat = "/v1/chat/completions"
            sent = [(chat, b"{not json"), (chat, b"[" * 50_000), (chat, json.dumps(_chat("\udc80")).encode()),
                    (chat, json.dumps(_chat("x", model="nope")).encode()), (chat, b"x" * 2_000_000),
                    (chat, json.dumps(_chat("POISON")).encode()), (chat, json.dumps(_chat("the goal")).encode())]
            assert raw_exchange(s.port, sent) == [400, 400, 400, 404, 413, 500, 200]
    finally:
        restore()

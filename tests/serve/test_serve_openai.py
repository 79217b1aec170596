"""The official openai client against a real server on 127.0.0.1: models, chat, streaming,
completions, classify, errors; adapters sharing one base answer like their own reloaded rungs."""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tunewise.rungs.saved import load_rung
from tunewise.serve.app import softmax

LABELS = {"business", "sports", "tech"}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused-on-loopback", max_retries=0, timeout=120)


def test_models_lists_every_rung_of_the_latest_ladders(client):
    ids = {m.id for m in client.models.list()}
    assert ids == {"tiny/zero-shot", "tiny/lora", "tiny/dora", "tiny-gen/zero-shot"}


def test_adapters_share_one_base_and_answer_like_their_reloaded_rungs(served, server):
    assert served["tiny/lora"].peft is served["tiny/dora"].peft is served["tiny/zero-shot"].peft is not None
    texts = ["the match team goal cup", "the market shares profit bank", "the phone software internet"]
    from tunewise.core import Record

    records = [Record(str(i), t, None) for i, t in enumerate(texts)]
    # Mixed models arrive together, so one batch holds several adapters.
    jobs = [(m, t) for m in ("tiny/lora", "tiny/dora", "tiny/zero-shot") for t in texts]
    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(lambda j: httpx.post(f"{server.url}/classify", json={"model": j[0], "input": j[1]},
                                                 timeout=120).json(), jobs))
    for name in ("lora", "dora", "zero-shot"):
        alone = load_rung(served[f"tiny/{name}"].run_dir).predict(records)
        answers = [g for (m, _), g in zip(jobs, got, strict=True) if m == f"tiny/{name}"]
        for want, answer in zip(alone, answers, strict=True):
            probs = answer["data"][0]["probabilities"]
            assert answer["data"][0]["label"] == want.output
            for label, p in softmax(want.scores).items():
                assert probs[label] == pytest.approx(p, abs=1e-4)


def test_chat_on_a_classifier_returns_a_label_with_probabilities(client):
    r = client.chat.completions.create(model="tiny/lora", messages=[{"role": "user", "content": "the match goal"}])
    assert r.object == "chat.completion" and r.model == "tiny/lora"
    assert r.choices[0].message.content in LABELS and r.choices[0].finish_reason == "stop"
    extra = r.model_extra["tunewise"]
    assert extra["label"] == r.choices[0].message.content
    assert sum(extra["probabilities"].values()) == pytest.approx(1.0) and set(extra["probabilities"]) == LABELS
    assert r.usage.prompt_tokens > 0


def test_chat_notes_what_it_ignored(client):
    r = client.chat.completions.create(
        model="tiny/zero-shot", temperature=0.7,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "the bank"}])
    notes = r.model_extra["tunewise"]["notes"]
    assert any("ignored: temperature" in n for n in notes) and any("1 earlier message" in n for n in notes)


def test_streaming_chat_sends_the_same_answer_as_chunks(client):
    messages = [{"role": "user", "content": "the market shares news"}]
    whole = client.chat.completions.create(model="tiny-gen/zero-shot", messages=messages, max_tokens=5)
    chunks = list(client.chat.completions.create(model="tiny-gen/zero-shot", messages=messages, max_tokens=5,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_completions_answer_each_prompt(client):
    r = client.completions.create(model="tiny-gen/zero-shot", prompt=["the match goal news", "the phone news"],
                                  max_tokens=4)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens <= 8


def test_classify_returns_every_labels_probability(server):
    r = httpx.post(f"{server.url}/classify", json={"model": "tiny/zero-shot", "input": ["the goal", "the bank"]},
                   timeout=60).json()
    assert [d["index"] for d in r["data"]] == [0, 1]
    assert all(set(d["probabilities"]) == LABELS and d["label"] in LABELS for d in r["data"])


def test_client_errors_are_openai_errors_with_messages(client, server):
    with pytest.raises(openai.NotFoundError, match="the model 'nope/lora' does not exist"):
        client.chat.completions.create(model="nope/lora", messages=[{"role": "user", "content": "x"}])
    # The model field is a dict key, never a path.
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="../../../etc/passwd", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="last message must be the user's turn"):
        client.chat.completions.create(model="tiny/lora", messages=[{"role": "assistant", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="'n' must be 1"):
        client.chat.completions.create(model="tiny/lora", n=2, messages=[{"role": "user", "content": "x"}])
    r = httpx.post(f"{server.url}/classify", json={"model": "tiny-gen/zero-shot", "input": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "not_a_classifier"
    r = httpx.post(f"{server.url}/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.get(f"{server.url}/nowhere")
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_health_metrics_and_the_request_log(server, client):
    client.chat.completions.create(model="tiny/lora", messages=[{"role": "user", "content": "mail jane.doe@example.com"}])
    assert httpx.get(f"{server.root}/health").json()["status"] == "ok"
    assert httpx.post(f"{server.url}/chat/completions", json={"model": "nope", "messages": []}).status_code == 404
    text = httpx.get(f"{server.root}/metrics").text
    assert '# TYPE tunewise_requests_total counter' in text
    assert 'tunewise_requests_total{endpoint="chat",model="tiny/lora",status="200"}' in text
    assert "tunewise_batch_size_count" in text
    assert re.search(r'tunewise_requests_total\{endpoint="chat",model="-",status="404"\} [1-9]', text)
    server.app.state.svc.logs["tiny/lora"].flush()
    db = sqlite3.connect(server.log)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = db.execute("SELECT model, input, output, latency_ms, probabilities, redacted FROM requests "
                      "WHERE input LIKE 'mail %'").fetchall()
    model, text_in, out, latency, probs, redacted = rows[-1]
    assert model == "tiny/lora" and text_in == "mail [EMAIL]" and redacted == 1
    assert out in LABELS and latency > 0 and set(json.loads(probs)) == LABELS


def test_concurrent_load_has_no_errors(client):
    """64 requests, 8 at a time, mixed adapters, on loopback: every one answered; p50/p95 printed."""
    models = ["tiny/lora", "tiny/dora", "tiny/zero-shot", "tiny-gen/zero-shot"]

    def one(i: int) -> float:
        start = time.perf_counter()
        r = client.chat.completions.create(model=models[i % 4], max_tokens=4,
                                           messages=[{"role": "user", "content": f"the goal bank {i}"}])
        assert r.choices[0].message.content is not None
        return r.model, time.perf_counter() - start

    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(one, range(64)))
    # Each request answered by the adapter it named (a batcher mixing adapters up fails here).
    assert [m for m, _ in answered] == [models[i % 4] for i in range(64)]
    latencies = sorted(t for _, t in answered)
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(f"\nload test: 64 requests, concurrency 8: p50 {1000 * p50:.0f} ms, p95 {1000 * p95:.0f} ms")

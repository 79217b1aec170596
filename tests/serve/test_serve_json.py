"""`response_format`: the engine keeps a generated answer JSON while it decodes; json_object and
json_schema are checked once the answer is decoded; an answer that fails is a 422 in OpenAI's error
shape (a stream's last event), logged with its status; a classifier answers {"label": ...}; a
malformed format is a 400 naming it."""

from __future__ import annotations

import json
import sqlite3

import httpx
import openai
import pytest
from conftest import Server

from tunewise.config import ServeConfig
from tunewise.serve.app import create_app
from tunewise.serve.engine import DecodeEngine
from tunewise.serve.validate import ApiError, ResponseFormat, response_format_of

LABELS = ["business", "sports", "tech"]
LABEL_SCHEMA = {"type": "object", "properties": {"label": {"enum": LABELS}}, "required": ["label"],
                "additionalProperties": False}


def _schema(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def _fails(fmt: ResponseFormat, content: str, truncated: bool = False) -> ApiError:
    with pytest.raises(ApiError) as e:
        fmt.check(content, truncated)
    assert e.value.status == 422 and e.value.param == "response_format"
    assert e.value.extra == {"tunewise": {"output": content}}
    return e.value


def test_answers_are_checked_against_the_format():
    obj = response_format_of({"response_format": {"type": "json_object"}})
    obj.check('{"a": [1, 2]}', False)
    assert "not JSON" in _fails(obj, "sure! here it is").message
    assert "cut at max_tokens" in _fails(obj, '{"a": [1', truncated=True).message
    assert "not an object" in _fails(obj, "[1, 2]").message
    assert _fails(obj, '{"a": NaN}').code == "answer_not_json"
    schema = response_format_of({"response_format": _schema({"type": "object", "properties": {
        "n": {"type": "integer"}}, "required": ["n"]})})
    schema.check('{"n": 3}', False)
    e = _fails(schema, '{"n": "three"}')
    assert e.code == "answer_not_schema" and "$['n']" in e.message and "'three' is not of type 'integer'" in e.message
    assert "'n' is a required property" in _fails(schema, "{}").message
    assert response_format_of({"response_format": {"type": "text"}}) is None and response_format_of({}) is None


@pytest.mark.parametrize(("fmt", "said"), [
    ({"type": "xml"}, "must be"),
    ({"type": "json_object", "schema": {}}, "must be"),
    ({"type": "json_schema"}, "must be"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": "object"}}, "must be"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}, "not a valid JSON Schema"),
    ("json", "must be"),
])
def test_a_malformed_format_is_a_400_naming_it(server, fmt, said):
    r = httpx.post(f"{server.url}/chat/completions", timeout=60, json={
        "model": "tiny/lora", "messages": [{"role": "user", "content": "x"}], "response_format": fmt})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format", r.text
    assert said in r.json()["error"]["message"]


def test_a_classifier_answers_its_label_as_a_json_object(server):
    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=120)
    ask = {"model": "tiny/lora", "messages": [{"role": "user", "content": "the match goal"}]}
    plain = client.chat.completions.create(**ask).choices[0].message.content
    for fmt in ({"type": "json_object"}, _schema(LABEL_SCHEMA)):
        r = client.chat.completions.create(**ask, response_format=fmt)
        assert json.loads(r.choices[0].message.content) == {"label": plain}
        assert any("not constrained" in n for n in r.model_extra["tunewise"]["notes"])
    streamed = client.chat.completions.create(**ask, response_format={"type": "json_object"}, stream=True)
    assert json.loads("".join(c.choices[0].delta.content or "" for c in streamed)) == {"label": plain}
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.chat.completions.create(**ask, response_format=_schema({**LABEL_SCHEMA, "required": ["label", "why"]}))
    assert e.value.body["code"] == "answer_not_schema" and "'why' is a required property" in e.value.body["message"]
    assert json.loads(e.value.response.json()["tunewise"]["output"]) == {"label": plain}


class JsonWords:
    """The tiny model's tokens decode to nothing visible; this shows n tokens as '{"n": n}' (valid
    JSON at every length) or, with ``broken``, as words, so the check has an answer to pass or fail."""

    broken = False

    def __init__(self, tok):
        self.tok = tok

    def decode(self, ids, skip_special_tokens=True):
        return "".join(f" w{i}" for i in ids) if self.broken else json.dumps({"n": len(ids)})

    def encode(self, text, add_special_tokens=False):  # no token is a character of its own here
        return []

    def __len__(self):
        return 3


class Chars:
    """The tiny model's tokens shown as one character each, among them every character JSON is made of:
    what the model decodes unconstrained is character soup, so JSON can only come from the constraint."""

    ALPHABET = '{}[]":,-.0123456789 abcdefghijklmnopqrstuvwxyzE\\'

    def __init__(self, tok):
        self.size = len(tok)

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.ALPHABET[i % len(self.ALPHABET)] for i in ids)

    def encode(self, text, add_special_tokens=False):
        return [self.ALPHABET.index(c) for c in text]

    def __len__(self):
        return self.size


def _decode(served, asks: list[tuple[ResponseFormat | None, int]]) -> list[tuple[str, str]]:
    """(answer, streamed text) of each (format, max_tokens), decoded together by one engine; a JSON
    answer ends with its document (one character per token here: no token after it)."""
    from tunewise.rungs.saved import request_record

    class Job:
        def __init__(self, fmt, n):
            self.record, self.max_tokens, self.fmt, self.result, self.batch_size = request_record("the news"), n, fmt, None, 0
            self.stream, self.future, self.deltas = True, self, []

        def done(self):
            return False

    jobs = [Job(fmt, n) for fmt, n in asks]
    engine = DecodeEngine(served["tiny-gen/zero-shot"], lambda job, delta: job.deltas.append(delta))
    engine.tok = Chars(engine.tok)
    engine.stops = set()
    engine.join_many(jobs[:2])
    engine.step()
    engine.join_many(jobs[2:])
    while engine.active:
        engine.step()
    for j in jobs:
        assert j.fmt is None or j.result.completion_tokens == len(j.result.output), j.result.output
    return [(j.result.output, "".join(j.deltas)) for j in jobs]


def test_an_answer_asked_to_be_json_is_decoded_as_json(served):
    """The engine keeps an answer JSON while it decodes: of its likeliest tokens the likeliest that keeps
    a JSON prefix the budget left can close, and the answer ends when the document is whole."""
    obj, anything = ResponseFormat("json_object"), ResponseFormat("json_schema", {"type": "array"})
    asks = [(None, 12), (obj, 12), (obj, 3), (anything, 9), (obj, 2), (obj, 1)]
    (plain, _), (long, streamed), (short, _), (array, _), (two, _), (one, _) = _decode(served, asks)
    with pytest.raises(ValueError):
        json.loads(plain)  # what the model says unconstrained is not JSON
    assert isinstance(json.loads(long), dict) and streamed == long  # streamed as decoded
    assert isinstance(json.loads(short), dict) and isinstance(json.loads(array), list)
    assert two == "{}"  # two tokens: the shortest object
    _fails(obj, one, truncated=True)  # one token cannot close an object: checked, a 422


def test_a_schema_the_constrained_answer_misses_is_a_422(served):
    """The constraint keeps an answer JSON of the schema's type; the schema itself is checked after."""
    fmt = ResponseFormat("json_schema", {"type": "object", "required": ["headline"]})
    ((answer, _),) = _decode(served, [(fmt, 6)])
    assert isinstance(json.loads(answer), dict)
    assert _fails(fmt, answer).code == "answer_not_schema"


def test_a_generated_answer_that_is_not_json_is_a_422_logged_with_its_status(served, tmp_path, monkeypatch):
    init = DecodeEngine.__init__

    def json_init(self, *a):
        init(self, *a)
        self.tok = JsonWords(self.tok)

    monkeypatch.setattr(DecodeEngine, "__init__", json_init)
    log = tmp_path / "log.sqlite"
    ask = {"model": "tiny-gen/zero-shot", "max_tokens": 4, "messages": [{"role": "user", "content": "the news"}],
           "response_format": _schema({"type": "object", "properties": {"n": {"maximum": 4}}, "required": ["n"]})}
    with Server(create_app(served, ServeConfig(), log)) as s:
        client = openai.OpenAI(base_url=s.url, api_key="x", max_retries=0, timeout=120)
        good = client.chat.completions.create(**ask).choices[0].message.content
        assert json.loads(good)["n"] >= 1
        monkeypatch.setattr(JsonWords, "broken", True)
        with pytest.raises(openai.UnprocessableEntityError) as e:
            client.chat.completions.create(**ask)
        assert e.value.body["code"] == "answer_not_json" and e.value.body["param"] == "response_format"
        assert "Traceback" not in e.value.response.text
        chunks = []
        with pytest.raises(openai.APIError) as e:  # the stream's last event is the error, after the words
            for c in client.chat.completions.create(**ask, stream=True):
                chunks.append(c.choices[0].delta.content or "")
        assert "".join(chunks).startswith("w") and e.value.body["code"] == "answer_not_json"
    rows = sqlite3.connect(log).execute("SELECT status, output FROM requests ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [200, 422, 422] and rows[0][1] == good


def test_the_likeliest_token_that_keeps_json_is_taken_and_a_whole_document_ends_the_answer(monkeypatch):
    from types import SimpleNamespace

    import torch

    from tunewise.serve.engine import Sequence

    engine = DecodeEngine.__new__(DecodeEngine)  # what _json_token and _advance read, nothing loaded
    engine.tok, engine.char_tokens = Chars(range(64)), {}
    ids = engine.tok.encode
    engine.stops = set(ids("0"))  # a stop token that would also be a digit here
    engine.served, engine.push = SimpleNamespace(id="x"), None
    job = SimpleNamespace(record=SimpleNamespace(id="r"), stream=None)

    def row(*likeliest: str):
        logits = torch.zeros(64)
        for rank, c in enumerate(likeliest):
            logits[ids(c)[0]] = 10.0 - rank
        return logits

    seq = Sequence(job, 3, limit=12, tokens=ids('{"a":1'), top="{")
    # "x" breaks JSON; a stop token is never an answer's end here; " " is the likeliest that keeps it
    assert engine._json_token(seq, row("x", "0", " ", "}")) == ids(" ")[0] and not seq.complete
    seq.tokens += ids("     ")  # the next token is the last: only a closing one fits
    assert engine._json_token(seq, row(" ", "2", "}")) == ids("}")[0] and seq.complete
    seq = Sequence(job, 3, limit=12, tokens=ids('{"a":1'), top="{")
    token = engine._json_token(seq, row("}", " "))
    engine._advance(seq, token)  # the document is whole with budget left: the answer ends
    assert seq.done and seq.job.result.output == '{"a":1}' and len(seq.tokens) == 7
    monkeypatch.setattr("tunewise.serve.engine.JSON_CANDIDATES", 2)
    seq = Sequence(job, 3, limit=8, tokens=ids('{"a"'), top="{")
    # neither of the two likeliest keeps JSON: the next character of the shortest completion (':0}')
    assert engine._json_token(seq, row("{", "]")) == ids(":")[0] and not seq.complete


def test_the_server_answers_json_when_asked_and_says_how(served, tmp_path, monkeypatch):
    init = DecodeEngine.__init__

    def chars_init(self, *a):
        init(self, *a)
        self.tok, self.stops = Chars(self.tok), set()

    monkeypatch.setattr(DecodeEngine, "__init__", chars_init)
    ask = {"model": "tiny-gen/zero-shot", "max_tokens": 10, "messages": [{"role": "user", "content": "the news"}]}
    with Server(create_app(served, ServeConfig(), tmp_path / "log.sqlite")) as s:
        client = openai.OpenAI(base_url=s.url, api_key="x", max_retries=0, timeout=120)
        plain = client.chat.completions.create(**ask).choices[0].message.content
        r = client.chat.completions.create(**ask, response_format={"type": "json_object"})
        streamed = client.chat.completions.create(**ask, response_format={"type": "json_object"}, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in streamed)
    with pytest.raises(ValueError):
        json.loads(plain)
    assert isinstance(json.loads(r.choices[0].message.content), dict) and text == r.choices[0].message.content
    assert any("kept a JSON object while decoding" in n for n in r.model_extra["tunewise"]["notes"])

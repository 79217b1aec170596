"""`response_format`: json_object and json_schema are checked once the answer is decoded; an answer
that fails is a 422 in OpenAI's error shape (a stream's last event), logged with its status; a
classifier answers {"label": ...}; a malformed format is a 400 naming it."""

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

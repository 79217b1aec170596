"""serve/jsonprefix.py: every prefix of a JSON document is a prefix, and it with its completion parses;
what can no longer become JSON is refused."""

from __future__ import annotations

import json

import pytest

from tunewise.serve.jsonprefix import json_prefix

DOCS = ['{"a": 1}', '{}', '[]', '{"headline": "Oil \\"prices\\" rise \\u00e9", "n": -0.5e+3, "tags": ["a", "b"]}',
        '[1, 2.5, -3e7, true, false, null, "x", {"k": [{}]}]', '{"a":{"b":{"c":[[],[0]]}}}', ' \n{"x": "\u00e9t\u00e9"} ',
        '{"z": 0, "y": 10.25, "w": 1E5}']


@pytest.mark.parametrize("doc", DOCS)
def test_every_prefix_of_a_document_is_one_and_its_completion_parses(doc):
    top = "{[" if doc.strip()[0] == "[" else "{"
    for i in range(len(doc) + 1):
        text = doc[:i]
        p = json_prefix(text, top)
        assert p.ok, text
        whole = text + p.closer
        value = json.loads(whole)  # the shortest completion is JSON ...
        assert isinstance(value, dict if top == "{" else (dict, list)), whole
        assert json_prefix(whole, top).complete, whole  # ... and a whole document
        if p.complete:
            assert p.closer == "" and json.loads(text) == json.loads(doc)


@pytest.mark.parametrize("text", ['"a"', "[1]", "1", 'x', '{"a" 1', '{"a": 1,}', '{,', '{"a": 01', '{"a": -}',
                                  '{"a": tru }', '{"a": 1.}', '{"a": "\\x"}', '{"a": "\\u12G"}', '{"a": 1}}', '{} x',
                                  '{"a": [1 2]}', '{"a": "line\nbreak"}', '{"a": 1e}', "{'a': 1}"])
def test_what_cannot_become_a_json_object_is_refused(text):
    assert not json_prefix(text, "{").ok


def test_the_completion_is_the_shortest():
    assert json_prefix("", "{").closer == "{}"
    assert json_prefix('{"a": [1, {"b": "x', "{").closer == '"}]}'
    assert json_prefix('{"a": [1, ', "{").closer == "0]}"
    assert json_prefix('{"a": 1, ', "{").closer == '"":0}'
    assert json_prefix('{"a"', "{").closer == ":0}"
    assert json_prefix('{"a": "\\u00', "{").closer == '00"}'
    assert json_prefix('{"a": fa', "{").closer == "lse}"
    assert json_prefix('{"a": -', "{").closer == "0}"

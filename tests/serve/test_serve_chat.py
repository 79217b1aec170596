"""A rung measured on chat rows is served on the request's real turns, exactly as it was measured."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
from loopback import Server

from tunewise.config import ServeConfig, load_config
from tunewise.core import Record
from tunewise.ladder import run_ladder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rungs"))
from test_chat_tiny import SYSTEM, _write


def test_chat_rows_are_served_as_their_turns(tmp_path, tiny_model_dir):
    from tunewise.serve.app import create_app
    from tunewise.serve.registry import load_served

    project = _write(tmp_path / "chat", tiny_model_dir)
    run_ladder(load_config(project), project, ["zero-shot"])
    served = load_served([project])
    (entry,) = served.values()
    assert entry.chat
    turns = [SYSTEM, {"role": "user", "content": "the market shares"}, {"role": "assistant", "content": "business news"},
             {"role": "user", "content": [{"type": "text", "text": "the topic"}]}]
    # What the rung answers for the same conversation as a dataset row (the measured path).
    as_row = [{**t, "content": "the topic"} if isinstance(t["content"], list) else t for t in turns]
    (measured,) = entry.rung.predict([Record("r", "", None, meta={"messages": as_row})])
    with Server(create_app(served, ServeConfig(), tmp_path / "log.sqlite")) as s:
        body = {"model": entry.id, "messages": turns, "max_tokens": 4}
        reply = httpx.post(f"{s.url}/chat/completions", json=body, timeout=120).json()
        bad = httpx.post(f"{s.url}/chat/completions", timeout=60, json={
            "model": entry.id, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})
    assert reply["choices"][0]["message"]["content"] == measured.output
    assert "ignored" not in str(reply.get("tunewise", {}).get("notes", ""))
    assert bad.status_code == 400 and "messages[0]" in bad.json()["error"]["message"]

"""Server-sent events in OpenAI's chat.completion.chunk shape, shared by the built-in engine's
streams and the relay of vLLM's (serve/proxy.py)."""

from __future__ import annotations

import json

from tunewise.serve.validate import ApiError


def internal_message(rid: str) -> str:
    """What a client is told of a failure inside the server: never the exception, only where its log is."""
    return f"the server failed on this request; its log holds the details under request id {rid}"


def stream_error(e: ApiError) -> str:
    """An error after a stream's headers went out (200): its last event, which the openai client raises."""
    error = {"message": e.message, "type": e.type, "param": e.param, "code": e.code}
    return f"data: {json.dumps({'error': error, **(e.extra or {})})}\n\n"


def chunk_event(cid: str, created: int, model: str, delta: dict, finish: str | None = None, **more) -> str:
    chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **more}
    return f"data: {json.dumps(chunk)}\n\n"

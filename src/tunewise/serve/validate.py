"""Every request is checked here before it may join a batch: a body that fails gets a 400 naming
the field and never reaches the model, so one malformed request cannot fail the others.

Checked: the body is JSON within the nesting limit, with finite numbers; every string (keys too)
is text the tokenizer can encode (no lone surrogates); only parameters the endpoint honours are
present, each of the right type; texts are non-empty and within the size limits.
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 16  # an OpenAI request nests 5 deep at most (messages[i].content[j].image_url.url)

SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "logit_bias", "stop")
# What each endpoint honours; anything else is refused by name, never accepted and ignored.
PARAMS = {
    "chat": {"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options", "n", "user",
             "response_format", *SAMPLING},
    "completions": {"model", "prompt", "max_tokens", "n", "user", "stream", *SAMPLING},
    "classify": {"model", "input", "user"},
}
NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]}... is out of range")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw: bytes) -> dict:
    """The request body as a dict, or a 400 that says what is wrong with it and where."""
    try:
        body = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (ValueError, UnicodeDecodeError) as e:  # a huge integer, NaN, a non-finite float, bad UTF-8
        raise ApiError(400, f"the request body is not valid JSON ({str(e)[:200]})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    check_tree(body)
    return body


def check_tree(body: dict) -> None:
    """Nesting depth and encodable text everywhere in the body, without recursion."""
    stack: list[tuple[object, str, int]] = [(body, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ApiError(400, f"'{path[:200]}' nests deeper than {MAX_DEPTH} levels", param=_top(path))
        if isinstance(node, dict):
            for k, v in node.items():
                _encodable(k, f"{path}.{k[:40]!r}" if path else "a key")
                stack.append((v, f"{path}.{k}" if path else k, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node))
        elif isinstance(node, str):
            _encodable(node, path)


def _encodable(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(400, f"'{path[:200]}' is not valid Unicode text (a lone surrogate at character {e.start})",
                       param=_top(path), code="invalid_text") from None


def _top(path: str) -> str | None:
    """The top-level parameter a field path is in (OpenAI's ``param``)."""
    return path.split(".")[0].split("[")[0] or None


def check_params(body: dict, endpoint: str) -> None:
    """Refuse, by name, parameters the endpoint does not honour; check the types of those it takes."""
    unknown = sorted(k for k in body if k not in PARAMS[endpoint])
    if unknown:
        names = ", ".join(k[:40] for k in unknown[:8])
        raise ApiError(400, f"unsupported parameter(s) on /v1/{endpoint}: {names}; a rung answers as the ladder "
                       "measured it (greedy, one answer, plain text)", param=unknown[0][:40], code="unsupported_parameter")
    for k in NUMBERS:
        if k in body and body[k] is not None and (isinstance(body[k], bool) or not isinstance(body[k], int | float)):
            raise ApiError(400, f"'{k}' must be a number", param=k)
    _typed(body, "seed", int, "an integer")
    _typed(body, "user", str, "a string")
    _typed(body, "logit_bias", dict, "an object")
    _typed(body, "stream", bool, "true or false")
    _typed(body, "stream_options", dict, "an object")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise ApiError(400, "'stop' must be a string or a list of strings", param="stop")
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise ApiError(400, "'n' must be 1: decoding is greedy, every choice would be the same", param="n")
    fmt = body.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise ApiError(400, "'response_format' other than {\"type\": \"text\"} is not supported: the rung answers in "
                       "the form the ladder measured, unconstrained", param="response_format")


def _typed(body: dict, key: str, kind: type, said: str) -> None:
    value = body.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise ApiError(400, f"'{key}' must be {said}", param=key)


def check_text(text, param: str, limit: int) -> str:
    """One text the model will read: a non-empty string within ``limit`` characters."""
    if not isinstance(text, str):
        raise ApiError(400, f"'{param}' must be a string", param=param)
    if not text.strip():
        raise ApiError(400, f"'{param}' is empty", param=param)
    if len(text) > limit:
        raise ApiError(400, f"'{param}' is {len(text)} characters, over the limit of {limit}",
                       param=param, code="prompt_too_long")
    return text


ROLES = ("system", "developer", "user", "assistant", "tool")


def check_message_shapes(messages) -> None:
    """OpenAI chat messages: a non-empty list of {role, content}, content a string or text parts,
    the last the user's turn."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content} objects", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ApiError(400, f"'messages[{i}]' must be a {{role, content}} object", param="messages")
        if m.get("role") not in ROLES:
            raise ApiError(400, f"'messages[{i}].role' must be one of {', '.join(ROLES)}", param="messages")
        content = m.get("content")
        parts_ok = isinstance(content, list) and all(
            isinstance(p, dict) and (p.get("type") != "text" or isinstance(p.get("text"), str)) for p in content)
        if not (isinstance(content, str) or parts_ok or (content is None and m["role"] == "assistant")):
            raise ApiError(400, f"'messages[{i}].content' must be a string or a list of text parts", param="messages")
    if messages[-1]["role"] != "user":
        raise ApiError(400, "the last message must be the user's turn", param="messages")

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
                 code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.extra = extra  # beside "error" in the body (the answer a 422 refused)


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


class ResponseFormat:
    """What ``response_format`` asks of an answer: a JSON object (``json_object``), or JSON valid
    under a schema (``json_schema``). The built-in engine's generation rungs keep the answer JSON of
    that shape while it decodes (serve.engine.json_top); every answer is checked once decoded, and
    one that fails is a 422 (see ``check``), never passed on as if it were JSON."""

    def __init__(self, kind: str, schema: dict | None = None):
        self.kind, self.schema = kind, schema

    def content(self, output: str, classification: bool) -> str:
        """A classifier's label as the JSON object ``{"label": ...}``; a generated answer as decoded."""
        return json.dumps({"label": output}) if classification else output

    def check(self, content: str, truncated: bool) -> None:
        """Raise a 422 naming what is wrong if ``content`` is not what was asked; the answer goes with it.

        422, not 5xx: greedy decoding gives the same answer again, so a client (the openai package
        retries 5xx) must not retry; and not 200: a client that asked for JSON must not get text."""
        try:
            value = json.loads(content, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            why = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deep or not a JSON number"
            cut = " (the answer was cut at max_tokens before it closed)" if truncated else ""
            self._fail(f"the answer is not JSON: {why}{cut}", content, "answer_not_json")
        if self.kind == "json_object" and not isinstance(value, dict):
            self._fail(f"the answer is JSON but not an object (a {type(value).__name__})", content, "answer_not_json")
        if self.schema is not None:
            self._validate(value, content)

    def _validate(self, value, content: str) -> None:
        from jsonschema import validators
        from referencing.exceptions import Unresolvable

        try:
            error = next(validators.validator_for(self.schema)(self.schema).iter_errors(value), None)
        except Unresolvable as e:  # a $ref to somewhere else: never fetched
            raise ApiError(400, f"'response_format.json_schema.schema' has a $ref that cannot be resolved here "
                           f"({str(e.ref)[:100]!r}); give the schema whole", param="response_format") from None
        if error is not None:
            at = "$" + "".join(f"[{p!r}]" for p in error.absolute_path)
            self._fail(f"the answer does not match the schema at {at}: {error.message[:300]}", content,
                       "answer_not_schema")

    @staticmethod
    def _fail(message: str, content: str, code: str):
        raise ApiError(422, message, type="invalid_response_error", param="response_format", code=code,
                       extra={"tunewise": {"output": content}})


def response_format_of(body: dict) -> ResponseFormat | None:
    """The checked ``response_format``: None for plain text; a 400 naming what is malformed."""
    fmt = body.get("response_format")
    if fmt is None or fmt == {"type": "text"}:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object" and set(fmt) == {"type"}:
        return ResponseFormat(kind)
    spec = fmt.get("json_schema") if kind == "json_schema" else None
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict) or set(fmt) != {"type", "json_schema"}:
        raise ApiError(400, "'response_format' must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                       "{\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}",
                       param="response_format")
    from jsonschema import SchemaError, validators

    schema = spec["schema"]
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as e:
        raise ApiError(400, f"'response_format.json_schema.schema' is not a valid JSON Schema: {e.message[:300]}",
                       param="response_format") from None
    return ResponseFormat(kind, schema)

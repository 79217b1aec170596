"""The OpenAI-compatible API over saved rungs: chat and text completions, models, classify, health, metrics.

Each rung answers exactly as the ladder measured it: the request's text is the record input, and
the rung renders its own prompt (instruction, examples, passages, chat template) around it.
Decoding is greedy, as in evaluation. Whatever a request asks that the rung does not do
(sampling, earlier chat turns) is named in the response's ``tunewise.notes``, never dropped silently.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
import uuid
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunewise.config import ServeConfig
from tunewise.data.load import check_messages, transcript
from tunewise.locate import served_path, served_record, write_served
from tunewise.rungs.saved import label_probabilities, request_record
from tunewise.serve import proxy
from tunewise.serve.batching import Batcher, QueueFull, WorkerDied
from tunewise.serve.engine import batch_reason, continuous
from tunewise.serve.metrics import CONTENT_TYPE, Metrics
from tunewise.serve.registry import Served, ServeError
from tunewise.serve.requestlog import RequestLog
from tunewise.serve.sse import chunk_event, internal_message, stream_error
from tunewise.serve.validate import (
    SAMPLING,
    ApiError,
    check_message_shapes,
    check_params,
    check_text,
    parse_body,
    response_format_of,
)

log = logging.getLogger(__name__)

def error_response(status: int, message: str, type: str = "invalid_request_error", param=None, code=None,
                   headers: dict | None = None, extra: dict | None = None) -> JSONResponse:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}, and ``extra`` beside it."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}, **(extra or {})}
    return JSONResponse(body, status_code=status, headers=headers)


def internal_error(rid: str) -> JSONResponse:
    return error_response(500, internal_message(rid), type="server_error", code="internal_error")


FORMAT_NOTE = ("response_format is checked once the answer is decoded, not constrained while decoding: an answer that "
               "fails it is a 422")


def format_note(s: Served, fmt, remote: bool) -> str:
    """What was done for ``response_format``: kept JSON while decoding (the built-in engine's
    generation rungs), or checked only."""
    from tunewise.serve.engine import json_top

    top = json_top(fmt)
    if remote or top is None or not continuous(s):
        return FORMAT_NOTE
    shape = {"{": "a JSON object", "[": "a JSON array"}.get(top, "a JSON object or array")
    return (f"response_format: the answer was kept {shape} while decoding (the likeliest of its likeliest tokens that "
            f"keeps it one, closed within max_tokens); {'the schema is checked after: ' if fmt.schema else ''}"
            "an answer that fails is a 422")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


def host_name(header: str) -> str:
    """The name in a Host header, without its port (an IPv6 address keeps its brackets)."""
    return header.split("]")[0] + "]" if header.startswith("[") else header.rsplit(":", 1)[0]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise ServeError(f"--host {host} is reachable from other machines: give --token (or set "
                         "TUNEWISE_API_TOKEN) so that every request must carry it")


softmax = label_probabilities  # one place: the rung contract's (rungs/saved.py)


def record_served(paths: dict[str, Path], measured: dict[str, dict]) -> None:
    """served.json beside each request log: the run and the ladder of every model logging there, so
    `tunewise monitor` calibrates on the ladder this server loaded (tunewise.locate)."""
    by_log: dict[str, dict] = {}
    for mid, path in paths.items():
        by_log.setdefault(str(path), {})[mid] = measured[mid]
    for path, models in by_log.items():
        try:
            write_served(Path(path), models)
        except OSError as e:  # the log itself is writable; say it and serve on
            log.warning("%s: could not record what is served (%s); the monitor will use the newest finished ladder",
                        served_path(Path(path)), e.strerror or e)


class Service:
    """What every handler shares: the loaded rungs, the limits, the batcher, the metrics and the logs."""

    def __init__(self, served: dict[str, Served], settings: ServeConfig, log_path: Path | dict[str, Path],
                 token: str | None, host: str = "127.0.0.1", engines=None):
        self.served, self.settings, self.token = served, settings, token
        # --engine vllm: the rungs its children serve are relayed there (serve/proxy.py).
        self.remote = proxy.Remote(engines) if engines is not None else None
        self.metrics = Metrics(served)
        self.batcher = Batcher(settings.batch_wait_ms, settings.max_batch, settings.max_queue, self.metrics)
        # One log per project: each model id writes to its own project's file.
        paths = log_path if isinstance(log_path, dict) else dict.fromkeys(served, log_path)
        opened = {str(p): RequestLog(p, settings.redact_pii, settings.log_inputs) for p in set(paths.values())}
        self.logs = {mid: opened[str(p)] for mid, p in paths.items()}
        self.measured = {mid: served_record(s.run_dir) for mid, s in served.items()}
        record_served(paths, self.measured)
        # On loopback only loopback names may reach the server: a web page that rebinds its own
        # DNS name to 127.0.0.1 sends its name as Host and is refused.
        self.hosts = LOOPBACK_NAMES if is_loopback(host) else None


    def relayed(self, s: Served) -> bool:
        """Whether ``s`` is served by a vLLM child (serve/proxy.py) rather than the built-in engine."""
        return self.remote is not None and s.id in self.remote.routes

    def close(self) -> None:
        for log_ in set(self.logs.values()):
            log_.close()

    def refusal(self, request: Request) -> JSONResponse | None:
        """Host, auth, body size and concurrency, checked before a request is read. /health is outside
        them all: a liveness probe must answer while the server is at its limits."""
        if request.url.path == "/health":
            return None
        host = host_name(request.headers.get("host", ""))
        if self.hosts is not None and host.lower() not in self.hosts:
            return error_response(421, f"the Host header {host[:100]!r} is not this loopback server's "
                                  f"({', '.join(sorted(self.hosts))})", code="host_not_allowed")
        auth = request.headers.get("authorization", "")
        if self.token and not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            return error_response(401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
                                  code="invalid_api_key")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.settings.max_body_bytes):
            return self.too_large()
        if self.metrics.in_flight >= self.settings.max_concurrency:
            limit = self.settings.max_concurrency
            return error_response(429, f"too many concurrent requests (limit {limit}); retry later",
                                  type="rate_limit_error", code="concurrency_limit", headers={"Retry-After": "1"})
        return None

    def too_large(self) -> JSONResponse:
        return error_response(413, f"request body over the limit of {self.settings.max_body_bytes} bytes",
                              code="body_too_large")

    async def body_of(self, request: Request, endpoint: str) -> dict:
        """The checked body: valid JSON, within the limits, only parameters ``endpoint`` honours."""
        chunks, size = [], 0
        async for chunk in request.stream():  # counted as it arrives: a chunked body has no length header
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise ApiError(413, f"request body over the limit of {self.settings.max_body_bytes} bytes",
                               code="body_too_large")
            chunks.append(chunk)
        body = parse_body(b"".join(chunks))
        check_params(body, endpoint)
        return body

    def model_of(self, body: dict) -> Served:
        mid = body.get("model")
        if not isinstance(mid, str) or not mid:
            raise ApiError(400, "'model' is required: one of GET /v1/models", param="model")
        # Looked up among loaded ids only: the field never names a file.
        if mid not in self.served:
            raise ApiError(404, f"the model '{mid[:200]}' does not exist; served: {', '.join(self.served)}",
                           param="model", code="model_not_found")
        return self.served[mid]

    def texts_of(self, body: dict, param: str) -> list[str]:
        """``body[param]``: one string or a list of 1 to max_batch strings, each checked."""
        given = body.get(param)
        texts = given if isinstance(given, list) else [given]
        if not texts or len(texts) > self.settings.max_batch:
            raise ApiError(400, f"'{param}' must be a string or a list of 1 to {self.settings.max_batch} strings",
                           param=param)
        return [self.check_text(t, param) for t in texts]

    def check_text(self, text, param: str) -> str:
        return check_text(text, param, self.settings.max_prompt_chars)

    def max_tokens_of(self, body: dict, s: Served) -> int | None:
        value = body.get("max_completion_tokens", body.get("max_tokens"))
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ApiError(400, "'max_tokens' must be a positive integer", param="max_tokens")
        if value > self.settings.max_tokens:
            raise ApiError(400, f"'max_tokens' {value} is over the limit of {self.settings.max_tokens}",
                           param="max_tokens", code="max_tokens_too_large")
        return value

    def notes_for(self, body: dict) -> list[str]:
        # temperature 0 and top_p 1 are what greedy decoding does anyway.
        asked = [k for k in SAMPLING if body.get(k) not in (None, [], {}, "")
                 and not (k == "temperature" and body[k] == 0) and not (k == "top_p" and body[k] == 1)]
        if asked:
            return [f"decoding is greedy, as the ladder measured it; ignored: {', '.join(asked)}"]
        return []

    def enqueue(self, s: Served, text: str, max_tokens: int | None, messages: list[dict] | None = None,
                stream: bool = False, fmt=None):
        record = request_record(text, messages)
        try:
            return self.batcher.enqueue(s, record, max_tokens, stream, fmt)
        except QueueFull as e:
            raise ApiError(503, str(e), type="server_error", code="queue_full") from None

    async def settle(self, job, s: Served, text: str, endpoint: str, started: float, fmt=None,
                     max_tokens: int | None = None):
        """Wait for the job's prediction, then book it."""
        try:
            pred = await job.future
        except WorkerDied as e:
            raise ApiError(503, str(e), type="server_error", code="worker_restarted") from None
        probs = softmax(pred.scores) if pred.scores else None
        truncated = self.finish(s, self.usage(s, pred), max_tokens) == "length"
        self.book(s, endpoint, text, pred.output, started, probs, job.batch_size, fmt, truncated)
        return pred, probs

    def book(self, s: Served, endpoint: str, text: str, output: str, started: float, probs: dict | None = None,
             batch_size: int | None = None, fmt=None, truncated: bool = False) -> None:
        """Check an answer against ``fmt`` (a ResponseFormat), count it and log it. One that fails is
        logged with its 422 (the monitor counts only 200s as served) and raised."""
        seconds = time.perf_counter() - started
        failed = None
        if fmt is not None:
            try:
                fmt.check(fmt.content(output, s.task == "classification"), truncated)
            except ApiError as e:
                failed = e
        if failed is None:  # a refusal is counted where it is answered
            self.metrics.observe_request(s.id, endpoint, 200, seconds)
        status = failed.status if failed else 200
        self.logs[s.id].write(s.id, endpoint, status, text, output, 1000 * seconds, probs, batch_size)
        if failed is not None:
            raise failed

    async def answer(self, s: Served, text: str, max_tokens: int | None, endpoint: str, started: float,
                     messages: list[dict] | None = None, fmt=None):
        return await self.settle(self.enqueue(s, text, max_tokens, messages, fmt=fmt), s, text, endpoint, started, fmt,
                                 max_tokens)

    def usage(self, s: Served, pred) -> dict:
        completion = getattr(pred, "completion_tokens", 0)
        return {"prompt_tokens": pred.prompt_tokens, "completion_tokens": completion,
                "total_tokens": pred.prompt_tokens + completion}

    def finish(self, s: Served, use: dict, max_tokens: int | None) -> str:
        limit = max_tokens or s.config.eval.max_new_tokens
        return "length" if s.task != "classification" and use["completion_tokens"] >= limit else "stop"



def create_app(served: dict[str, Served], settings: ServeConfig, log_path: Path | dict[str, Path],
               token: str | None = None, host: str = "127.0.0.1", engines=None) -> FastAPI:
    """The app; ``log_path`` is one request log, or one per model id (a project's own file);
    ``engines``: the running vLLM children (serve/vllm.py) whose rungs are relayed to them."""
    svc = Service(served, settings, log_path, token, host, engines)

    async def lifespan(app):
        await svc.batcher.start()
        if svc.remote:
            await svc.remote.start()
        yield
        if svc.remote:
            await svc.remote.close()
        await svc.batcher.stop()
        svc.close()

    app = FastAPI(title="tunewise", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.svc, app.state.served, app.state.metrics, app.state.batcher = svc, served, svc.metrics, svc.batcher
    for s in served.values():
        why = batch_reason(s) if s.task != "classification" else None
        if why and not svc.relayed(s):
            log.info("%s generates a batch at once, not token by token (its streams carry the finished answer): %s",
                     s.id, why)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return error_response(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.type, exc.param, exc.code, extra=exc.extra)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        # Every response carries a request id; a 5xx body is this fixed message and the traceback
        # goes to the server log under the same id. Answering here, not re-raising, keeps the
        # connection open for the client's next request.
        rid = uuid.uuid4().hex[:16]
        request.state.rid = rid
        response = svc.refusal(request)
        if response is None:
            svc.metrics.in_flight += 1
            try:
                response = await call_next(request)
            except Exception:  # noqa: BLE001 - whatever failed, the client gets the id, the log the details
                log.exception("request %s to %s failed", rid, request.url.path)
                response = internal_error(rid)
            finally:
                svc.metrics.in_flight -= 1
        if response.status_code >= 400:  # successes are counted per model where they are answered
            svc.metrics.observe_request("", request.url.path, response.status_code, 0.0)
        response.headers["x-request-id"] = rid
        return response

    app.include_router(router)
    return app


router = APIRouter()


@router.get("/health")
async def health(request: Request):
    svc: Service = request.app.state.svc
    out = {"status": "ok", "models": list(svc.served), "queue_depth": svc.batcher.depth()}
    if svc.remote:
        out["vllm"] = svc.remote.health()
        if not all(c["running"] for c in out["vllm"]):
            out["status"] = "degraded"
    return out


@router.get("/metrics")
async def prometheus(request: Request):
    svc: Service = request.app.state.svc
    return PlainTextResponse(svc.metrics.render(svc.batcher.depth()), media_type=CONTENT_TYPE)


@router.get("/v1/models")
async def models(request: Request):
    return {"object": "list", "data": [
        {"id": s.id, "object": "model", "created": int(s.run_dir.stat().st_mtime), "owned_by": "tunewise",
         "task": s.task, "labels": s.labels or None, **request.app.state.svc.measured[s.id]}
        for s in request.app.state.svc.served.values()]}



@router.post("/v1/chat/completions")
async def chat(request: Request):
    started = time.perf_counter()
    svc: Service = request.app.state.svc
    body = await svc.body_of(request, "chat")
    s = svc.model_of(body)
    messages = body.get("messages")
    check_message_shapes(messages)
    max_tokens = svc.max_tokens_of(body, s)
    fmt = response_format_of(body)
    notes = svc.notes_for(body)
    if fmt is not None:
        notes.append(format_note(s, fmt, svc.relayed(s)))
    turns = None
    if s.chat:  # measured on chat rows: every turn, rendered as the rows were
        try:
            turns = check_messages(messages)
        except ValueError as e:
            raise ApiError(400, str(e), param="messages") from None
        text = svc.check_text(transcript(turns), "messages")
    else:
        text = svc.check_text(_content(messages[-1]), "messages")
        if len(messages) > 1:
            notes.append(f"the rung answers single inputs as measured; used the last user turn, ignored "
                         f"{len(messages) - 1} earlier message(s)")
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if svc.relayed(s):
        return await _remote_chat(svc, s, body, text, turns, max_tokens, fmt, notes, request.state.rid, started,
                                  (cid, created))
    if body.get("stream") and continuous(s):  # each token is sent as it is decoded
        job = svc.enqueue(s, text, max_tokens, turns, stream=True, fmt=fmt)
        live = LiveStream(svc, s, job, text, started, max_tokens, request.state.rid, fmt)
        return StreamingResponse(live.events(cid, created, notes, (body.get("stream_options") or {})),
                                 media_type="text/event-stream")
    pred, probs = await svc.answer(s, text, max_tokens, "chat", started, turns, fmt)
    content = fmt.content(pred.output, s.task == "classification") if fmt else pred.output
    use = svc.usage(s, pred)
    extra = {"tunewise": {"label": pred.output, "probabilities": probs} if probs else {}}
    if notes:
        extra["tunewise"]["notes"] = notes
    reason = svc.finish(s, use, max_tokens)
    if body.get("stream") and s.task != "classification":
        extra["tunewise"].setdefault("notes", []).append(f"streamed as one finished answer: {batch_reason(s)}")
    if body.get("stream"):
        return StreamingResponse(_sse(cid, created, s.id, content, reason, extra),
                                 media_type="text/event-stream")
    return _completion(cid, created, s.id, content, reason, use, extra)


def _completion(cid: str, created: int, model: str, content: str, reason: str, use: dict, extra: dict) -> dict:
    return {"id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": reason, "logprobs": None}],
            "usage": use, **extra}


async def _remote_chat(svc: Service, s: Served, body: dict, text: str, turns, max_tokens, fmt, notes: list[str],
                       rid: str, started: float, ids: tuple[str, int]):
    """A chat request for a rung a vLLM child serves (serve/proxy.py)."""
    cid, created = ids
    if body.get("stream"):
        events = await proxy.stream(svc, s, text, turns, max_tokens, started, rid, fmt, notes,
                                    body.get("stream_options") or {}, cid, created)
        return StreamingResponse(events, media_type="text/event-stream")
    output, reason, use = await proxy.answer(svc, s, text, turns, max_tokens, "chat", started, rid, fmt)
    return _completion(cid, created, s.id, output, reason, use, {"tunewise": {"notes": notes}} if notes else {})


@router.post("/v1/completions")
async def completions(request: Request):
    started = time.perf_counter()
    svc: Service = request.app.state.svc
    body = await svc.body_of(request, "completions")
    s = svc.model_of(body)
    if body.get("stream"):
        raise ApiError(400, "'stream' is supported on /v1/chat/completions only", param="stream")
    prompts = svc.texts_of(body, "prompt")
    max_tokens = svc.max_tokens_of(body, s)
    if svc.relayed(s):  # relayed to its vLLM child
        done = await asyncio.gather(*(proxy.answer(svc, s, p, None, max_tokens, "completions", started,
                                                   request.state.rid) for p in prompts))
    else:
        preds = await asyncio.gather(*(svc.answer(s, p, max_tokens, "completions", started) for p in prompts))
        done = [(p.output, svc.finish(s, u, max_tokens), u) for p, u in ((p, svc.usage(s, p)) for p, _ in preds)]
    uses = [u for _, _, u in done]
    out = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
           "model": s.id,
           "choices": [{"index": i, "text": text, "finish_reason": reason, "logprobs": None}
                       for i, (text, reason, _) in enumerate(done)],
           "usage": {k: sum(u[k] for u in uses) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
    if notes := svc.notes_for(body):
        out["tunewise"] = {"notes": notes}
    return out


@router.post("/v1/classify")
async def classify(request: Request):
    started = time.perf_counter()
    svc: Service = request.app.state.svc
    body = await svc.body_of(request, "classify")
    s = svc.model_of(body)
    if s.task != "classification":
        raise ApiError(400, f"'{s.id}' is a {s.task} rung; /v1/classify serves classification rungs",
                       param="model", code="not_a_classifier")
    inputs = svc.texts_of(body, "input")
    done = await asyncio.gather(*(svc.answer(s, x, None, "classify", started) for x in inputs))
    return {"object": "list", "model": s.id,
            "data": [{"index": i, "label": pred.output, "probabilities": probs}
                     for i, (pred, probs) in enumerate(done)]}


def _content(message: dict) -> str | None:
    """A message's text: a string, or the text parts of a content list."""
    content = message.get("content")
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "".join(p for p in parts if isinstance(p, str)) if parts else None
    return content


async def _sse(cid: str, created: int, model: str, text: str, reason: str, extra: dict):
    """A finished answer as chat.completion.chunk events: for rungs that answer at once (a label)."""
    yield chunk_event(cid, created, model, {"role": "assistant", "content": ""})
    pieces = text.split(" ")
    for i, piece in enumerate(pieces):
        yield chunk_event(cid, created, model, {"content": piece if i == 0 else " " + piece})
    yield chunk_event(cid, created, model, {}, reason, **extra)
    yield "data: [DONE]\n\n"


class LiveStream:
    """A generation streamed as it is decoded: one event per text delta the engine hands over."""

    def __init__(self, svc: Service, s: Served, job, text: str, started: float, max_tokens, rid: str, fmt=None):
        self.svc, self.s, self.job, self.text, self.started = svc, s, job, text, started
        self.max_tokens, self.rid, self.fmt = max_tokens, rid, fmt

    async def _deltas(self):
        job = self.job
        while True:
            getter = asyncio.ensure_future(job.stream.get())
            done, _ = await asyncio.wait({getter, job.future}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            while not job.stream.empty():
                yield job.stream.get_nowait()
            return

    async def events(self, cid: str, created: int, notes: list[str], options: dict):
        model = self.s.id
        yield chunk_event(cid, created, model, {"role": "assistant", "content": ""})
        sent = ""
        try:
            async for delta in self._deltas():
                sent += delta
                yield chunk_event(cid, created, model, {"content": delta})
            pred, _ = await self.svc.settle(self.job, self.s, self.text, "chat", self.started, self.fmt,
                                            self.max_tokens)
            if pred.output.startswith(sent) and pred.output != sent:  # answered alone after a batch fault
                yield chunk_event(cid, created, model, {"content": pred.output[len(sent):]})
            use = self.svc.usage(self.s, pred)
            extra = {"tunewise": {"notes": notes}} if notes else {}
            if options.get("include_usage"):
                extra["usage"] = use
            yield chunk_event(cid, created, model, {}, self.svc.finish(self.s, use, self.max_tokens), **extra)
        except ApiError as e:  # headers are sent: the error is the stream's last event
            yield stream_error(e)
        except Exception:  # noqa: BLE001 - as a 5xx: a fixed message, the details in the log
            log.exception("request %s to /v1/chat/completions failed while streaming", self.rid)
            yield stream_error(ApiError(500, internal_message(self.rid), type="server_error", code="internal_error"))
        finally:
            if not self.job.future.done():  # the client hung up: the engine drops the sequence
                self.job.future.cancel()
        yield "data: [DONE]\n\n"


def build(targets: list[Path], token: str | None = None, host: str = "127.0.0.1", served: dict | None = None,
          engines=None) -> FastAPI:
    """Load every rung named by ``targets`` (projects or run folders), unless ``served`` holds them
    loaded, and return the app (``engines``: vLLM's running children, serve/vllm.py).

    Limits come from the ``serve:`` section of the first project's tunewise.yaml (or the first run's
    config.yaml); each rung's requests are logged to its own project's
    ``.tunewise/serve/requests.sqlite``.
    """
    from tunewise import workspace as ws
    from tunewise.config import load_config
    from tunewise.rungs.state import project_of, run_config
    from tunewise.serve.registry import expand_targets, load_served

    expand_targets(targets)  # a wrong target fails here, naming it
    first = Path(targets[0])
    settings = load_config(first).serve if (first / "tunewise.yaml").exists() else run_config(first).serve
    served = served if served is not None else load_served(targets)
    logs = {mid: ws.workspace(project_of(s.run_dir)) / "serve" / "requests.sqlite" for mid, s in served.items()}
    return create_app(served, settings, logs, token, host, engines)


def run(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")

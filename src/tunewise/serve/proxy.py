"""Generation for the rungs vLLM serves (``--engine vllm``), relayed by tunewise's front.

The front renders the rung's own prompt to token ids, exactly as the built-in engine does
(instruction, chat template, the request's turns for a rung measured on chat rows), and sends
them to the rung's vLLM process on /v1/completions under the adapter's name, greedy, with the
rung's stop tokens: vLLM's own chat endpoint would apply the base model's template without the
rung's instruction, which is not what the ladder measured. Streamed answers are relayed chunk by
chunk as vLLM sends them. Auth, limits, validation, ``response_format`` and the request log are the
front's, as for every rung; vLLM's own error text goes to the server log, never to the client.
"""

from __future__ import annotations

import json
import logging

import httpx

from tunewise.serve.sse import chunk_event, internal_message, stream_error
from tunewise.serve.validate import ApiError

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=30.0, pool=None)  # read: between two streamed chunks


class Remote:
    """The vLLM children's routes (model id -> process) and one HTTP client to them."""

    def __init__(self, engines):
        self.routes = engines.routes()
        self.key = engines.key
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=TIMEOUT, headers={"Authorization": f"Bearer {self.key}"})

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    def health(self) -> list[dict]:
        children = {id(c): c for _, c in self.routes.values()}.values()
        return [{"port": c.spec["port"], "models": sorted(c.spec["adapters"]), "running": c.exited() is None}
                for c in children]

    def request(self, s, text: str, turns: list[dict] | None, max_tokens: int | None, stream: bool) -> dict:
        """vLLM's /v1/completions body: the rung's prompt as token ids, greedy, its stop tokens."""
        from tunewise.rungs.saved import request_record

        rung = s.rung
        prompt = rung.full_prompt_ids([request_record(text, turns)])[0]
        body = {"model": s.id, "prompt": prompt, "max_tokens": max_tokens or s.config.eval.max_new_tokens,
                "temperature": 0, "stop_token_ids": list(rung.builder().stop_ids), "skip_special_tokens": True,
                "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def send(self, s, body: dict, rid: str) -> httpx.Response:
        """The open response of the rung's process (read it, or stream it and close it); failures as ApiError."""
        url, child = self.routes[s.id]
        try:
            r = await self.client.send(self.client.build_request("POST", f"{url}/completions", json=body),
                                       stream=True)
        except httpx.HTTPError as e:
            why = child.exited()
            log.error("request %s: the vLLM engine for %s is not answering (%s): %s", rid, s.id, type(e).__name__,
                      why or "it still runs")
            gone = " (its process exited)" if why else ""
            raise ApiError(503, f"the vLLM engine serving '{s.id}' is not answering{gone}; the server log holds the "
                           f"details under request id {rid}", type="server_error", code="engine_unavailable") from None
        if r.status_code != 200:
            detail = (await r.aread()).decode("utf-8", "replace")
            await r.aclose()
            log.warning("request %s: vLLM answered %d for %s: %s", rid, r.status_code, s.id, detail[:1000])
            if r.status_code == 400:
                raise ApiError(400, f"the vLLM engine serving '{s.id}' refused the request; the server log holds its "
                               f"reason under request id {rid}", code="engine_refused")
            raise ApiError(502, f"the vLLM engine serving '{s.id}' failed on this request (HTTP {r.status_code}); the "
                           f"server log holds the details under request id {rid}", type="server_error",
                           code="engine_error")
        return r


def _usage(u: dict | None) -> dict:
    u = u or {}
    return {k: int(u.get(k) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


async def answer(svc, s, text: str, turns, max_tokens: int | None, endpoint: str, started: float, rid: str,
                 fmt=None) -> tuple[str, str, dict]:
    """(answer, finish_reason, usage) from the rung's vLLM process; checked, counted and logged."""
    r = await svc.remote.send(s, svc.remote.request(s, text, turns, max_tokens, False), rid)
    try:
        choice = json.loads(await r.aread())
        output = (choice["choices"][0].get("text") or "").strip()
        reason, use = choice["choices"][0].get("finish_reason") or "stop", _usage(choice.get("usage"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        log.exception("request %s: vLLM's answer for %s is not a completion", rid, s.id)
        raise ApiError(502, f"the vLLM engine serving '{s.id}' answered something that is not a completion; the "
                       f"server log holds it under request id {rid}", type="server_error", code="engine_error") from None
    finally:
        await r.aclose()
    svc.book(s, endpoint, text, output, started, fmt=fmt, truncated=reason == "length")
    return output, reason, use


async def stream(svc, s, text: str, turns, max_tokens: int | None, started: float, rid: str, fmt, notes: list[str],
                 options: dict, cid: str, created: int):
    """Open the upstream stream now (so its refusal is an HTTP status), then relay it as chat chunks."""
    r = await svc.remote.send(s, svc.remote.request(s, text, turns, max_tokens, True), rid)
    return _relay(svc, s, r, text, started, rid, fmt, notes, options, cid, created)


async def _relay(svc, s, r: httpx.Response, text: str, started: float, rid: str, fmt, notes, options, cid, created):
    yield chunk_event(cid, created, s.id, {"role": "assistant", "content": ""})
    raw, sent, reason, usage = "", "", None, None
    try:
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if event.get("error"):
                raise ValueError(f"an error event: {str(event['error'])[:1000]}")
            for choice in event.get("choices") or []:
                raw += choice.get("text") or ""
                reason = choice.get("finish_reason") or reason
            usage = event.get("usage") or usage
            shown = raw.strip()  # as the whole answer reads: leading space dropped, trailing space held back
            if len(shown) > len(sent):
                yield chunk_event(cid, created, s.id, {"content": shown[len(sent):]})
                sent = shown
        svc.book(s, "chat", text, raw.strip(), started, fmt=fmt, truncated=reason == "length")
        extra = {"tunewise": {"notes": notes}} if notes else {}
        if options.get("include_usage"):
            extra["usage"] = _usage(usage)
        yield chunk_event(cid, created, s.id, {}, reason or "stop", **extra)
    except ApiError as e:
        yield stream_error(e)
    except (httpx.HTTPError, ValueError, AttributeError, TypeError):
        log.exception("request %s: relaying vLLM's stream for %s failed", rid, s.id)
        yield stream_error(ApiError(502, internal_message(rid), type="server_error", code="engine_error"))
    finally:
        await r.aclose()
    yield "data: [DONE]\n\n"

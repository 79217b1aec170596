"""A stand-in for the `vllm` executable (`vllm serve BASE --host H --port P ... --lora-modules a=b ...`),
standard library only, for the tests of `tunewise serve --engine vllm` on a machine without a GPU.

It serves OpenAI-style /health, /v1/models, /v1/completions and /v1/chat/completions (streamed or
not) and demands the API key given in VLLM_API_KEY on /v1, as vLLM does. An answer of n tokens is
" t1 t2 ... tn" (n = max_tokens), one token per streamed chunk. Environment, set by the test:

FAKE_VLLM_DIR   where it writes argv-<port>.json (argv, pid, whether it got a key) and appends
                every /v1 request it answers to requests-<port>.jsonl (body, Authorization header)
FAKE_VLLM_DIE   "1": write a few log lines, the last one an out-of-memory error, and exit 1
FAKE_VLLM_STALL "1": write its first log line, then never get ready (sleeps 120 s before listening)
FAKE_VLLM_GATE  a file path: after the first streamed token, wait (up to 20 s) until it exists;
                requests-<port>.jsonl then records whether the gate opened or the wait timed out
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def options(argv: list[str]) -> dict:
    opts, lora, i = {"base": argv[1]}, {}, 2
    while i < len(argv):
        if argv[i] == "--lora-modules":
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                name, path = argv[i].split("=", 1)
                lora[name] = path
                i += 1
            continue
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            opts[argv[i].lstrip("-")] = argv[i + 1]
            i += 2
        else:
            opts[argv[i].lstrip("-")] = True
            i += 1
    opts["lora"] = lora
    return opts


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # a streamed body ends when the connection closes

    def log_message(self, *args):
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("authorization") == f"Bearer {os.environ.get('VLLM_API_KEY')}":
            return True
        self._json(401, {"error": "Unauthorized"})
        return False

    def do_GET(self):
        if self.path == "/health":
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.path == "/v1/models" and self._authorized():
            ids = [OPTS["base"], *OPTS["lora"]]
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in ids]})
        elif self.path != "/v1/models":
            self._json(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        record = {"path": self.path, "body": body, "authorization": self.headers.get("authorization")}
        if not self._authorized():
            return
        if body.get("model") not in [OPTS["base"], *OPTS["lora"]]:
            self._json(404, {"message": f"The model `{body.get('model')}` does not exist.", "code": 404})
            return
        chat = self.path == "/v1/chat/completions"
        n = int(body.get("max_tokens") or 16)
        tokens = [f" t{i + 1}" for i in range(n)]
        usage = {"prompt_tokens": len(body.get("prompt") or []), "completion_tokens": n,
                 "total_tokens": len(body.get("prompt") or []) + n}
        if not body.get("stream"):
            text = "".join(tokens)
            choice = {"index": 0, "finish_reason": "length", **(
                {"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
            _append(record)
            self._json(200, {"id": "cmpl-fake", "object": "chat.completion" if chat else "text_completion",
                             "model": body["model"], "choices": [choice], "usage": usage})
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for i, tok in enumerate(tokens):
            last = i == n - 1
            delta = {"delta": {"content": tok}} if chat else {"text": tok}
            event = {"id": "cmpl-fake", "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "length" if last else None, **delta}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            if i == 0 and os.environ.get("FAKE_VLLM_GATE"):
                record["gate"] = _wait_for(os.environ["FAKE_VLLM_GATE"], 20)
        if (body.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        _append(record)


def _wait_for(path: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "timed out"
        time.sleep(0.02)
    return "opened"


def _append(record: dict) -> None:
    with open(os.path.join(os.environ["FAKE_VLLM_DIR"], f"requests-{OPTS['port']}.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    assert sys.argv[1] == "serve", sys.argv
    OPTS = options(sys.argv[1:])
    with open(os.path.join(os.environ["FAKE_VLLM_DIR"], f"argv-{OPTS['port']}.json"), "w") as f:
        json.dump({"argv": ["vllm", *sys.argv[1:]], "pid": os.getpid(), "key": bool(os.environ.get("VLLM_API_KEY"))}, f)
    print(f"INFO loading {OPTS['base']} with {len(OPTS['lora'])} LoRA adapter(s)", flush=True)
    if os.environ.get("FAKE_VLLM_DIE") == "1":
        print("INFO initialising the engine", flush=True)
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB", file=sys.stderr, flush=True)
        sys.exit(1)
    if os.environ.get("FAKE_VLLM_STALL") == "1":
        time.sleep(120)
    ThreadingHTTPServer((OPTS["host"], int(OPTS["port"])), Handler).serve_forever()

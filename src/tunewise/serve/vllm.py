"""`tunewise serve --engine vllm`: vLLM's OpenAI server for the base model with the ladder's LoRA
adapters (multi-LoRA), started as child processes behind tunewise's front (auth, limits, request
log, /v1/classify), and which rungs stay on the built-in engine.

vLLM serves plain LoRA adapters of generation rungs; DoRA, IA3, prefix and prompt tuning,
classification by label likelihood and the prompting rungs' own prompts stay on the built-in
engine, each named with its reason. The children listen on loopback only and take an API key the
front holds, so the front is the one way in. Verified here with a stand-in ``vllm`` executable
(tests/serve/fake_vllm.py), not on a GPU.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM's --max-lora-rank accepts
SKIP_GPU_CHECK = "TUNEWISE_VLLM_SKIP_GPU_CHECK"  # for tests only: "1" when a stand-in `vllm` runs without a GPU
LOOPBACK = "127.0.0.1"  # the children's address whatever the front's: only the front reaches them


def adapter_of(s) -> tuple[Path | None, str | None]:
    """(the PEFT folder vLLM can load, None) or (None, why the rung stays on the built-in engine)."""
    from tunewise.rungs.state import read_manifest

    if s.task == "classification":
        return None, "classification is scored by label likelihood, which vLLM's API does not do"
    weights = s.run_dir / read_manifest(s.run_dir).get("weights", "")
    config = weights / "adapter_config.json"
    if not config.exists():
        return None, "not a LoRA adapter (prompting rungs render their own prompt; full weights are their own model)"
    peft = json.loads(config.read_text(encoding="utf-8"))
    if peft.get("peft_type") != "LORA" or peft.get("use_dora"):
        kind = "DoRA" if peft.get("use_dora") else peft.get("peft_type", "?")
        return None, f"a {kind} adapter: vLLM serves plain LoRA adapters only"
    return weights, None


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host``:``port`` now (bound as uvicorn binds, then let go)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def launch_plan(served: dict, port: int = 8001, host: str = LOOPBACK, free=None) -> dict:
    """One vLLM process per base model with its LoRA adapters; every other rung with its reason.

    The processes listen on ports from ``port`` up; with ``free`` (a port -> bool), a port it calls
    taken is passed over and listed in the plan's ``ports_in_use``."""
    from tunewise.models.load import resolve
    from tunewise.rungs.state import project_of

    bases: dict[str, list[tuple[str, Path]]] = {}
    builtin: dict[str, str] = {}
    for mid, s in served.items():
        folder, why = adapter_of(s)
        if folder is None:
            builtin[mid] = why
            continue
        bases.setdefault(str(resolve(s.config.model.base, project_of(s.run_dir))), []).append((mid, folder.resolve()))
    processes, in_use, next_port = [], [], port
    for base, adapters in sorted(bases.items()):
        while free is not None and not free(next_port):
            in_use.append(next_port)
            next_port += 1
        child, next_port = next_port, next_port + 1
        rank = max(json.loads((f / "adapter_config.json").read_text())["r"] for _, f in adapters)
        argv = ["vllm", "serve", base, "--host", host, "--port", str(child), "--enable-lora",
                "--max-lora-rank", str(next(r for r in RANKS if r >= rank)), "--max-loras", str(len(adapters)),
                "--lora-modules", *[f"{mid}={folder}" for mid, folder in adapters]]
        processes.append({"base": base, "adapters": {mid: str(f) for mid, f in adapters}, "argv": argv,
                          "port": child, "url": f"http://{host}:{child}/v1"})
    return {"processes": processes, "builtin": builtin, "ports_in_use": in_use}


def missing() -> str | None:
    """Why vLLM cannot run here, or None."""
    if shutil.which("vllm") is None:
        return "vLLM is not installed (no `vllm` executable on PATH; pip install vllm)"
    if os.environ.get(SKIP_GPU_CHECK) == "1":
        return None
    import torch

    if not torch.cuda.is_available():
        return "vLLM needs a GPU and none is visible"
    return None


def builtin_line(plan: dict) -> str:
    return ", ".join(f"{m} ({why})" for m, why in plan["builtin"].items()) or "none"


def plan_or_refuse(served: dict, folder: Path, port: int, host: str = LOOPBACK) -> dict:
    """The plan for children on the free ports from ``port`` + 1 (the front's is ``host``:``port``),
    written to ``folder``/vllm-launch.json, if vLLM can run it here; else refuse, saying why. A front
    port in use is a refusal before anything starts (vLLM takes minutes to load)."""
    from tunewise import workspace as ws
    from tunewise.serve.registry import ServeError

    if not port_free(host, port):
        raise ServeError(f"--engine vllm: port {port} on {host} is in use (choose another with --port); "
                         "nothing was started")
    plan = launch_plan(served, port + 1, free=lambda p: p != port and port_free(LOOPBACK, p))
    path = ws.write_json(Path(folder) / "vllm-launch.json", plan)
    why = missing()
    if why is None and not plan["processes"]:
        why = "no rung here is one vLLM serves"
    if why is not None:
        raise ServeError(f"--engine vllm: {why}; nothing was started. The launch plan is in {path} "
                         f"({len(plan['processes'])} vLLM process(es)); on the built-in engine: {builtin_line(plan)}")
    return plan


@dataclass
class Child:
    """One running ``vllm serve``: its plan entry, process and log file (stdout and stderr)."""

    spec: dict
    proc: subprocess.Popen
    log_path: Path

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(nothing)"

    def exited(self) -> str | None:
        """Why the process is gone, with the end of its log; None while it runs."""
        code = self.proc.poll()
        if code is None:
            return None
        return (f"`{self.name}` exited with code {code}; the last lines of {self.log_path}:\n{self.tail()}")

    @property
    def name(self) -> str:
        return f"{' '.join(self.spec['argv'][:3])} --port {self.spec['port']}"


class Engines:
    """The vLLM children of one server. Each runs in its own process group, so stopping it stops
    the workers it forked; ``key`` is the API key they demand (given in their environment, not argv)."""

    def __init__(self, plan: dict, folder: Path):
        self.plan, self.folder = plan, Path(folder)
        self.key = secrets.token_urlsafe(24)
        self.children: list[Child] = []

    def routes(self) -> dict[str, tuple[str, Child]]:
        """model id -> (its process's /v1 URL, the process): the adapter answers under the model id."""
        return {mid: (c.spec["url"], c) for c in self.children for mid in c.spec["adapters"]}

    def start(self) -> None:
        env = {**os.environ, "VLLM_API_KEY": self.key}
        self.folder.mkdir(parents=True, exist_ok=True)
        for i, spec in enumerate(self.plan["processes"]):
            path = self.folder / f"vllm-{i}.log"
            with open(path, "wb") as out:  # the child holds its own descriptor
                proc = subprocess.Popen(spec["argv"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
            self.children.append(Child(spec, proc, path))
            log.info("started %s (pid %d); its log: %s", " ".join(spec["argv"][:3]), proc.pid, path)

    def wait_ready(self, timeout: float) -> None:
        """Until every child answers /health and lists its adapters on /v1/models; a child that exits
        or a deadline that passes is a ServeError naming the process and the end of its log."""
        import httpx

        from tunewise.serve.registry import ServeError

        deadline = time.monotonic() + timeout
        waiting = list(self.children)
        with httpx.Client(timeout=5, headers={"Authorization": f"Bearer {self.key}"}) as http:
            while waiting:
                for c in list(waiting):
                    if (why := c.exited()) is not None:
                        raise ServeError(f"--engine vllm: {why}")
                    if _ready(http, c):
                        waiting.remove(c)
                if waiting and time.monotonic() > deadline:
                    c = waiting[0]
                    raise ServeError(f"--engine vllm: `{c.name}` was not ready within "
                                     f"{timeout:.0f} s; the last lines of {c.log_path}:\n{c.tail()}")
                if waiting:
                    time.sleep(0.25)

    def stop(self, grace: float = 10.0) -> None:  # within tunewise.interrupt's 15 s before it ends the process
        """SIGTERM to each child's process group, then SIGKILL to what is left after ``grace`` seconds."""
        for c in self.children:
            _signal(c.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in self.children:
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop within %.0f s of SIGTERM; killing it", c.proc.pid, grace)
                _signal(c.proc, signal.SIGKILL)
                c.proc.wait()
        self.children = []


def _ready(http, c: Child) -> bool:
    import httpx

    base = c.spec["url"].removesuffix("/v1")
    try:
        if http.get(f"{base}/health").status_code != 200:
            return False
        listed = {m.get("id") for m in http.get(f"{c.spec['url']}/models").json().get("data", [])}
    except (httpx.HTTPError, ValueError, AttributeError):  # not listening yet, or not yet answering JSON
        return False
    return set(c.spec["adapters"]) <= listed


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # already gone
        pass


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextmanager
def running(plan: dict, folder: Path, timeout: float):
    """The started, ready children for the ``with`` block, stopped when it ends however it ends, so
    on Ctrl-C, SIGTERM (uvicorn re-raises it after its graceful shutdown) and errors alike."""
    engines = Engines(plan, folder)
    # The command line's handler (tunewise.interrupt) already turns SIGTERM into KeyboardInterrupt;
    # used from Python, the default would end the process without stopping the children.
    replace = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if replace else None
    try:
        engines.start()
        engines.wait_ready(timeout)
        yield engines
    finally:
        engines.stop()
        if replace:
            signal.signal(signal.SIGTERM, previous)

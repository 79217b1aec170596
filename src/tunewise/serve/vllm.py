"""`tunewise serve --engine vllm`: the launch configuration of vLLM's OpenAI server for the base
model with the ladder's LoRA adapters (multi-LoRA), and which rungs stay on the built-in engine.

Only the configuration is built and checked here: this project's machines have no GPU, so starting
vLLM behind tunewise's front (auth, limits, request log) is not done; the command refuses and says
so, writing the plan for a GPU machine. vLLM serves plain LoRA adapters; DoRA, IA3, prefix and
prompt tuning, classification by label likelihood and the prompting rungs' own prompts stay on the
built-in engine, each named with its reason.
"""

from __future__ import annotations

import json
from pathlib import Path

RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM's --max-lora-rank accepts


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


def launch_plan(served: dict, host: str = "127.0.0.1", port: int = 8001) -> dict:
    """One vLLM process per base model with its LoRA adapters; every other rung with its reason."""
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
    processes = []
    for i, (base, adapters) in enumerate(sorted(bases.items())):
        rank = max(json.loads((f / "adapter_config.json").read_text())["r"] for _, f in adapters)
        argv = ["vllm", "serve", base, "--host", host, "--port", str(port + i), "--enable-lora",
                "--max-lora-rank", str(next(r for r in RANKS if r >= rank)), "--max-loras", str(len(adapters)),
                "--lora-modules", *[f"{mid}={folder}" for mid, folder in adapters]]
        processes.append({"base": base, "adapters": {mid: str(f) for mid, f in adapters}, "argv": argv,
                          "url": f"http://{host}:{port + i}/v1"})
    return {"processes": processes, "builtin": builtin}


def missing() -> str | None:
    """Why vLLM cannot run here, or None."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install vllm)"
    import torch

    if not torch.cuda.is_available():
        return "vLLM needs a GPU and none is visible"
    return "running vLLM behind tunewise's front (auth, limits, request log) is not built yet"


def refuse_with_plan(served: dict, folder: Path, host: str, port: int) -> None:
    """Write the plan to ``folder``/vllm-launch.json and refuse, saying why vLLM was not started."""
    from tunewise import workspace as ws
    from tunewise.serve.registry import ServeError

    plan = launch_plan(served, host, port + 1)
    path = ws.write_json(Path(folder) / "vllm-launch.json", plan)
    stays = ", ".join(f"{m} ({why})" for m, why in plan["builtin"].items()) or "none"
    raise ServeError(f"--engine vllm: {missing()}; nothing was started. The launch plan is in {path} "
                     f"({len(plan['processes'])} vLLM process(es)); on the built-in engine: {stays}")

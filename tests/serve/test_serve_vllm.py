"""`--engine vllm` on a machine without a GPU: the launch configuration it generates is checked
(adapters, rank, ports, which rungs stay on the built-in engine and why); nothing is started."""

from __future__ import annotations

import json
from pathlib import Path

from tunewise.serve.vllm import launch_plan


def test_launch_plan_serves_lora_adapters_and_names_what_stays(served):
    gen_lora = dict(served)
    plan = launch_plan(served, port=9001)
    # the tiny projects' adapters are on a classification task: scored by label likelihood, so none go to vLLM
    assert plan["processes"] == []
    assert "label likelihood" in plan["builtin"]["tiny/lora"]
    assert "not a LoRA adapter" in plan["builtin"]["tiny-gen/zero-shot"]

    lora = served["tiny/lora"]
    for s in (lora, served["tiny/dora"]):  # the same adapters, as if trained on a generation task
        gen_lora[s.id] = type(s)(**{**s.__dict__, "task": "generation"})
    plan = launch_plan(gen_lora, host="127.0.0.1", port=9001)
    (proc,) = plan["processes"]
    argv = proc["argv"]
    assert argv[:3] == ["vllm", "serve", proc["base"]] and "--enable-lora" in argv
    assert argv[argv.index("--port") + 1] == "9001" and proc["url"] == "http://127.0.0.1:9001/v1"
    module = argv[argv.index("--lora-modules") + 1]
    name, path = module.split("=", 1)
    config = json.loads((Path(path) / "adapter_config.json").read_text())
    assert name == "tiny/lora" and int(argv[argv.index("--max-lora-rank") + 1]) >= config["r"]
    assert argv[argv.index("--max-loras") + 1] == "1"
    assert "DoRA" in plan["builtin"]["tiny/dora"]  # vLLM serves plain LoRA only


def test_engine_vllm_without_a_gpu_refuses_and_writes_the_plan(served_projects):
    from typer.testing import CliRunner

    from tunewise.cli import app

    cls = served_projects[0]
    r = CliRunner().invoke(app, ["serve", str(cls), "--engine", "vllm"])
    assert r.exit_code == 2 and "--engine vllm:" in r.output and "nothing was started" in r.output
    assert "Traceback" not in r.output
    plan = json.loads((cls / ".tunewise" / "serve" / "vllm-launch.json").read_text())
    assert set(plan["builtin"]) == {"tiny/zero-shot", "tiny/lora", "tiny/dora"}

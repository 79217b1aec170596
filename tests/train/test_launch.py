"""Launch commands: torchrun for DDP, accelerate configs for FSDP and ZeRO, clear errors on CPU."""

from __future__ import annotations

import pytest
import torch

from tunewise.train.launch import LaunchError, accelerate_config, child_args, launch_command, torchrun_command


def test_torchrun_command_and_child_args_do_not_collide(tmp_path):
    cmd = torchrun_command(2, nnodes=2, node_rank=1, master="10.0.0.1:29600")
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc_per_node=2" in cmd and "--nnodes=2" in cmd and "--master_addr=10.0.0.1" in cmd
    args = child_args(tmp_path, tmp_path / "run", "lora", ["train.epochs=2"], True)
    assert args[:2] == ["-m", "tunewise.train.launch"]
    assert all(not a.startswith("--") or a.startswith("--tw-") for a in args)


@pytest.mark.parametrize(("strategy", "kind"), [("fsdp", "FSDP"), ("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED")])
def test_accelerate_configs_for_multi_gpu_and_multi_node(strategy, kind):
    cfg = accelerate_config(strategy, nproc=8, nnodes=2, node_rank=1, master="10.0.0.1:29600")
    assert cfg["distributed_type"] == kind and cfg["num_processes"] == 16 and cfg["num_machines"] == 2
    assert cfg["machine_rank"] == 1 and cfg["main_process_ip"] == "10.0.0.1"
    if kind == "DEEPSPEED":
        assert cfg["deepspeed_config"]["zero_stage"] == int(strategy[-1])


def test_fsdp_on_cpu_says_to_use_ddp(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(LaunchError, match="on CPU use --strategy ddp"):
        launch_command("fsdp", 2, tmp_path)

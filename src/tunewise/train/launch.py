"""Multi-process training: torchrun for DDP (CPU with gloo, or GPUs), accelerate for FSDP / ZeRO.

On CPU, ``accelerate launch --cpu --num_processes 2`` silently starts ONE process, so DDP always
goes through torchrun; each process runs ``python -m tunewise.train.launch`` and the Trainer reads
the rank from the environment (``use_cpu=True`` plus gloo on CPU). The parent prepares the dataset
and the run folder first so the children never race to create them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from tunewise.assets import require_extra
from tunewise.workspace import write_text

STRATEGIES = ("ddp", "fsdp", "zero2", "zero3")


class LaunchError(RuntimeError):
    """A multi-process run could not start or one of its processes failed."""


def child_args(project: Path, run_dir: Path, method: str | None, overrides: list[str], resume: bool) -> list[str]:
    # Prefixed names: the launchers' argparse would otherwise claim --run, --set, … as their own.
    args = ["-m", "tunewise.train.launch", str(project), "--tw-run", str(run_dir)]
    if method:
        args += ["--tw-method", method]
    for o in overrides:
        args += ["--tw-set", o]
    return args + (["--tw-resume"] if resume else [])


def torchrun_command(nproc: int, nnodes: int = 1, node_rank: int = 0, master: str = "127.0.0.1:29500") -> list[str]:
    addr, _, port = master.partition(":")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}",
           f"--node_rank={node_rank}", f"--master_addr={addr}", f"--master_port={port or 29500}"]
    return cmd


def accelerate_config(strategy: str, nproc: int, nnodes: int = 1, node_rank: int = 0,
                      master: str = "127.0.0.1:29500") -> dict:
    """An accelerate config for FSDP or DeepSpeed ZeRO-2/3 over ``nnodes`` x ``nproc`` GPUs."""
    addr, _, port = master.partition(":")
    base = {
        "compute_environment": "LOCAL_MACHINE", "num_machines": nnodes, "machine_rank": node_rank,
        "num_processes": nproc * nnodes, "main_process_ip": addr, "main_process_port": int(port or 29500),
        "mixed_precision": "no", "use_cpu": False, "rdzv_backend": "static", "same_network": True,
    }
    if strategy == "fsdp":
        return {**base, "distributed_type": "FSDP", "fsdp_config": {
            "fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "SHARDED_STATE_DICT", "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_reshard_after_forward": True,
        }}
    stage = {"zero2": 2, "zero3": 3}[strategy]
    return {**base, "distributed_type": "DEEPSPEED", "deepspeed_config": {
        "zero_stage": stage, "offload_optimizer_device": "none", "offload_param_device": "none",
        "zero3_init_flag": stage == 3, "zero3_save_16bit_model": stage == 3,
    }}


def launch_command(strategy: str, nproc: int, run_dir: Path, nnodes: int = 1, node_rank: int = 0,
                   master: str = "127.0.0.1:29500") -> list[str]:
    if strategy == "ddp":
        return torchrun_command(nproc, nnodes, node_rank, master)
    import torch

    if strategy in ("zero2", "zero3"):
        require_extra("deepspeed", "deepspeed", f"--strategy {strategy}")
    if not torch.cuda.is_available():
        raise LaunchError(f"--strategy {strategy} needs CUDA GPUs (none found); on CPU use --strategy ddp")
    config_file = run_dir / f"accelerate-{strategy}.yaml"
    write_text(config_file, yaml.safe_dump(accelerate_config(strategy, nproc, nnodes, node_rank, master)))
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]


def launch(project: Path, method: str | None, nproc: int, overrides: list[str] | None = None,
           resume: bool = False, run: Path | None = None, strategy: str = "ddp", nnodes: int = 1,
           node_rank: int = 0, master: str = "127.0.0.1:29500") -> Path:
    """Run ``tunewise train`` in ``nproc`` processes per node; return the run folder."""
    from tunewise.data.resolve import resolve_splits
    from tunewise.train.run import check_resume_config, resolve_config, run_folder

    if strategy not in STRATEGIES:
        raise LaunchError(f"--strategy {strategy}: expected one of {', '.join(STRATEGIES)}")
    overrides = list(overrides or [])
    config = resolve_config(project, method, overrides)
    resolve_splits(config, project, "tunewise train")  # prepare once here: the processes must not race to
    run_dir = run_folder(project, config.train.method, resume, run)
    if resume:
        check_resume_config(run_dir, config)
    cmd = launch_command(strategy, nproc, run_dir, nnodes, node_rank, master)
    cmd += child_args(project, run_dir, method, overrides, resume)
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise LaunchError(f"{' '.join(cmd[:4])} …: a training process exited with status {done.returncode}")
    return run_dir


def main(argv: list[str] | None = None) -> None:
    """Entry point of each process started by torchrun or accelerate."""
    from tunewise.assets import offline
    from tunewise.train.run import train_project

    offline()
    p = argparse.ArgumentParser(prog="tunewise.train.launch")
    p.add_argument("project", type=Path)
    p.add_argument("--tw-run", dest="run", type=Path, required=True)
    p.add_argument("--tw-method", dest="method")
    p.add_argument("--tw-set", dest="overrides", action="append", default=[])
    p.add_argument("--tw-resume", dest="resume", action="store_true")
    a = p.parse_args(argv)
    train_project(a.project, a.method, a.overrides, a.resume, a.run)


if __name__ == "__main__":
    main()

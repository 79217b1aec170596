"""The GPU catalogue (gpus.yaml): memory, peak FLOP/s, memory bandwidth, hourly price and sources.

It sits below every stage because two read it: `tunewise estimate` (does a run fit, how long does it
take) and the cost model (tunewise.evaluate.cost: what a request or a training run costs on a GPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

REQUIRED = ("memory_gib", "tflops", "bf16", "memory_gbps", "hourly_usd")


class GpuError(ValueError):
    """A bad GPU name or catalogue; the message names it (and the file)."""


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    tflops: float
    bf16: bool
    memory_gbps: float
    hourly_usd: float
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    source: str = ""


@dataclass(frozen=True)
class Utilisation:
    """The shares of a GPU's peaks a real run sustains, and where each figure comes from."""

    mfu: float
    mfu_source: str
    bandwidth_share: float
    bandwidth_share_source: str


def catalogue_path() -> Path | None:
    """Your edited catalogue, $TUNEWISE_HOME/gpus.yaml (default ~/.cache/tunewise), if you made one."""
    home = Path(os.environ.get("TUNEWISE_HOME") or Path.home() / ".cache" / "tunewise")
    return home / "gpus.yaml" if (home / "gpus.yaml").is_file() else None


def _read(path: Path | None) -> tuple[dict, str]:
    path = path or catalogue_path()
    where = str(path) if path else "tunewise/gpus.yaml"
    text = Path(path).read_text(encoding="utf-8") if path else (
        resources.files("tunewise").joinpath("gpus.yaml").read_text(encoding="utf-8"))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise GpuError(f"{where}: not a GPU catalogue (YAMLError: {e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), dict):
        raise GpuError(f"{where}: not a GPU catalogue; expected gpus: {{NAME: {{{', '.join(REQUIRED)}}}}}")
    return data, where


def load_gpus(path: Path | None = None) -> dict[str, Gpu]:
    """The GPU catalogue: ``path``, else your copy in $TUNEWISE_HOME, else gpus.yaml in the package."""
    data, where = _read(path)
    gpus = {}
    for name, spec in data["gpus"].items():
        missing = [k for k in REQUIRED if not isinstance(spec, dict) or k not in spec]
        if missing:
            raise GpuError(f"{where}: not a GPU catalogue: gpus.{name} has no {', '.join(missing)} "
                           f"(each GPU needs {', '.join(REQUIRED)})")
        try:
            gpus[name] = Gpu(name, **spec)
        except TypeError as e:
            raise GpuError(f"{where}: not a GPU catalogue: gpus.{name}: {e}") from None
    return gpus


def load_utilisation(path: Path | None = None) -> Utilisation:
    """The utilisation figures of the catalogue (its ``utilisation:`` section), with their sources."""
    data, where = _read(path)
    u = data.get("utilisation")
    try:
        found = Utilisation(**u)
    except TypeError:
        raise GpuError(f"{where}: needs a utilisation section: mfu, mfu_source, bandwidth_share, "
                       "bandwidth_share_source") from None
    for key in ("mfu", "bandwidth_share"):
        if not 0 < getattr(found, key) <= 1:
            raise GpuError(f"{where}: utilisation.{key} {getattr(found, key)}: must be in (0, 1]")
    return found


def find_gpu(name: str, gpus: dict[str, Gpu]) -> Gpu:
    """A catalogue GPU by name, ignoring case and dashes; a unique prefix will do (`h100`, `4090`)."""
    def norm(s: str) -> str:
        return "".join(c for c in s.lower() if c.isalnum())

    wanted = norm(name)
    exact = [g for key, g in gpus.items() if norm(key) == wanted]
    partial = [g for key, g in gpus.items() if wanted and (norm(key).startswith(wanted) or
                                                           norm(key).removeprefix("rtx").startswith(wanted))]
    if exact or len(partial) == 1:
        return (exact or partial)[0]
    hint = f"it could be {' or '.join(g.name for g in partial)}" if partial else "add it to gpus.yaml"
    raise GpuError(f"--gpu {name!r}: not in the catalogue ({', '.join(gpus)}); {hint}")

"""A fitted rung's saved state in its run folder: the manifest, arrays, and the paths it resolves.

Every rung imports this module to save and load itself; ``tunewise.rungs.saved`` turns a run folder
back into its rung (its class from ``tunewise.rungs.table``, which imports every rung). Every rung writes ``rung.json`` (its name and format) next to what it learned: JSON for examples,
passages and label lists, safetensors for arrays and weights, PEFT adapter folders for adapters.
Never pickle: a run folder handed around must not be able to run code when loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tunewise import workspace as ws
from tunewise.config import ProjectConfig, load_config
from tunewise.models.load import ModelError

FORMAT = 1
MANIFEST = "rung.json"


class RungLoadError(ModelError):
    """A run folder that cannot be loaded as a rung; the message names the file (a user error the CLI prints)."""


def write_manifest(run_dir: Path, name: str, **fields) -> None:
    ws.write_json(Path(run_dir) / MANIFEST, {"rung": name, "format": FORMAT, **fields})


def read_manifest(run_dir: Path) -> dict:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise RungLoadError(f"{path}: no such file (the run predates saved rungs, or its rung never finished fitting)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RungLoadError(f"{path}: not valid JSON ({e})") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("rung"), str):
        raise RungLoadError(f"{path}: field 'format': expected {FORMAT} with a 'rung' name, got {manifest!r}")
    return manifest


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    with ws.atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    if not Path(path).exists():
        raise RungLoadError(f"{path}: no such file")
    return load_file(str(path))


def project_of(run_dir: Path) -> Path:
    """``<project>/.tunewise/runs/<run>`` -> ``<project>`` (relative paths in config.yaml resolve there)."""
    run_dir = Path(run_dir).resolve()
    if run_dir.parent.name == "runs" and run_dir.parent.parent.name == ws.WORKSPACE:
        return run_dir.parent.parent.parent
    return run_dir.parent


def run_config(run_dir: Path) -> ProjectConfig:
    return load_config(Path(run_dir) / "config.yaml")


"""A fitted rung's saved state in its run folder, and ``load_rung`` to get the rung back without refitting.

Every rung writes ``rung.json`` (its name and format) next to what it learned: JSON for examples,
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


def rung_class(name: str):
    from tunewise.config import METHODS
    from tunewise.rungs.encoder import EmbeddingClassifier, EncoderFinetune
    from tunewise.rungs.finetuned import FinetunedRung, LoraRung
    from tunewise.rungs.prompting import FewShot, ZeroShot
    from tunewise.rungs.rag import Rag

    table = {"zero-shot": ZeroShot, "few-shot": FewShot, "rag": Rag,
             "embedding-classifier": EmbeddingClassifier, "encoder-finetune": EncoderFinetune,
             **{m: FinetunedRung for m in METHODS}, "lora": LoraRung}
    if name not in table:
        raise RungLoadError(f"unknown rung '{name}' (known: {', '.join(table)})")
    return table[name]


def load_rung(run_dir: Path, project: Path | None = None, base: tuple | None = None):
    """The fitted rung saved in ``run_dir``, ready to ``predict``, built from its config.yaml and saved state.

    ``base`` is an already loaded ``(model, tokenizer, folder)`` for the LLM rungs to share; by
    default each loads the base named in the run's config.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    config = run_config(run_dir)
    project = Path(project) if project is not None else project_of(run_dir)
    return rung_class(manifest["rung"]).load(run_dir, config, project, manifest, base=base)


def llm_base(config: ProjectConfig, project: Path, base: tuple | None) -> tuple:
    from tunewise.models.load import load

    return base if base is not None else load(config.model.base, project)


def request_record(text: str, turns: list[dict] | None = None):
    """An input as a saved rung answers it outside the ladder (the server, the web app's Compare):
    a rung measured on chat rows gets the request's checked turns in ``meta["messages"]`` and renders
    them as it rendered the rows' (``text`` is then their transcript, as a chat row's input is)."""
    import uuid

    from tunewise.core import Record

    return Record(id=uuid.uuid4().hex, input=text, target=None, meta={"messages": turns} if turns else {})


def label_probabilities(scores: dict[str, float]) -> dict[str, float]:
    """Label log-likelihoods -> each label's share of probability among the labels."""
    from scipy.special import softmax

    return dict(zip(scores, (float(p) for p in softmax(list(scores.values()))), strict=True))

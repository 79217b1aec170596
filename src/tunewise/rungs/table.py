"""The class of every rung in the table of rungs (``tunewise.rungspec``), and the one way to build one.

``rungspec`` holds what each rung is as plain data (so the config and training can read it); this
module adds the class, which needs every rung module. The ladder and ``tunewise curve`` build rungs
with ``build_rung``; ``tunewise.rungs.saved.load_rung`` loads a saved one through ``rung_class``.
"""

from __future__ import annotations

from pathlib import Path

from tunewise.config import ConfigError, ProjectConfig, config_path
from tunewise.rungs.base import ProgressFn, RunContext, no_progress
from tunewise.rungs.encoder import EmbeddingClassifier, EncoderFinetune
from tunewise.rungs.finetuned import FINE_TUNED
from tunewise.rungs.prompting import FewShot, ZeroShot
from tunewise.rungs.rag import Rag
from tunewise.rungs.state import RungLoadError
from tunewise.rungspec import NAMES, RUNGS

CLASSES: dict[str, type] = {c.name: c for c in (ZeroShot, FewShot, Rag, EmbeddingClassifier, EncoderFinetune,
                                                *FINE_TUNED)}
if set(CLASSES) != set(RUNGS):  # a rung declared without a class, or a class without an entry
    raise ImportError(f"tunewise.rungs.table: classes {sorted(CLASSES)} do not match the table of rungs {sorted(RUNGS)}")


def rung_class(name: str) -> type:
    """The class of the rung ``name`` (a saved run's rung.json names it)."""
    if name not in CLASSES:
        raise RungLoadError(f"unknown rung '{name}' (known: {', '.join(NAMES)})")
    return CLASSES[name]


def build_rung(name: str, config: ProjectConfig, project: Path, run_dir: Path, progress: ProgressFn = no_progress,
               base: tuple | None = None):
    """A new, unfitted rung ``name`` for the ladder or the curve. An LLM rung runs on ``base``, by
    default a fresh copy of ``model.base`` per rung: PEFT injects adapters into the model it wraps."""
    if name not in RUNGS:
        raise ConfigError(f"{config_path(project)}: unknown rung '{name}' (known: {', '.join(NAMES)})")
    ctx = RunContext(project, run_dir, progress, base)
    return CLASSES[name](config, ctx.with_base(config) if RUNGS[name].llm else ctx)

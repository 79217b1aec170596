"""``load_rung``: a fitted rung back from its run folder without refitting.

The rungs save and load themselves with tunewise.rungs.state; the class of a saved rung comes from
the table of rungs (tunewise.rungs.table), which knows every rung.
"""

from __future__ import annotations

from pathlib import Path

from tunewise.rungs.base import RunContext
from tunewise.rungs.state import RungLoadError, project_of, read_manifest, run_config
from tunewise.rungs.table import rung_class

__all__ = ["RungLoadError", "label_probabilities", "load_rung", "request_record", "rung_class"]


def load_rung(run_dir: Path, project: Path | None = None, base: tuple | None = None):
    """The fitted rung saved in ``run_dir``, ready to ``predict``, built from its config.yaml and saved state.

    ``base`` is an already loaded ``(model, tokenizer, folder)`` for the LLM rungs to share; by
    default each loads the base named in the run's config.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    config = run_config(run_dir)
    project = Path(project) if project is not None else project_of(run_dir)
    return rung_class(manifest["rung"]).load(config, RunContext(project, run_dir, base=base), manifest)


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

"""docs/config.md is generated from the config models and documents every key."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tunewise.config import ProjectConfig
from tunewise.config_doc import render

ROOT = Path(__file__).resolve().parents[1]


def test_docs_config_md_is_up_to_date():
    assert (ROOT / "docs" / "config.md").read_text() == render(), (
        "docs/config.md is stale: run `.venv/bin/python -m tunewise.config_doc > docs/config.md`")


def _keys(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _keys(field.annotation, key + ".")
        else:
            yield key, field


def test_every_key_has_a_meaning_and_appears_in_the_reference():
    text = render()
    undocumented = [k for k, f in _keys(ProjectConfig) if not (f.description or "").strip()]
    assert not undocumented, f"config keys without a docstring: {undocumented}"
    assert all(f"| `{k}` |" in text for k, _ in _keys(ProjectConfig))

"""docs/config.md, generated from the config models: every key, its type, default and meaning.

The meaning is each field's docstring in config.py (pydantic reads them with
``use_attribute_docstrings``), so the reference cannot drift from the code:
``python -m tunewise.config_doc > docs/config.md`` rewrites it and a test fails when it is stale.
"""

from __future__ import annotations

import json
import types
import typing

from pydantic import BaseModel
from pydantic.fields import PydanticUndefined

from tunewise.config import ProjectConfig
from tunewise.rungspec import NEEDS, RUNGS, TASK_TYPES

HEADER = """# tunewise.yaml reference

Generated from `src/tunewise/config.py` by `python -m tunewise.config_doc > docs/config.md`; do not edit by
hand. Settings resolve in this order: the defaults below, then `tunewise.yaml`, then `--set key=value`.
Keys without a default are required. Paths are relative to the project folder.
"""


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is list:
        (inner,) = typing.get_args(annotation) or (typing.Any,)
        return f"list of {_type_name(inner)}"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "(section)" if isinstance(value, BaseModel) else f"`{json.dumps(value)}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{json.dumps(field.default)}`"


def _section(model: type[BaseModel], prefix: str, out: list[str]) -> None:
    rows, subsections = [], []
    for name, field in model.model_fields.items():
        key = field.alias or name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            subsections.append((f"{prefix}{key}", annotation, field.description))
            continue
        meaning = " ".join((field.description or "").split())
        rows.append(f"| `{prefix}{key}` | {_type_name(annotation)} | {_default(field)} | {meaning} |")
    if rows:
        out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for path, sub, description in subsections:
        out += [f"## `{path}`", ""]
        text = " ".join((description or sub.__doc__ or "").split())
        if text:
            out += [text, ""]
        _section(sub, f"{path}.", out)


def _serving(s) -> str:
    if s.shares_base:
        return f"its adapter on the base loaded once for every {s.adapter} adapter"
    if s.prompting:
        return "the shared base, adapters switched off"
    if s.adapter:
        return f"its own model ({s.adapter} adapter)"
    return "its own model"


def _rungs(out: list[str]) -> None:
    """The table of rungs (tunewise.rungspec), cheapest first: what `rungs` and `train.method` accept."""
    intro = ("The values of `rungs` (and `--rungs`), cheapest first: the recommendation breaks cost ties in this "
             "order. `train.method` takes the method of a fine-tuning rung. How `tunewise serve` holds each one is in "
             "the last column (dpo and kto with `weights: full` are served as full fine-tunes). Generated from "
             "`src/tunewise/rungspec.py`.")
    out += ["## Rungs", "", intro, "",
            "| rung | what it is | task types | trains | needs | served as |", "|---|---|---|---|---|---|"]
    for s in RUNGS.values():
        tasks = "all" if s.task_types == frozenset(TASK_TYPES) else ", ".join(sorted(s.task_types))
        trains = f"yes (`train.method: {s.method}`)" if s.method else "yes" if s.trains else "no"
        needs = "; ".join(NEEDS[n] for n in NEEDS if n in s.needs) or "nothing more"
        out.append(f"| `{s.name}` | {s.summary} | {tasks} | {trains} | {needs} | {_serving(s)} |")
    out.append("")


def render() -> str:
    out = [HEADER, "## Top level", ""]
    _section(ProjectConfig, "", out)
    _rungs(out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")

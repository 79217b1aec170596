"""Read a project's data files into Records.

A malformed row never stops the load and is never silently dropped: it becomes a ``Reject``
naming the file, the line and the reason. A file that cannot be read at all raises ``DataError``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tunewise.core import Record


class DataError(ValueError):
    """A data file cannot be read at all; the message names the file."""


@dataclass
class Reject:
    file: str
    line: int
    reason: str
    raw: str = ""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Loaded:
    records: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def load_jsonl(path: Path, input_field: str, target_field: str, id_field: str = "id") -> Loaded:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    out = Loaded()
    seen_ids: set[str] = set()
    for lineno, line_bytes in enumerate(raw.splitlines(), start=1):
        if not line_bytes.strip():
            continue
        where = f"{path}:{lineno}"
        record, reason = _parse_row(line_bytes, input_field, target_field, id_field, where)
        if record is not None and record.id in seen_ids:
            record, reason = None, f"duplicate id '{record.id}'"
        if record is None:
            out.rejects.append(Reject(str(path), lineno, reason, line_bytes[:500].decode("utf-8", "replace")))
            continue
        seen_ids.add(record.id)
        out.records.append(record)
    return out


def _parse_row(line: bytes, input_field: str, target_field: str, id_field: str, where: str):
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"invalid UTF-8 at byte {e.start}"
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"bad JSON: {e.msg} (column {e.colno})"
    if not isinstance(row, dict):
        return None, f"expected a JSON object, got {type(row).__name__}"
    for name in (input_field, target_field):
        if name not in row:
            return None, f"missing field '{name}'"
        if not isinstance(row[name], str):
            return None, f"field '{name}' must be a string, got {type(row[name]).__name__}"
    rid = row.get(id_field, where.rsplit(":", 1)[-1])
    if not isinstance(rid, str | int):
        return None, f"field '{id_field}' must be a string or integer"
    meta = {k: v for k, v in row.items() if k not in (input_field, target_field, id_field)}
    return Record(id=str(rid), input=row[input_field], target=row[target_field], meta=meta, source=where), ""


def load_files(files: list[str], project: Path, input_field: str, target_field: str) -> Loaded:
    """Load every data file of a project; ids are made unique across files."""
    out = Loaded()
    for name in files:
        path = Path(project) / name
        if not path.exists():
            raise DataError(f"{path}: no such data file (data.files in tunewise.yaml)")
        part = load_jsonl(path, input_field, target_field)
        if len(files) > 1:
            for rec in part.records:
                rec.id = f"{Path(name).stem}:{rec.id}"
        out.records += part.records
        out.rejects += part.rejects
    return out

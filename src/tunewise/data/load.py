"""Read a project's data files into Records.

Formats: JSONL, JSON (an array of objects, on one line or many), CSV/TSV (quoted multi-line
fields), Parquet. Schemas (``data/schemas.py``), detected per file unless given: ``input_target``
(the config's field names), ``prompt_completion``, ``alpaca``, ``chat`` (OpenAI ``messages``),
``sharegpt``, ``preference``, ``kto`` and ``text``.

A malformed row never stops the load and is never silently dropped: it becomes a ``Reject``
naming the file, the line and the reason. A file that cannot be read at all raises ``DataError``.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tunewise.core import Record, canonical_json
# check_messages and transcript stay importable from here: serving and monitoring read them from data.load.
from tunewise.data.schemas import (  # noqa: F401
    SCHEMAS,
    RowError,
    check_messages,
    detect_schema,
    field_uses,
    ignored_turn_fields,
    multimodal_rows,
    parse_row,
    transcript,
)
from tunewise.rungspec import TEXT

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
           ".parquet": "parquet", ".pq": "parquet"}


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
    schemas: dict[str, str] = field(default_factory=dict)
    """The schema used for each file (detected or given)."""
    rows_read: dict[str, int] = field(default_factory=dict)
    """Rows (records + rejects) read from each file."""
    objects: dict[str, int] = field(default_factory=dict)
    """Rows of each file that are objects (the others are malformed)."""
    fields: dict[str, dict[str, int]] = field(default_factory=dict)
    """For each file, every field its rows have and in how many rows: what a hint can suggest."""
    samples: dict[str, list[dict]] = field(default_factory=dict)
    """The first rows of each file that are objects, to guess which field holds what."""
    uses: dict[str, dict[str, dict]] = field(default_factory=dict)
    """For each file, every field: in how many rows, and what tunewise uses it for (None: ignored)."""
    notes: list[str] = field(default_factory=list)
    """One line per thing done other than reading a row as given (ignored fields, excluded rows)."""


_RowError = RowError  # one row is malformed; the message is the reason written to rejects.jsonl


# ---------------------------------------------------------------- reading raw rows per format

def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _rows_jsonl(raw: bytes) -> Iterator[tuple[int, Any, str]]:
    """Yield (line, parsed object or _RowError, raw text) for each non-blank line."""
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        text = line[:500].decode("utf-8", "replace")
        try:
            decoded = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield lineno, _RowError(f"invalid UTF-8 at byte {e.start}"), text
            continue
        try:
            yield lineno, json.loads(decoded), text
        except (json.JSONDecodeError, RecursionError) as e:
            msg = f"bad JSON: {e.msg} (column {e.colno})" if isinstance(e, json.JSONDecodeError) else "bad JSON: nested too deeply"
            yield lineno, _RowError(msg), text


def _rows_json(raw: bytes, path: Path) -> Iterator[tuple[int, Any, str]]:
    """A JSON array, element by element, each located by the line it starts on; when several
    elements share a line (an array written on one line), by its element number instead, so every
    row keeps a locator (and a default id) of its own. Linear: lines are counted as we go."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: invalid UTF-8 at byte {e.start} (a .json file must be valid UTF-8 as a whole)") from None
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise DataError(f"{path}: expected a JSON array of rows ('[' at the start); use .jsonl for one object per line")
    pos = _skip_space(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return iter(())
    rows: list[tuple[int, Any, str]] = []
    line, counted = 1, 0
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as e:
            where = f"line {e.lineno}" if isinstance(e, json.JSONDecodeError) else f"line {line}"
            raise DataError(f"{path}: not a valid JSON array ({where}: {getattr(e, 'msg', 'nested too deeply')})") from None
        rows.append((line, obj, text[pos:min(end, pos + 500)]))
        pos = _skip_space(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            break
        raise DataError(f"{path}: not a valid JSON array (line {line + text.count(chr(10), counted, pos)}: expected ',' or ']')")
    if len({r[0] for r in rows}) < len(rows):
        rows = [(i, obj, shown) for i, (_, obj, shown) in enumerate(rows, start=1)]
    return iter(rows)


_SPACE = re.compile(r"[ \t\r\n]*")


def _skip_space(text: str, pos: int) -> int:
    return _SPACE.match(text, pos).end()


def _rows_csv(raw: bytes, path: Path, delimiter: str) -> Iterator[tuple[int, Any, str]]:
    # surrogateescape keeps bad bytes visible per row, so one bad row is rejected, not the file.
    text = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise DataError(f"{path}: cannot read the CSV header ({e})") from None
    if any(_has_surrogates(h) for h in header):
        raise DataError(f"{path}: invalid UTF-8 in the header line")
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield start, _RowError(f"bad CSV: {e}"), ""
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not cells or not any(c.strip() for c in cells):
            continue
        shown = delimiter.join(cells)[:500].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if any(_has_surrogates(c) for c in cells):
            yield line, _RowError("invalid UTF-8"), shown
        elif len(cells) != len(header):
            missing = f" (no value for {', '.join(repr(h) for h in header[len(cells):])})" if len(cells) < len(header) else ""
            yield line, _RowError(f"expected {len(header)} columns, got {len(cells)}{missing}"), shown
        else:
            yield line, dict(zip(header, cells, strict=True)), shown


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _rows_parquet(path: Path) -> Iterator[tuple[int, Any, str]]:
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise DataError(f"{path}: cannot read as Parquet ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    for i, row in enumerate(rows, start=1):
        yield i, row, json.dumps(row, default=str, ensure_ascii=False)[:500]


def _refuse_binary(raw: bytes, path: Path, fmt: str) -> None:
    """One line for a file that is not text at all (an image, an archive, UTF-16), instead of a
    reject for every line of it. A few bad bytes in a text file stay per-row rejects."""
    head = raw[:65536]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: UTF-16 text (byte-order mark); save it as UTF-8 to read it as {fmt}")
    undecodable = len(head) - len(head.decode("utf-8", "ignore").encode("utf-8"))
    if b"\x00" in head or undecodable > max(8, len(head) // 10):
        what = "NUL bytes" if b"\x00" in head else f"{undecodable} of its first {len(head)} bytes are not UTF-8"
        raise DataError(f"{path}: a binary file, not {fmt} text ({what}); check that data.files names the data")


def read_rows(path: Path) -> Iterator[tuple[int, Any, str]]:
    """Yield (line or row number, parsed row or _RowError, raw text) for any supported format: the
    line for JSONL, CSV and pretty-printed JSON arrays; the row number for Parquet and for a JSON
    array with several rows on one line."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"{path}: unknown data format '{path.suffix}' (known: {known})")
    if fmt == "parquet":
        if not path.is_file():
            raise DataError(f"{path}: cannot read (not a file)")
        return _rows_parquet(path)
    raw = _read_bytes(path)
    _refuse_binary(raw, path, fmt)
    if fmt == "jsonl":
        return _rows_jsonl(raw)
    if fmt == "json":
        return _rows_json(raw, path)
    return _rows_csv(raw, path, "," if fmt == "csv" else "\t")


# ---------------------------------------------------------------- schemas (data/schemas.py)

TARGET_FIELDS = {"preference": "chosen", "alpaca": "output", "prompt_completion": "completion"}


def json_target(target: str, name: str) -> str:
    """An extraction target given as JSON text, in the canonical serialisation; a reject otherwise."""
    try:
        value = json.loads(target)
    except (json.JSONDecodeError, RecursionError) as e:
        raise _RowError(f"field '{name}' must be a JSON object or array (an extraction target): "
                        f"{getattr(e, 'msg', 'nested too deeply')}") from None
    if not isinstance(value, dict | list):
        raise _RowError(f"field '{name}' must be a JSON object or array (an extraction target), "
                        f"got {type(value).__name__}")
    return canonical_json(value)


# ---------------------------------------------------------------- files

def load_file(path: Path, input_field: str = "input", target_field: str = "target", id_field: str = "id",
              schema: str | None = None, json_targets: bool = False, tags: dict | None = None) -> Loaded:
    """Load one file of any supported format; ``schema`` None detects it from the first rows.
    ``json_targets`` (extraction): every target must be a JSON object or array, kept canonical.
    ``tags``: ShareGPT field and role names (``data.sharegpt``) where they differ from the defaults."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such data file")
    rows = list(read_rows(path))
    if schema is None:
        schema = detect_schema([r for _, r, _ in rows[:200]], input_field, target_field, tags)
    elif schema not in SCHEMAS:
        raise DataError(f"{path}: unknown schema '{schema}' (known: {', '.join(SCHEMAS)})")
    objects = [r for _, r, _ in rows if isinstance(r, dict)]
    _refuse_multimodal(path, objects, tags)
    used = field_uses(schema, input_field, target_field, tags)
    out = Loaded(schemas={str(path): schema}, rows_read={str(path): len(rows)}, objects={str(path): len(objects)},
                 samples={str(path): objects[:200]}, fields={str(path): dict(Counter(k for r in objects for k in r))})
    seen_ids: set[str] = set()
    seen_content: Counter[str] = Counter()
    for lineno, row, raw in rows:
        try:
            text, target, extra = _parse(row, schema, input_field, target_field, tags)
            if extra.get("desirable") is False:
                raise _RowError(UNDESIRABLE)
            # Chat targets live in the messages, which are not rewritten here.
            if json_targets and target is not None and "messages" not in extra:
                target = json_target(target, TARGET_FIELDS.get(schema, target_field))
            rid = row.get(id_field)
            if rid is not None and (isinstance(rid, bool) or not isinstance(rid, str | int)):
                raise _RowError(f"field '{id_field}' must be a string or integer")
            if rid is not None and str(rid) in seen_ids:
                raise _RowError(f"duplicate id '{rid}'")
        except _RowError as e:
            out.rejects.append(Reject(str(path), lineno, str(e), raw))
            continue
        if rid is None:  # named by what it says, so inserting or moving lines renames no row
            key = content_id(text, target)
            seen_content[key] += 1
            rid = key if seen_content[key] == 1 else f"{key}-{seen_content[key]}"
        seen_ids.add(str(rid))
        meta = {k: v for k, v in row.items() if k not in (*used, id_field)} | extra
        out.records.append(Record(id=str(rid), input=text, target=target, meta=meta, source=f"{path}:{lineno}"))
    out.uses[str(path)] = {name: {"rows": n, "use": used.get(name) or ("id" if name == id_field else None)}
                           for name, n in out.fields[str(path)].items()}
    out.uses[str(path)].update({name: {"rows": n, "use": None}
                                for name, n in ignored_turn_fields(objects, schema, tags).items()})
    out.notes += _notes(path, out)
    return out


def content_id(text: str, target: str | None) -> str:
    """A row's identity when it has no id field: a hash of its input and target, Unicode- and
    space-normalised (a file re-saved with other line endings or trailing spaces names its rows
    the same); case and punctuation count. 16 hex digits: 64 bits, no collision in practice."""
    def norm(value: str | None) -> str:
        return " ".join(unicodedata.normalize("NFC", value or "").split())

    return hashlib.sha256(json.dumps([norm(text), norm(target)], ensure_ascii=False).encode()).hexdigest()[:16]


UNDESIRABLE = "an undesirable answer (label: false): excluded, never trained or scored as a good answer"


def _parse(row: Any, schema: str, input_field: str, target_field: str, tags: dict | None) -> tuple[str, str | None, dict]:
    if isinstance(row, _RowError):
        raise row
    if not isinstance(row, dict):
        raise _RowError(f"expected a JSON object, got {type(row).__name__}")
    return parse_row(row, schema, input_field, target_field, tags)


def _refuse_multimodal(path: Path, objects: list[dict], tags: dict | None) -> None:
    """Images, audio or video would be silently dropped (and their placeholders trained as text)."""
    found = multimodal_rows(objects, tags)
    if found:
        shown = ", ".join(f"'{name}' in {n} of {len(objects)} rows" for name, n in found.items())
        raise DataError(f"{path}: multimodal rows ({shown}); tunewise fine-tunes text-only models, so these rows "
                        "cannot be used as they are: remove the media fields and placeholders to train on the text alone")


def _notes(path: Path, out: Loaded) -> list[str]:
    """One line per thing the load did other than read a row as given: fields it ignores, answers
    it excludes as undesirable."""
    notes, total = [], out.objects[str(path)]
    ignored = [f"{name} ({u['rows']} rows)" for name, u in out.uses[str(path)].items() if u["use"] is None]
    if ignored:
        notes.append(f"{path}: schema {out.schemas[str(path)]}; fields ignored: {', '.join(ignored)}")
    bad = sum(r.reason == UNDESIRABLE for r in out.rejects)
    if bad:
        notes.append(f"{path}: {bad} of {total} rows are undesirable answers (label: false): excluded from "
                     "training and scoring (listed in rejects.jsonl)")
    return notes


def load_jsonl(path: Path, input_field: str, target_field: str, id_field: str = "id") -> Loaded:
    return load_file(path, input_field, target_field, id_field, schema="input_target")


def load_files(files: list[str], project: Path, input_field: str, target_field: str,
               schema: str | None = None, id_field: str = "id", json_targets: bool = False,
               tags: dict | None = None) -> Loaded:
    """Load every data file of a project; ids are made unique across files.

    With several files a row's id is ``<file as listed>:<key>`` (``data/a.jsonl:17``): the file's
    path, not its stem, so ``a/train.jsonl`` and ``b/train.jsonl`` (or ``t.csv`` and ``t.jsonl``)
    never share ids. One file keeps the bare key. Renaming a file or adding a second one therefore
    renames its rows: the split ledger also knows each row by ``content_id``, so the split holds,
    and `prepare` counts the review decisions that no longer name a row.
    """
    out = Loaded()
    for name in files:
        path = Path(project) / name
        if not path.exists():
            raise DataError(f"{path}: no such data file (data.files in tunewise.yaml)")
        part = load_file(path, input_field, target_field, id_field, schema, json_targets, tags)
        if len(files) > 1:
            for rec in part.records:
                rec.id = f"{PurePosixPath(Path(name).as_posix())}:{rec.id}"
        out.records += part.records
        out.rejects += part.rejects
        for name_ in ("schemas", "rows_read", "objects", "fields", "samples", "uses"):
            getattr(out, name_).update(getattr(part, name_))
        out.notes += part.notes
    return out


# ---------------------------------------------------------------- when most rows are unusable

def unusable_hints(loaded: Loaded, input_field: str, target_field: str, labels: list[str] | None = None,
                   keys: tuple[str, str] = ("task.input_field", "task.target_field"),
                   task_type: str | None = None) -> list[str]:
    """One line per file where more than half the rows were rejected or have no target: how many,
    and why — a CSV read with the wrong separator, a configured field the rows lack (with the fields
    they have and the nearest one), or the commonest reject reason. A wrong field name is the
    commonest first mistake."""
    hints = []
    for file, total in loaded.rows_read.items():
        if total == 0:
            hints.append(f"{file}: no rows (the file is empty)")
            continue
        rejects = [r for r in loaded.rejects if r.file == file]
        # A plain-text corpus (task.type text) has no targets: that is what it is, not a fault.
        no_target = 0 if task_type == TEXT else sum(
            1 for r in loaded.records if r.target is None and r.source.rpartition(":")[0] == file)
        if (len(rejects) + no_target) * 2 <= total:
            continue
        line = f"{file}: {len(rejects) + no_target} of {total} rows unusable ({len(rejects)} rejected, {no_target} without a target)"
        why = _separator_hint(file, loaded.fields.get(file, {}))
        if not why and loaded.schemas.get(file) == "input_target":
            why = _field_hint(loaded, file, (input_field, target_field), keys, labels or [])
        if not why and loaded.schemas.get(file) == "text":
            why = ("plain-text rows (schema text) have no target: set task.type: text to adapt the model to the "
                   "corpus (continued pre-training, scored by perplexity), or give input/target or chat rows")
        if not why and rejects:
            why = _commonest_reason(rejects)
        hints.append(f"{line}; {why}" if why else line)
    return hints


def _separator_hint(file: str, fields: dict[str, int]) -> str:
    suffix = Path(file).suffix.lower()
    if len(fields) != 1 or suffix not in (".csv", ".tsv"):
        return ""
    header = next(iter(fields))
    sep = next((c for c in ";\t|," if c in header and not (c == "," and suffix == ".csv")), None)
    if sep is None:
        return ""
    return (f"the header is one column {header!r}: the file looks {sep!r}-separated, but {suffix} is read as "
            f"{'tab' if suffix == '.tsv' else 'comma'}-separated" + (" (save tab-separated data as .tsv)" if sep == "\t" else ""))


def _field_hint(loaded: Loaded, file: str, names: tuple[str, str], keys: tuple[str, str], labels: list[str]) -> str:
    """The configured fields most rows lack, each with the nearest field the rows do have."""
    fields, absent = loaded.fields.get(file, {}), []
    taken: set[str] = {f for f in names if f in fields}
    for key, name, role in zip(keys, names, ("input", "target"), strict=True):
        have = fields.get(name, 0)
        if have * 2 >= loaded.objects.get(file, 0):
            continue
        near = _nearest_field(name, role, fields, loaded.samples.get(file, []), taken, labels)
        taken.add(near[0] if near else name)
        absent.append(f"{'only ' + str(have) + ' rows have' if have else 'no row has'} the field '{name}' ({key})"
                      + (f"; nearest: {near[0]!r} ({near[1]})" if near else ""))
    return "; ".join(absent) + f"; the rows' fields: {', '.join(fields)}" if absent and fields else ""


def _commonest_reason(rejects: list[Reject]) -> str:
    # Reasons differ only by numbers (byte, column) row to row; group on the rest.
    kinds = Counter(re.sub(r"\d+", "#", r.reason) for r in rejects)
    kind, n = kinds.most_common(1)[0]
    first = next(r for r in rejects if re.sub(r"\d+", "#", r.reason) == kind)
    advice = "; the file may be Latin-1 or Windows-1252: save it as UTF-8" if first.reason.startswith("invalid UTF-8") else ""
    return f"commonest reason ({n} rows, first at line {first.line}): {first.reason}{advice}"


def nearest_label(value: str, labels: list[str]) -> str | None:
    """The known label an unknown one most likely meant: the same up to case and spacing, else the
    closest spelling; None when nothing is close."""
    folded = {" ".join(lab.split()).lower(): lab for lab in labels}
    key = " ".join(str(value).split()).lower()
    if key in folded:
        return folded[key]
    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return folded[close[0]] if close else None


def _nearest_field(name: str, role: str, fields: dict[str, int], sample: list[dict], taken: set[str],
                   labels: list[str]) -> tuple[str, str] | None:
    """(field, why) the configured name most likely meant: a similar name, else a guess from the values."""
    candidates = [f for f in fields if f not in taken]
    lower = {f.lower(): f for f in candidates}
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    if close:
        return lower[close[0]], "a similar name"
    values = {f: [r[f] for r in sample if r.get(f) is not None] for f in candidates}
    # A JSON string (tool definitions, a schema) or a list of turns is never text input or a target.
    values = {f: v for f, v in values.items() if not any(_structured(x) for x in v)}
    texts = {f: v for f, v in values.items() if v and all(isinstance(x, str) for x in v)}
    if role == "input":
        best = max(texts, key=lambda f: sum(map(len, texts[f])) / len(texts[f]), default=None)
        return (best, "its longest text values") if best else None
    wanted = {lab.strip().lower() for lab in labels}
    overlap = {f: sum(str(x).strip().lower() in wanted for x in v) for f, v in values.items() if wanted}
    if overlap and max(overlap.values()):
        return max(overlap, key=overlap.__getitem__), "its values match task.labels"
    objects = [f for f, v in values.items() if v and all(isinstance(x, dict | list) for x in v)]
    if objects:
        return objects[0], "JSON objects, an extraction target"
    short = {f: len(set(v)) for f, v in texts.items() if all(len(x) <= 50 for x in v) and len(set(v)) < len(v)}
    best = min(short, key=short.__getitem__, default=None)
    return (best, f"{short[best]} distinct values, like labels") if best else None


def _structured(value: Any) -> bool:
    """JSON text of an object or array, or a list of turns (objects with a role or speaker)."""
    if isinstance(value, str):
        head = value.lstrip()[:1]
        if head not in ("{", "["):
            return False
        try:
            return isinstance(json.loads(value), dict | list)
        except json.JSONDecodeError:
            return False
    return isinstance(value, list) and any(isinstance(x, dict) and ({"role", "from"} & x.keys()) for x in value)

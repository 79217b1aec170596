"""Read a served-request log: an SQLite request log, or a JSONL file of inputs (and optional outputs).

The SQLite log is the one the server writes: a table ``requests`` with one row per request::

    CREATE TABLE requests (
        ts         TEXT NOT NULL,   -- ISO 8601 time of the request, e.g. 2026-11-25T18:04:05Z (UTC if no offset)
        model      TEXT,            -- the rung that answered, e.g. embedding-classifier (as in ladder.json)
        input      TEXT NOT NULL,   -- the model input, as the rung saw it
        output     TEXT,            -- the answer (a label for classification); NULL if not kept
        latency_ms REAL,            -- time to answer
        probs      TEXT             -- JSON object label -> probability (classification); NULL if not kept
    );

The table may hold more columns (an ``id``, say); they are ignored. The row id names a request.
The log `tunewise serve` writes (tunewise.serve.requestlog) is read as it is: its ``time`` (epoch
seconds) is ``ts``, its ``probabilities`` are ``probs``, a model id ``project/rung`` names the rung,
and only the requests it answered (``status`` 200) count as served.

A JSONL file holds one request per line with the same keys (``ts``, ``model``, ``input``,
``output``, ``latency_ms``, ``probs``); only ``input`` is required (``text`` or the project's
``task.input_field`` are accepted too), ``id`` is kept when present. Without ``ts`` on every line
the monitor windows by arrival order instead of by time, and says so.

Errors name the file, the line (or row id) and the field; no row is dropped silently.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tunewise.data.load import DataError

COLUMNS = ("ts", "model", "input", "output", "latency_ms", "probs")


@dataclass
class Served:
    """One served request."""

    id: str
    input: str
    ts: datetime | None = None
    model: str | None = None
    output: str | None = None
    latency_ms: float | None = None
    probs: dict[str, float] | None = None
    meta: dict = field(default_factory=dict)


def parse_time(value: str, where: str) -> datetime:
    """An ISO 8601 time; a time without an offset is read as UTC."""
    try:
        t = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"{where}: field 'ts': not an ISO 8601 time ({value!r})") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _probs(value, where: str) -> dict[str, float] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: field 'probs': not JSON ({e.msg})") from None
    if not isinstance(value, dict) or not value or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value.values()):
        raise DataError(f"{where}: field 'probs': expected an object label -> probability >= 0")
    total = sum(value.values())
    if total <= 0:
        raise DataError(f"{where}: field 'probs': the probabilities sum to 0")
    return {str(k): float(v) / total for k, v in value.items()}


def _row(raw: dict, rid: str, where: str, input_keys: tuple[str, ...]) -> Served:
    text = next((raw[k] for k in input_keys if raw.get(k) is not None), None)
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: field 'input': missing or empty (accepted: {', '.join(input_keys)})")
    latency = raw.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)):
        raise DataError(f"{where}: field 'latency_ms': not a number ({latency!r})")
    output = raw.get("output")
    return Served(
        id=rid, input=text, ts=parse_time(raw["ts"], where) if raw.get("ts") not in (None, "") else None,
        model=None if raw.get("model") is None else str(raw["model"]),
        output=None if output is None else str(output), latency_ms=latency, probs=_probs(raw.get("probs"), where),
    )


def read_jsonl(path: Path, input_field: str = "input") -> list[Served]:
    keys = tuple(dict.fromkeys(("input", "text", input_field)))
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); a request log is JSONL or the "
                            "server's SQLite file") from None
        if not isinstance(raw, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object")
        rid = str(raw["id"]) if raw.get("id") is not None else f"line-{lineno}"
        rows.append(_row(raw, rid, f"{path}:{lineno}", keys))
    return rows


def read_sqlite(path: Path) -> list[Served]:
    try:
        con = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise DataError(f"{path}: cannot open as SQLite ({e})") from None
    try:
        have = {r[1] for r in con.execute("PRAGMA table_info(requests)")}
        if not have:
            raise DataError(f"{path}: no table 'requests' (see the schema in tunewise.monitor.requestlog)")
        server = "time" in have and "ts" not in have  # the table tunewise serve writes
        names = {"ts": "time", "probs": "probabilities"} if server else {}
        missing = [c for c in ("ts", "input") if names.get(c, c) not in have]
        if missing:
            raise DataError(f"{path}: table 'requests' lacks column(s) {', '.join(missing)}")
        cols = [c for c in COLUMNS if names.get(c, c) in have]
        where = " WHERE status = 200" if "status" in have else ""  # refused requests were never served
        cur = con.execute(f"SELECT rowid, {', '.join(names.get(c, c) for c in cols)} FROM requests{where} "
                          "ORDER BY rowid")
        rows = []
        for r in cur:
            raw = dict(zip(cols, r[1:], strict=True))
            if server:
                if raw.get("input") is None:
                    raise DataError(f"{path}: requests row {r[0]}: field 'input': the server kept no inputs "
                                    "(serve.log_inputs: false); monitoring needs them")
                raw["ts"] = datetime.fromtimestamp(raw["ts"], UTC).isoformat()
                raw["model"] = None if raw.get("model") is None else str(raw["model"]).rsplit("/", 1)[-1]
            rows.append(_row(raw, str(r[0]), f"{path}: requests row {r[0]}", ("input",)))
    except sqlite3.DatabaseError as e:
        raise DataError(f"{path}: not a readable SQLite request log ({e})") from None
    finally:
        con.close()
    return rows


def read_log(path: Path, input_field: str = "input", since: str | None = None) -> tuple[list[Served], bool]:
    """The served requests in time order (arrival order when untimed), and whether they carry times."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such request log")
    with open(path, "rb") as f:
        is_sqlite = f.read(16) == b"SQLite format 3\x00"
    rows = read_sqlite(path) if is_sqlite else read_jsonl(path, input_field)
    if not rows:
        raise DataError(f"{path}: the request log holds no requests")
    timed = [r.ts is not None for r in rows]
    if any(timed) and not all(timed):
        first = rows[timed.index(False)]
        raise DataError(f"{path}: request {first.id} has no 'ts' while others do (give every row a time or none)")
    if since is not None:
        if not all(timed):
            raise DataError(f"{path}: --since needs a 'ts' on every request")
        cut = parse_time(since, "--since")
        rows = [r for r in rows if r.ts >= cut]
        if not rows:
            raise DataError(f"{path}: no requests at or after {cut.isoformat()} (--since)")
    if all(timed):
        rows.sort(key=lambda r: r.ts)
    return rows, all(timed)

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

A row the monitor cannot use (empty input, a line cut short by a crash, a bad field, a request to
another project's model) is skipped and counted by reason, never silently: ``LogRead.skipped``
holds the counts and ``LogRead.examples`` the first place of each, and the monitor says both in
one line and records them in monitor.json. Only a log with too few usable rows left is refused,
saying how many it needs. A file that is not a request log at all is one error naming it.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tunewise.data.load import DataError

COLUMNS = ("ts", "model", "input", "output", "latency_ms", "probs")


class RowError(DataError):
    """One row the monitor cannot use; ``reason`` is what it is counted under."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class LogRead:
    """The usable rows of a request log and what was skipped, by reason (with the first place of each)."""

    rows: list
    timed: bool
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def skip(self, e: RowError) -> None:
        self.skipped[e.reason] = self.skipped.get(e.reason, 0) + 1
        self.examples.setdefault(e.reason, str(e))

    def skipped_line(self) -> str:
        """One line: how many rows were skipped and why, or '' when none were."""
        if not self.skipped:
            return ""
        reasons = ", ".join(f"{n} {why}" for why, n in Counter(self.skipped).most_common())
        return (f"skipped {sum(self.skipped.values())} of {sum(self.skipped.values()) + len(self.rows)} "
                f"request(s) it cannot use: {reasons} (first: {next(iter(self.examples.values()))})")


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
        raise RowError("bad ts", f"{where}: field 'ts': not an ISO 8601 time ({value!r})") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _probs(value, where: str) -> dict[str, float] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise RowError("bad probs", f"{where}: field 'probs': not JSON ({e.msg})") from None
    if not isinstance(value, dict) or not value or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value.values()):
        raise RowError("bad probs", f"{where}: field 'probs': expected an object label -> probability >= 0")
    total = sum(value.values())
    if total <= 0:
        raise RowError("bad probs", f"{where}: field 'probs': the probabilities sum to 0")
    return {str(k): float(v) / total for k, v in value.items()}


def _row(raw: dict, rid: str, where: str, input_keys: tuple[str, ...]) -> Served:
    text = next((raw[k] for k in input_keys if raw.get(k) is not None), None)
    if not isinstance(text, str) or not text.strip():
        raise RowError("empty input", f"{where}: field 'input': missing or empty (accepted: {', '.join(input_keys)})")
    latency = raw.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)):
        raise RowError("bad latency_ms", f"{where}: field 'latency_ms': not a number ({latency!r})")
    output = raw.get("output")
    return Served(
        id=rid, input=text, ts=parse_time(raw["ts"], where) if raw.get("ts") not in (None, "") else None,
        model=None if raw.get("model") is None else str(raw["model"]),
        output=None if output is None else str(output), latency_ms=latency, probs=_probs(raw.get("probs"), where),
    )


def read_jsonl(path: Path, input_field: str = "input") -> LogRead:
    keys = tuple(dict.fromkeys(("input", "text", input_field)))
    read = LogRead([], False)
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            read.rows.append(_jsonl_row(line, f"{path}:{lineno}", lineno, keys))
        except RowError as e:
            read.skip(e)
    return read


def _jsonl_row(line: str, where: str, lineno: int, keys: tuple[str, ...]) -> Served:
    try:
        raw = json.loads(line)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        raise RowError("not JSON (cut short?)", f"{where}: not valid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(raw, dict):
        raise RowError("not an object", f"{where}: expected a JSON object")
    rid = str(raw["id"]) if raw.get("id") is not None else f"line-{lineno}"
    return _row(raw, rid, where, keys)


def read_sqlite(path: Path, project: str | None = None) -> LogRead:
    """The server's table (or one like it); with ``project``, requests to another project's models are
    skipped (one log per project, but a copied or shared file may mix them)."""
    try:
        con = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise DataError(f"{path}: cannot open as SQLite ({e})") from None
    read = LogRead([], False)
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
        for r in cur:
            try:
                read.rows.append(_sqlite_row(dict(zip(cols, r[1:], strict=True)), str(r[0]),
                                             f"{path}: requests row {r[0]}", server, project))
            except RowError as e:
                read.skip(e)
    except sqlite3.DatabaseError as e:
        raise DataError(f"{path}: not a readable SQLite request log ({e})") from None
    finally:
        con.close()
    return read


def _sqlite_row(raw: dict, rid: str, where: str, server: bool, project: str | None) -> Served:
    if server:
        if raw.get("input") is None:
            raise RowError("no input kept", f"{where}: field 'input': the server kept no inputs "
                           "(serve.log_inputs: false); monitoring needs them")
        if not isinstance(raw["ts"], int | float):
            raise RowError("bad ts", f"{where}: field 'time': not epoch seconds ({raw['ts']!r})")
        raw["ts"] = datetime.fromtimestamp(raw["ts"], UTC).isoformat()
        model = None if raw.get("model") is None else str(raw["model"])
        if project is not None and model is not None and "/" in model and model.rsplit("/", 1)[0] != project:
            raise RowError("another project", f"{where}: field 'model': {model!r} is not a model of {project!r}")
        raw["model"] = None if model is None else model.rsplit("/", 1)[-1]
    return _row(raw, rid, where, ("input",))


def read_log(path: Path, input_field: str = "input", since: str | None = None, project: str | None = None,
             min_rows: int = 1) -> LogRead:
    """The usable served requests in time order (arrival order when untimed), whether they carry
    times, and what was skipped; refused when fewer than ``min_rows`` usable rows remain."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such request log")
    with open(path, "rb") as f:
        is_sqlite = f.read(16) == b"SQLite format 3\x00"
    read = read_sqlite(path, project) if is_sqlite else read_jsonl(path, input_field)
    if any(r.ts is not None for r in read.rows):  # a timed log: an untimed row cannot be windowed
        for r in [r for r in read.rows if r.ts is None]:
            read.skip(RowError("no ts", f"{path}: request {r.id}: no 'ts' while others have one"))
        read.rows = [r for r in read.rows if r.ts is not None]
        read.timed = bool(read.rows)
    if since is not None:
        if not read.timed:
            raise DataError(f"{path}: --since needs a 'ts' on every request")
        cut = parse_time(since, "--since")
        read.rows = [r for r in read.rows if r.ts >= cut]
        if not read.rows:
            raise DataError(f"{path}: no requests at or after {cut.isoformat()} (--since)")
    if len(read.rows) < min_rows:
        said = f"; {read.skipped_line()}" if read.skipped else ""
        raise DataError(f"{path}: {len(read.rows)} usable request(s); monitoring needs at least {min_rows}{said}")
    if read.timed:
        read.rows.sort(key=lambda r: r.ts)
    return read

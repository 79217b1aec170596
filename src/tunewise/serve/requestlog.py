"""The request log: one SQLite row per answered request, the record monitoring reads.

WAL mode, so a monitor can read while the server writes, and a server killed mid-write (kill -9)
leaves a readable log: SQLite rolls the unfinished write back on the next open. Rows are written on
the log's own thread, never on the event loop: redaction and the insert wait for nothing there. Columns: time (UTC epoch seconds),
model, endpoint, status, input, output, latency_ms, probabilities (JSON label -> probability),
batch_size. With ``serve.redact_pii`` on, input and output pass through data/pii.py's detectors
before they are written; ``redacted`` records that they did.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    model TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    input TEXT,
    output TEXT,
    latency_ms REAL NOT NULL,
    probabilities TEXT,
    batch_size INTEGER,
    redacted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_model_time ON requests (model, time);
"""


class RequestLog:
    def __init__(self, path: Path, redact_pii: bool = True, log_inputs: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redact_pii, self.log_inputs = redact_pii, log_inputs
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tunewise-requestlog")

    def _text(self, text: str | None) -> str | None:
        if text is None or not self.log_inputs:
            return None
        if self.redact_pii:
            from tunewise.data.pii import redact

            return redact(text)
        return text

    def write(self, model: str, endpoint: str, status: int, input: str | None, output: str | None,
              latency_ms: float, probabilities: dict | None = None, batch_size: int | None = None):
        """Queue one row for the log's thread; returns its future (tests wait on it)."""
        return self._writer.submit(self._insert, time.time(), model, endpoint, status, input, output, latency_ms,
                                   probabilities, batch_size)

    def flush(self) -> None:
        """Wait until every row queued so far is written."""
        self._writer.submit(lambda: None).result()

    def _insert(self, at, model, endpoint, status, input, output, latency_ms, probabilities, batch_size) -> None:
        try:
            self._insert_row(at, model, endpoint, status, input, output, latency_ms, probabilities, batch_size)
        except Exception:  # noqa: BLE001 - the request was answered; a lost row is said in the server log
            log.exception("%s: could not log a %s request to %s", self.path, endpoint, model)

    def _insert_row(self, at, model, endpoint, status, input, output, latency_ms, probabilities, batch_size) -> None:
        row = (at, model, endpoint, status, self._text(input), self._text(output), latency_ms,
               json.dumps(probabilities) if probabilities is not None else None, batch_size, int(self.redact_pii))
        with self._lock:
            self._db.execute(
                "INSERT INTO requests (time, model, endpoint, status, input, output, latency_ms, probabilities, "
                "batch_size, redacted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def close(self) -> None:
        self._writer.shutdown(wait=True)  # every queued row is written before the file closes
        with self._lock:
            self._db.close()

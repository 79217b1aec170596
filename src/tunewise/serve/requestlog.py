"""The request log: one SQLite row per answered request, the record monitoring reads.

WAL mode, so a monitor can read while the server writes. Columns: time (UTC epoch seconds),
model, endpoint, status, input, output, latency_ms, probabilities (JSON label -> probability),
batch_size. With ``serve.redact_pii`` on, input and output pass through data/pii.py's detectors
before they are written; ``redacted`` records that they did.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

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
    def __init__(self, path: Path, redact_pii: bool = False, log_inputs: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redact_pii, self.log_inputs = redact_pii, log_inputs
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def _text(self, text: str | None) -> str | None:
        if text is None or not self.log_inputs:
            return None
        if self.redact_pii:
            from tunewise.data.pii import redact

            return redact(text)
        return text

    def write(self, model: str, endpoint: str, status: int, input: str | None, output: str | None,
              latency_ms: float, probabilities: dict | None = None, batch_size: int | None = None) -> None:
        row = (time.time(), model, endpoint, status, self._text(input), self._text(output), latency_ms,
               json.dumps(probabilities) if probabilities is not None else None, batch_size, int(self.redact_pii))
        with self._lock:
            self._db.execute(
                "INSERT INTO requests (time, model, endpoint, status, input, output, latency_ms, probabilities, "
                "batch_size, redacted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""Review decisions made in the browser, saved one at a time.

Each decision goes to two places under one lock, both written atomically:

- ``.tunewise/reviews/ui-review.csv``: the review CSV format ``tunewise review import`` reads (one
  row per decided id, ``corrected_target`` filled), so the decisions can be audited or re-imported;
- ``.tunewise/reviews/corrections.json``: the store ``prepare`` applies, so the next ``prepare``
  uses the decision without an import step.

"keep" records the row's current target (the reviewer confirmed it); "skip" records nothing.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import threading
from contextlib import contextmanager
from pathlib import Path

from tunewise import workspace as ws
from tunewise.data.review import COLUMNS, DROP

FILE = "ui-review.csv"
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def review_file(project: Path) -> Path:
    return ws.workspace(project) / "reviews" / FILE


@contextmanager
def locked(project: Path):
    """One writer at a time: a thread lock for this process, a file lock for two servers on one project."""
    folder = ws.workspace(project) / "reviews"
    folder.mkdir(parents=True, exist_ok=True)
    with _guard:
        lock = _locks.setdefault(str(folder.resolve()), threading.Lock())
    with lock, open(folder / ".ui-review.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_decisions(project: Path) -> dict[str, dict]:
    """Row id -> the CSV row of its decision (with an extra ``decision`` column)."""
    path = review_file(project)
    if not path.exists():
        return {}
    rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    return {r["id"]: r for r in rows if r.get("id")}


def save_decision(project: Path, row: dict, decision: str, corrected: str) -> None:
    """Record ``corrected`` (a label, the kept target or DROP) for ``row`` (id, source, flags, input,
    target, suggested_target); later decisions on the same id replace earlier ones."""
    with locked(project):
        decisions = read_decisions(project)
        decisions[row["id"]] = {**{c: row.get(c, "") for c in COLUMNS}, "corrected_target": corrected,
                                "decision": decision}
        buf = io.StringIO()
        writer = csv.DictWriter(buf, COLUMNS + ["decision"])
        writer.writeheader()
        writer.writerows(decisions.values())
        ws.write_text(review_file(project), buf.getvalue())
        store = ws.workspace(project) / "reviews" / "corrections.json"
        merged = json.loads(store.read_text(encoding="utf-8")) if store.exists() else {}
        merged[row["id"]] = corrected
        ws.write_json(store, dict(sorted(merged.items())))


def agreement(decisions: dict[str, dict]) -> dict:
    """How often reviewers took the suggestion, kept the label or changed it (of the decided rows)."""
    counts = {"accept": 0, "keep": 0, "label": 0, "drop": 0}
    for d in decisions.values():
        kind = "drop" if d.get("corrected_target") == DROP else d.get("decision", "label")
        counts[kind if kind in counts else "label"] += 1
    suggested = [d for d in decisions.values() if d.get("suggested_target")]
    took = sum(d.get("corrected_target") == d.get("suggested_target") for d in suggested)
    return {**counts, "decided": len(decisions), "with_suggestion": len(suggested),
            "suggestion_taken": round(took / len(suggested), 3) if suggested else None}

"""The split ledger: which part every row ever split went to, so a new data version moves no row.

``.tunewise/split-ledger.json`` records, for the project's seed, each row's identity (its id, and a
hash of what it says, ``load.content_id``) and its part. ``prepare`` keeps every row the ledger knows
in that part and splits only the new rows (``split.frozen_split``); the ledger only grows, so a row
trained on once is never a test row later, even if it was removed and added again. A row is found
by its id first, then by its content: renaming a data file, or adding a second one, renames its
rows' ids (``load.load_files``) but keeps their parts.

A fresh split replaces the ledger and starts a new *epoch*: the first `prepare`, `prepare --resplit`,
or a change of ``data.seed``, ``data.split`` or ``data.test_file`` (the split parameters a user sets
to ask for another split; each is said in one line). The epoch is part of the dataset fingerprint
and of the manifest, so a report can say that comparisons with reports on an earlier epoch are void.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tunewise import workspace as ws
from tunewise.config import ProjectConfig
from tunewise.core import Record
from tunewise.data.load import DataError, content_id

FILE = "split-ledger.json"
PARTS = ("train", "val", "test")


def ledger_path(project: Path) -> Path:
    return ws.workspace(project) / FILE


def read_ledger(project: Path) -> dict | None:
    """The ledger, or None before the first split; a damaged ledger is an error naming the file."""
    path = ledger_path(project)
    if not path.exists():
        return None
    try:
        ledger = json.loads(path.read_text(encoding="utf-8"))
        why = None if isinstance(ledger, dict) and isinstance(ledger.get("rows"), dict) and \
            isinstance(ledger.get("epoch"), int) else "no 'rows' or 'epoch'"
    except (OSError, ValueError) as e:
        why = str(e)
    if why:
        raise DataError(f"{path}: not a readable split ledger ({why}); `tunewise prepare --resplit` "
                        "writes a new one (and makes a fresh split)")
    return ledger


def ledger_from_dataset(project: Path, config: ProjectConfig) -> dict | None:
    """Without a ledger, the newest dataset prepared for the same seed and test file (by a version
    of tunewise that kept no ledger, or before the ledger was deleted) stands in for one, so
    upgrading moves no row. Its rows are
    found by id, else by content: rows once named by line number are found by what they say (unless
    cleaning rewrote them, e.g. redacted personal data: those are split again as new rows)."""
    found = []
    for path in (ws.workspace(project) / "datasets").glob("*/manifest.json"):
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(m, dict) and m.get("seed") == config.data.seed and m.get("test_file") == config.data.test_file:
            found.append((path.stat().st_mtime, str(path.parent), m))
    if not found:
        return None
    _, newest, m = max(found, key=lambda f: f[:2])
    folder = Path(newest)
    rows = {}
    for part in PARTS:
        path = folder / f"{part}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            rec = json.loads(line)
            target = rec.get("meta", {}).get("original_target", rec["target"])  # as read, before a review
            rows[rec["id"]] = [part, content_id(rec["input"], target)]
    fractions = m["split"] if isinstance(m.get("split"), dict) else config.data.split.model_dump()
    return {"seed": config.data.seed, "test_file": config.data.test_file, "fractions": fractions, "epoch": 0,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "why": f"no split ledger yet: started it from dataset {folder.name}, prepared without one", "rows": rows}


def epoch(project: Path) -> int:
    ledger = read_ledger(project)
    return ledger["epoch"] if ledger else 0


def fresh_reason(ledger: dict | None, config: ProjectConfig, resplit: bool) -> str | None:
    """Why this prepare splits afresh, or None when it extends the ledger's split."""
    if resplit:
        return "`tunewise prepare --resplit` asked for a fresh split"
    if ledger is None:
        return "the first split of this project"
    if ledger.get("seed") != config.data.seed:
        return f"data.seed changed ({ledger.get('seed')} → {config.data.seed})"
    if ledger.get("test_file") != config.data.test_file:
        return f"data.test_file changed ({ledger.get('test_file')} → {config.data.test_file})"
    fractions = config.data.split.model_dump()
    if ledger.get("fractions", fractions) != fractions:
        return f"data.split changed ({_shares(ledger['fractions'])} → {_shares(fractions)})"
    return None


def _shares(fractions: dict) -> str:
    return "/".join(f"{k} {v:g}" for k, v in fractions.items())


def next_epoch(ledger: dict | None, fresh: str | None) -> int:
    """The epoch of the split this prepare makes: a fresh split after an earlier one starts the next."""
    if ledger is None:
        return 0
    return ledger["epoch"] + 1 if fresh else ledger["epoch"]


def known_parts(ledger: dict | None, recs: list[Record], content: dict[str, str]) -> dict[str, str]:
    """Row id → its part in the ledger, found by id, else by content (``content``: id → content id)."""
    if not ledger:
        return {}
    rows = ledger["rows"]
    by_content: dict[str, str] = {}
    for part, key in rows.values():
        by_content.setdefault(key, part)
    out = {}
    for rec in recs:
        part = rows[rec.id][0] if rec.id in rows else by_content.get(content.get(rec.id, ""))
        if part is not None:
            out[rec.id] = part
    return out


def movement(parts: dict[str, list[Record]], known: dict[str, str], ledger: dict | None,
             content: dict[str, str], dropped: int) -> dict:
    """Per part: rows kept from the earlier split, new rows, rows that changed part (always 0 unless a
    bug), and earlier rows absent from this version (removed from the data or dropped by cleaning)."""
    present = {r.id for rows in parts.values() for r in rows} | set(known)
    seen_content = {content.get(i) for i in present}
    gone: dict[str, int] = {}
    for rid, (part, key) in (ledger or {}).get("rows", {}).items():
        if rid not in present and key not in seen_content:
            gone[part] = gone.get(part, 0) + 1
    out = {}
    for name, rows in parts.items():
        if name not in PARTS:
            continue
        kept = sum(known.get(r.id) == name for r in rows)
        moved = sum(r.id in known and known[r.id] != name for r in rows)
        out[name] = {"kept": kept, "new": len(rows) - kept - moved, "moved": moved, "absent": gone.get(name, 0)}
    return {"parts": out, "dropped_to_keep_split": dropped}


def summary_lines(frozen: dict) -> list[str]:
    """'test: 250 kept, 20 new, 0 moved' per part, then why the split is fresh when it is."""
    lines = [f"{name}: {m['kept']} kept, {m['new']} new, {m['moved']} moved"
             + (f" ({m['absent']} earlier rows absent from this version)" if m["absent"] else "")
             for name, m in frozen["parts"].items()]
    if frozen.get("dropped_to_keep_split"):
        lines.append(f"{frozen['dropped_to_keep_split']} near-duplicate rows left out so that no row changes split "
                     "(listed in rejects.jsonl)")
    if frozen.get("note"):
        lines.append(frozen["note"])
    if frozen.get("fresh"):
        lines.append(f"fresh split, epoch {frozen['epoch']}: {frozen['fresh']}"
                     + ("; comparisons with reports on an earlier split are void" if frozen["epoch"] else ""))
    return lines


def write_ledger(project: Path, ledger: dict | None, fresh: str | None, parts: dict[str, list[Record]],
                 content: dict[str, str], config: ProjectConfig) -> int:
    """Record the new rows' parts (all rows on a fresh split, as a new epoch); return the epoch."""
    if fresh or ledger is None:
        ledger = {"seed": config.data.seed, "test_file": config.data.test_file,
                  "fractions": config.data.split.model_dump(), "epoch": next_epoch(ledger, fresh),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "why": fresh, "rows": {}}
    rows, added = ledger["rows"], 0
    for name, recs in parts.items():
        for rec in recs if name in PARTS else []:
            if rec.id not in rows:
                rows[rec.id] = [name, content.get(rec.id, "")]
                added += 1
    if added or fresh or not ledger_path(project).exists():  # compact: a row costs ~40 bytes, not 4 lines
        ws.write_text(ledger_path(project), json.dumps(ledger, ensure_ascii=False, separators=(",", ":")) + "\n")
    return ledger["epoch"]

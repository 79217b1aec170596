"""The expert review loop: export flagged rows to CSV, import corrections, measure annotator agreement.

Corrections are stored in ``.tunewise/reviews/corrections.json`` (row id → corrected target, later
imports win) and applied by ``prepare``; the user's data files are never modified. A row id is its
identity (``load.load_files``: the id field, else a hash of what the row says, namespaced by file when
there are several), so a decision follows its row when lines are inserted, removed or reordered.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from tunewise.core import Record
from tunewise.data.dedup import normalise
from tunewise.data.load import DataError, nearest_label

COLUMNS = ["id", "source", "flags", "input", "target", "suggested_target", "corrected_target"]
DROP = "DROP"  # a reviewer writes this in corrected_target to remove the row


def annotator_agreement(records: list[Record], field: str) -> dict:
    """count: items (same normalised input) whose annotators disagree; kappa: Cohen's (two
    annotators) or Fleiss' (more, items may have different numbers of ratings)."""
    items: dict[str, dict[str, str]] = defaultdict(dict)
    for rec in records:
        who = rec.meta.get(field)
        if who is not None and rec.target is not None:
            items[normalise(rec.input)][str(who)] = rec.target
    rated = {k: v for k, v in items.items() if len(v) >= 2}
    annotators = sorted({a for v in items.values() for a in v})
    if not rated:
        return {"count": 0, "annotators": len(annotators), "items": 0, "kappa": None,
                "skipped": f"no item labelled by two or more annotators (field '{field}')"}
    disagree = sum(len(set(v.values())) > 1 for v in rated.values())
    if len(annotators) == 2:
        from sklearn.metrics import cohen_kappa_score

        a, b = annotators
        kappa, method = cohen_kappa_score([v[a] for v in rated.values()], [v[b] for v in rated.values()]), "Cohen"
    else:
        kappa, method = fleiss_kappa([list(v.values()) for v in rated.values()]), "Fleiss"
    return {"count": disagree, "annotators": len(annotators), "items": len(rated), "method": method,
            "kappa": None if math.isnan(kappa) else round(float(kappa), 4)}


def fleiss_kappa(ratings: list[list[str]]) -> float:
    """Fleiss' kappa; each item may have its own number (>= 2) of ratings."""
    totals: Counter[str] = Counter()
    agreement = []
    for labels in ratings:
        counts = Counter(labels)
        n = len(labels)
        totals.update(counts)
        agreement.append((sum(c * c for c in counts.values()) - n) / (n * (n - 1)))
    p_bar = sum(agreement) / len(agreement)
    all_n = sum(totals.values())
    p_e = sum((c / all_n) ** 2 for c in totals.values())
    return 1.0 if p_e == 1 else (p_bar - p_e) / (1 - p_e)


def flagged_rows(audit: dict) -> dict[str, dict]:
    """Row id → {"flags": [...], "suggested": label} from an audit's checks and review sample."""
    out: dict[str, dict] = defaultdict(lambda: {"flags": [], "suggested": ""})
    checks = audit["checks"]

    def flag(rid: str, name: str) -> None:
        if name not in out[rid]["flags"]:
            out[rid]["flags"].append(name)

    for it in checks["exact_duplicates"]["items"]:
        flag(it["id"], "exact_duplicate")
    for p in checks["near_duplicates"]["pairs"]:
        flag(p["b"], "near_duplicate")
    for g in checks["conflicting_targets"]["groups"]:
        for rid in g["ids"]:
            flag(rid, "conflicting_target")
    for name in ("empty_inputs", "missing_targets", "too_long", "empty_assistant_replies"):
        for rid in checks.get(name, {}).get("ids", []):
            flag(rid, name)
    for f in checks["pii"]["findings"]:
        flag(f["id"], "pii")
    for found in checks.get("unknown_labels", {}).get("labels", {}).values():
        for rid in found["ids"]:
            flag(rid, "unknown_label")
            out[rid]["suggested"] = found["nearest"] or ""
    for it in checks["suspected_mislabels"].get("items", []):
        flag(it["id"], "suspected_mislabel")
        out[it["id"]]["suggested"] = it["suggested"]
    for rid in checks["review_sample"]["ids"]:
        flag(rid, "review_sample")
    return dict(out)


def export_review(audit: dict, records: list[Record], path: Path) -> int:
    """Write the review CSV (flagged rows, then the sample); return how many rows it holds."""
    from tunewise import workspace as ws

    flagged = flagged_rows(audit)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    n = 0
    for rec in records:
        if rec.id in flagged:
            f = flagged[rec.id]
            writer.writerow([rec.id, rec.source, ";".join(f["flags"]), rec.input, rec.target or "", f["suggested"], ""])
            n += 1
    ws.write_text(path, buf.getvalue())
    return n


def read_corrections(path: Path, labels: list[str] | None = None) -> dict[str, str]:
    """Row id → corrected target from a filled-in review CSV (blank corrections are skipped). With
    ``labels`` (classification) a correction must be one of them or DROP: a typo would otherwise
    be accepted here and the row silently dropped by prepare."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    rows = []  # (the line the row starts on, row): inputs may span lines
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns, end = reader.fieldnames or [], reader.line_num
        for row in reader:
            rows.append((end + 1, row))
            end = reader.line_num
    except csv.Error as e:
        raise DataError(f"{path}: not a valid CSV ({e})") from None
    if not rows or not {"id", "corrected_target"} <= set(columns):
        raise DataError(f"{path}: a review file needs the columns id and corrected_target (from `tunewise review export`)")
    out, bad = {}, []
    for line, row in rows:
        value = (row.get("corrected_target") or "").strip()
        if value:
            if not row.get("id"):
                raise DataError(f"{path}:{line}: a correction without an id")
            out[row["id"]] = value
            if labels and value != DROP and value not in labels:
                bad.append((line, value))
    if bad:
        line, value = bad[0]
        near = nearest_label(value, labels or [])
        more = f"; {len(bad)} such rows (lines {', '.join(str(n) for n, _ in bad[:10])}{', …' if len(bad) > 10 else ''})"
        raise DataError(f"{path}:{line}: corrected_target {value!r} is not in task.labels ({', '.join(labels or [])})"
                        f"{f'; nearest: {near!r}' if near else ''}{more if len(bad) > 1 else ''}; nothing was imported")
    return out


def import_review(project: Path, path: Path, known_ids: set[str], labels: list[str] | None = None) -> tuple[int, Path]:
    """Record the corrections of a review CSV; return how many and the corrections file."""
    from tunewise import workspace as ws

    corrections = read_corrections(path, labels)
    unknown = sorted(set(corrections) - known_ids)
    if unknown:
        raise DataError(f"{path}: {len(unknown)} id(s) not in the project's data, e.g. '{unknown[0]}'")
    store = ws.workspace(project) / "reviews" / "corrections.json"
    merged = json.loads(store.read_text()) if store.exists() else {}
    merged.update(corrections)
    folder = store.parent
    folder.mkdir(parents=True, exist_ok=True)
    with ws.atomic_path(folder / f"{ws.timestamp()}-{Path(path).name}") as tmp:
        shutil.copyfile(path, tmp)
    ws.write_json(store, dict(sorted(merged.items())))
    return len(corrections), store


def load_corrections(project: Path) -> dict[str, str]:
    from tunewise import workspace as ws

    store = ws.workspace(project) / "reviews" / "corrections.json"
    return json.loads(store.read_text()) if store.exists() else {}

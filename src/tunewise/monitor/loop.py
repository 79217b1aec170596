"""The loop back into the data: served requests worth labelling out, labelled requests back in.

``export_served_review`` writes the review CSV (the columns of ``tunewise review export``) of the
served inputs most worth labelling: the farthest from the training data and the least confident,
near-duplicates collapsed (data/dedup.py) and personal data redacted (data/pii.py). Their ids start
with ``served-``. ``tunewise review import`` recognises such a file and appends its labelled rows
(``corrected_target`` filled in; ``DROP`` or blank rows are skipped) to
``.tunewise/reviews/recent.jsonl``; point ``data.recent_test`` at that file and ``tunewise prepare``
keeps them as a separate "recent" test split beside the frozen one, which ``tunewise ladder`` scores
every rung on, each compared (McNemar, same items) with what the deployed model answered when served.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from tunewise import workspace as ws
from tunewise.config import ProjectConfig
from tunewise.data.dedup import clusters, near_pairs, normalise
from tunewise.data.load import DataError, load_file
from tunewise.data.pii import redact
from tunewise.data.review import COLUMNS, DROP
from tunewise.monitor.reference import Reference
from tunewise.monitor.requestlog import Served

PREFIX = "served-"
RECENT = "reviews/recent.jsonl"


def served_id(text: str) -> str:
    return PREFIX + ws.sha256_bytes(normalise(text).encode())[:12]


def read_labelled(config: ProjectConfig, path: Path) -> dict[str, str]:
    """Normalised input -> label from a labelled file (the project's input/target fields).

    A row repeated in the file is one item (kept once, so it cannot weigh twice in the label tests);
    the same input with two different labels is an error naming both lines."""
    loaded = load_file(Path(path), config.task.input_field, config.task.target_field)
    if loaded.rejects:
        r = loaded.rejects[0]
        raise DataError(f"{r.file}:{r.line}: {r.reason}")
    out, where = {}, {}
    for rec in loaded.records:
        if rec.target is None:
            raise DataError(f"{rec.source}: field '{config.task.target_field}': missing label")
        if config.task.labels and rec.target not in config.task.labels:
            raise DataError(f"{rec.source}: field '{config.task.target_field}': "
                            f"label {rec.target!r} is not in task.labels")
        key = normalise(rec.input)
        if key in out and out[key] != rec.target:
            raise DataError(f"{rec.source}: field '{config.task.target_field}': the same input is labelled "
                            f"{out[key]!r} at {where[key]}; keep one label per input")
        out.setdefault(key, rec.target)
        where.setdefault(key, rec.source)
    if not out:
        raise DataError(f"{path}: no labelled rows")
    return out


def worth(features: dict) -> np.ndarray:
    """Rank score: far from the training data and unsure; each by its rank, averaged."""
    from scipy.stats import rankdata

    score = rankdata(features["dist"]) / len(features["dist"])
    if features["probs"] is not None:
        score = (score + rankdata(-features["probs"].max(1)) / len(score)) / 2
    return score


def top_drifted(ref: Reference, rows: list[Served], features: dict, k: int) -> list[dict]:
    order = np.argsort(-features["dist"])[:k]
    out = []
    for i in order:
        item = {"id": rows[i].id, "window": features["keys"][i], "distance": round(float(features["dist"][i]), 4),
                "far": bool(features["dist"][i] > ref.nn_threshold), "input": redact(rows[i].input)[:300]}
        if features["probs"] is not None:
            item["predicted"] = ref.labels[int(features["probs"][i].argmax())]
            item["confidence"] = round(float(features["probs"][i].max()), 3)
        out.append(item)
    return out


def export_served_review(ref: Reference, rows: list[Served], features: dict, n: int, path: Path,
                         log: str) -> tuple[Path, int]:
    """The n served inputs most worth labelling as a review CSV; return its path and row count."""
    order = list(np.argsort(-worth(features), kind="stable"))
    pool = order[: max(5 * n, 50)]
    texts = [rows[i].input for i in pool]
    # One row per exact or near-duplicate cluster: a reviewer labels a recurring request once.
    root = clusters(len(pool), [(a, b) for a, b, _ in near_pairs(texts, 0.8)])
    seen, picked = set(), []
    for j, i in enumerate(pool):
        key = (root[j], normalise(texts[j]))
        if root[j] in seen or key[1] in seen:
            continue
        seen.update(key)
        picked.append(i)
        if len(picked) == n:
            break
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for i in picked:
        flags = ["out_of_distribution"] if features["dist"][i] > ref.nn_threshold else []
        # suggested_target: what the served model answered (the log's output, else its top label).
        suggested = rows[i].output or ""
        if features["probs"] is not None:
            if not suggested and ref.predict is not None:  # not the served model's answer: say whose it is
                flags.append("suggested_by_monitor")
            suggested = suggested or ref.labels[int(features["probs"][i].argmax())]
            if features["probs"][i].max() < float(np.median(ref.test_conf)):
                flags.append("low_confidence")
        text = redact(rows[i].input)
        writer.writerow([served_id(text), f"{log}:{rows[i].id}", ";".join(flags or ["most_drifted"]), text, "",
                         suggested, ""])
    ws.write_text(path, buf.getvalue())
    return Path(path), len(picked)


def is_served_review(path: Path) -> bool:
    """True when the CSV holds served requests (ids written by export_served_review)."""
    try:
        rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8-sig"), newline="")))
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    ids = [r.get("id") or "" for r in rows]
    served = [i.startswith(PREFIX) for i in ids]
    if any(served) and not all(served):
        raise DataError(f"{path}: mixes served requests ({PREFIX}…) with the project's rows; import them separately")
    return bool(ids) and all(served)


def import_served(config: ProjectConfig, project: Path, path: Path) -> tuple[int, int, Path]:
    """Append the labelled served rows of a review CSV to .tunewise/reviews/recent.jsonl (later wins)."""
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8-sig"), newline="")))
    task = config.task
    store = ws.workspace(project) / RECENT
    merged = {}
    if store.exists():
        for line in store.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                merged[row["id"]] = row
    added = skipped = 0
    for line, row in enumerate(rows, start=2):
        label = (row.get("corrected_target") or "").strip()
        if not label or label == DROP:
            skipped += 1
            continue
        if task.labels and label not in task.labels:
            raise DataError(f"{path}:{line}: field 'corrected_target': label {label!r} is not in task.labels")
        if not (row.get("input") or "").strip():
            raise DataError(f"{path}:{line}: field 'input': empty")
        merged[row["id"]] = {"id": row["id"], task.input_field: row["input"], task.target_field: label,
                             "source": row.get("source", ""), "origin": "served",
                             "served_output": None if "suggested_by_monitor" in (row.get("flags") or "")
                             else (row.get("suggested_target") or "").strip() or None}
        added += 1
    ws.write_jsonl(store, merged.values())
    return added, skipped, store

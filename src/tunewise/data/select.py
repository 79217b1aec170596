"""Which unlabelled rows to label next, picked from a pool file.

Three strategies, each a plain function of arrays so it can be tested without a model:

- ``uncertainty``: the rows the current model is least sure of (lowest top-label probability,
  "least confidence" in Settles' survey of active learning);
- ``diverse``: the rows that cover the embedding space best, by k-center greedy (Sener & Savarese
  2018) started from the rows already labelled, so it fills the gaps the train split leaves;
- ``random``: a seeded uniform sample, the baseline the other two must beat.

Before any strategy runs, every input is PII-redacted (the text a reviewer sees and the model scores
is the redacted one) and near-duplicates are removed: pool rows that repeat each other keep one, and
pool rows that repeat an already labelled row (train, val or test: labelling a copy of a test row
would leak it into training) are dropped. The counts are returned so the caller can say them.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tunewise.core import Record
from tunewise.data.load import DataError, read_rows

STRATEGIES = ("uncertainty", "diverse", "random")


@dataclass
class Pool:
    rows: list[Record]
    skipped_empty: list[str] = field(default_factory=list)  # "file:line" of rows with an empty input
    skipped_labelled: list[str] = field(default_factory=list)  # "file:line" of rows that already hold a target


def read_pool(path: Path, input_field: str, id_field: str = "id", target_field: str | None = None) -> Pool:
    """The pool's rows (JSONL, JSON, CSV, TSV, Parquet): a DataError names the file, line and field.

    A row that already holds a non-empty ``target_field`` is labelled, not a candidate to label: it is
    left out and listed in ``skipped_labelled`` (add such rows to data.files to train on them)."""
    path = Path(path)
    pool = Pool([])
    seen: dict[str, int] = {}
    for line, row, _ in read_rows(path):
        if not isinstance(row, dict):
            raise DataError(f"{path}:{line}: {row if isinstance(row, Exception) else 'not an object with fields'}")
        value = row.get(input_field)
        if value is None:
            raise DataError(f"{path}:{line}: missing field '{input_field}' (task.input_field)")
        if not isinstance(value, str):
            raise DataError(f"{path}:{line}: field '{input_field}' must be a string, got {type(value).__name__}")
        rid = row.get(id_field)
        rid = f"pool-{line}" if rid is None or str(rid).strip() == "" else str(rid)
        if rid in seen:
            raise DataError(f"{path}:{line}: id '{rid}' (field '{id_field}') repeats line {seen[rid]}")
        seen[rid] = line
        if not value.strip():
            pool.skipped_empty.append(f"{path.name}:{line}")
            continue
        target = row.get(target_field) if target_field else None
        if target is not None and str(target).strip():
            pool.skipped_labelled.append(f"{path.name}:{line}")
            continue
        pool.rows.append(Record(id=rid, input=value, target=None, source=f"{path.name}:{line}"))
    if not pool.rows:
        raise DataError(f"{path}: no row with a non-empty '{input_field}' to pick from")
    return pool


def redact_rows(rows: list[Record]) -> set[str]:
    """Redact PII in every row's input, in place; the ids of the rows that held some."""
    from tunewise.data.pii import find_pii, redact

    touched = set()
    for rec in rows:
        spans = find_pii(rec.input)
        if spans:
            rec.input = redact(rec.input, spans)
            touched.add(rec.id)
    return touched


def drop_near_duplicates(rows: list[Record], labelled: list[str], threshold: float) -> tuple[list[Record], dict]:
    """One row per near-duplicate group of the pool; none that repeats an already labelled text."""
    from tunewise.data.dedup import clusters, near_pairs

    texts = [r.input for r in rows] + list(labelled)
    pairs = near_pairs(texts, threshold)
    reps = clusters(len(texts), [(i, j) for i, j, _ in pairs])
    n = len(rows)
    labelled_groups = {reps[i] for i in range(n, len(texts))}
    kept, repeats, known = [], 0, 0
    for i, rec in enumerate(rows):
        if reps[i] in labelled_groups:
            known += 1
        elif reps[i] != i:  # the representative is the group's first pool row
            repeats += 1
        else:
            kept.append(rec)
    return kept, {"pool_near_duplicates": repeats, "near_duplicates_of_labelled": known}


def least_confident(proba: np.ndarray, n: int) -> list[int]:
    """Indices of the n rows whose top-label probability is lowest (ties: earlier row first)."""
    top = np.asarray(proba, dtype=float).max(1)
    return [int(i) for i in np.argsort(top, kind="stable")[:n]]


def k_center_greedy(pool: np.ndarray, covered: np.ndarray | None, n: int, seed: int = 0) -> list[int]:
    """n pool indices, each the point farthest from everything covered so far (labelled rows and
    earlier picks). Without labelled rows the first pick is a seeded random point."""
    pool = np.asarray(pool, dtype=float)
    if covered is not None and len(covered):
        dist = np.full(len(pool), np.inf)
        for start in range(0, len(covered), 1024):  # chunks: pool × labelled distances can be large
            block = np.asarray(covered[start : start + 1024], dtype=float)
            dist = np.minimum(dist, _sq_dist(pool, block).min(1))
        picks = []
    else:
        first = random.Random(seed).randrange(len(pool))
        picks, dist = [first], _sq_dist(pool, pool[first : first + 1])[:, 0]
    while len(picks) < min(n, len(pool)):
        i = int(np.argmax(dist))
        picks.append(i)
        dist = np.minimum(dist, _sq_dist(pool, pool[i : i + 1])[:, 0])
    return picks


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def random_pick(n_pool: int, n: int, seed: int = 0) -> list[int]:
    return sorted(random.Random(f"{seed}:pool").sample(range(n_pool), min(n, n_pool)))


def write_review_csv(path: Path, rows: list[Record], flags: list[str], suggested: list[str]) -> None:
    """The picked rows as the review CSV (data/review.py's columns), target and correction empty."""
    from tunewise import workspace as ws
    from tunewise.data.review import COLUMNS

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for rec, flag, guess in zip(rows, flags, suggested, strict=True):
        writer.writerow([rec.id, rec.source, flag, rec.input, "", guess, ""])
    ws.write_text(path, buf.getvalue())

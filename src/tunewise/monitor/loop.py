"""The loop back into the data: served requests to label out, labelled requests back in.

``export_served_review`` writes the review CSV (the columns of ``tunewise review export``) of two kinds
of served inputs, personal data redacted (data/pii.py), ids starting with ``served-``:

- a random sample (flag ``random_sample``): distinct served inputs drawn uniformly at random (seeded by
  ``monitor.seed``), each as first served. These are the rows whose accuracy stands for the traffic,
  so only they become test rows;
- the inputs most worth labelling (the farthest from the training data and the least confident,
  near-duplicates collapsed, data/dedup.py): rows to train on. They were picked by looking at the
  model, so their accuracy is biased low: the rows it was unsure of are the rows it gets wrong, and
  once the inputs drift the farthest rows are the newest ones. Compared with the frozen test split they
  say "worse" when nothing changed, and beside the served model's answers they favour any other rung.

``tunewise review import`` recognises such a file and appends its labelled rows (``corrected_target``
filled in; ``DROP`` or blank rows are skipped): the random sample to ``.tunewise/reviews/recent.jsonl``,
the others to ``.tunewise/reviews/served_ranked.jsonl``. Point ``data.recent_test`` at recent.jsonl and
``tunewise prepare`` keeps it as a separate "recent" test split beside the frozen one, which
``tunewise ladder`` scores every rung on, each compared (McNemar, same items) with what the deployed
model answered when served; add served_ranked.jsonl to ``data.files`` to train on it. ``tunewise
monitor --labeled`` compares only the random-sample rows of a file with the ladder's accuracy.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
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
RANKED = "reviews/served_ranked.jsonl"
SAMPLE_FLAG = "random_sample"


def served_id(text: str) -> str:
    return PREFIX + ws.sha256_bytes(normalise(text).encode())[:12]


def read_labelled(config: ProjectConfig, path: Path) -> tuple[dict[str, str], int]:
    """Normalised input -> label from a labelled file (the project's input/target fields), and how many
    rows were left out for being picked by the model's own scores (``"sample": "ranked"``, as
    served_ranked.jsonl holds): their accuracy is biased low, so they never judge the model.

    A row repeated in the file is one item (kept once, so it cannot weigh twice in the label tests);
    the same input with two different labels is an error naming both lines."""
    loaded = load_file(Path(path), config.task.input_field, config.task.target_field)
    if loaded.rejects:
        r = loaded.rejects[0]
        raise DataError(f"{r.file}:{r.line}: {r.reason}")
    out, where = {}, {}
    ranked = [rec for rec in loaded.records if rec.meta.get("sample") == "ranked"]
    if ranked and len(ranked) == len(loaded.records):
        raise DataError(f"{path}: every row was picked for being far from the training data or unsure "
                        "(\"sample\": \"ranked\"), so its accuracy is biased low; label the random_sample rows "
                        "of `tunewise monitor --export-review` (they go to .tunewise/reviews/recent.jsonl)")
    for rec in loaded.records:
        if rec.meta.get("sample") == "ranked":
            continue
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
    return out, len(ranked)


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


def random_sample(rows: list[Served], n: int, seed: int) -> list[int]:
    """n distinct served inputs drawn uniformly at random (seeded), each at its first serving, in log order.

    Uniform over distinct inputs, like the frozen test split (one row per input), and over the whole
    log, so every window weighs by its traffic: nothing about the row or the model chooses it."""
    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        first.setdefault(normalise(r.input), i)
    distinct = np.array(sorted(first.values()))
    pick = np.random.default_rng(seed).choice(len(distinct), min(n, len(distinct)), replace=False)
    return sorted(int(i) for i in distinct[pick])


def ranked(rows: list[Served], features: dict, n: int) -> list[int]:
    """The n served inputs most worth labelling: far and unsure first, one per near-duplicate cluster."""
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
        picked.append(int(i))
        if len(picked) == n:
            break
    return picked


def export_served_review(ref: Reference, rows: list[Served], features: dict, n: int, path: Path,
                         log: str, seed: int = 0) -> dict:
    """The review CSV: the n inputs most worth labelling (to train on) and a random sample of n distinct
    inputs (flagged random_sample: the only rows fit to test on). Returns its path and row counts."""
    top = ranked(rows, features, n)
    sample = random_sample(rows, n, seed)
    # A row can be both; it is then a sampled row, its selection independent of how the model does on it.
    chosen = set(top)
    picked = top + [i for i in sample if i not in chosen]
    in_sample = set(sample)
    unsure = float(np.median(ref.test_conf)) if features["probs"] is not None else 0.0
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for i in picked:
        flags = [SAMPLE_FLAG] if i in in_sample else []
        flags += ["out_of_distribution"] if features["dist"][i] > ref.nn_threshold else []
        # suggested_target: what the served model answered (the log's output, else its top label).
        suggested = rows[i].output or ""
        if features["probs"] is not None:
            if not suggested and ref.predict is not None:  # not the served model's answer: say whose it is
                flags.append("suggested_by_monitor")
            suggested = suggested or ref.labels[int(features["probs"][i].argmax())]
            if features["probs"][i].max() < unsure:
                flags.append("low_confidence")
        if i not in in_sample and not {"out_of_distribution", "low_confidence"} & set(flags):
            flags.append("most_drifted")
        text = redact(rows[i].input)
        writer.writerow([served_id(text), f"{log}:{rows[i].id}", ";".join(flags), text, "", suggested, ""])
    ws.write_text(path, buf.getvalue())
    return {"path": str(path), "rows": len(picked), "random_sample": len(sample),
            "ranked": len([i for i in top if i not in in_sample])}


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


@dataclass
class ServedImport:
    """What `tunewise review import` did with a served-request review CSV."""

    recent: int  # random-sample rows added to reviews/recent.jsonl (test rows)
    ranked: int  # the other labelled rows, added to reviews/served_ranked.jsonl (training rows)
    skipped: int  # blank or DROP
    recent_path: Path
    ranked_path: Path
    unmarked: int = 0  # rows of recent.jsonl from an export before the random sample (picked, biased low)

    def line(self, project: Path) -> str:
        where = f"{self.recent} random-sample row(s) to {self.recent_path.relative_to(project)}"
        if self.ranked:
            where += (f", {self.ranked} row(s) picked for being far or unsure to "
                      f"{self.ranked_path.relative_to(project)} (to train on: add it to data.files; never a test "
                      "split, their accuracy is biased low)")
        said = (f"added labelled served requests: {where} ({self.skipped} blank or DROP skipped); with "
                f"data.recent_test: {self.recent_path.relative_to(project)} `tunewise prepare` keeps the random "
                "sample as a recent test split")
        if self.unmarked:
            said += (f". Note: {self.unmarked} older row(s) of {self.recent_path.relative_to(project)} have no "
                     "\"sample\" mark: exported before the random sample, they were picked for being far or unsure; "
                     f"move them to {self.ranked_path.relative_to(project)} to keep the recent test split unbiased")
        return said


def _merge(store: Path, rows: list[dict]) -> list[dict]:
    """Add rows to a JSONL store keyed by id (a later label of the same request wins); return its rows."""
    merged = {}
    if store.exists():
        for line in store.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                merged[row["id"]] = row
    merged.update((r["id"], r) for r in rows)
    ws.write_jsonl(store, merged.values())
    return list(merged.values())


def import_served(config: ProjectConfig, project: Path, path: Path) -> ServedImport:
    """Append the labelled served rows of a review CSV: the random sample to .tunewise/reviews/recent.jsonl,
    the rows picked for being far or unsure to .tunewise/reviews/served_ranked.jsonl."""
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8-sig"), newline="")))
    task = config.task
    kept: dict[str, list[dict]] = {"random": [], "ranked": []}
    skipped = 0
    for line, row in enumerate(rows, start=2):
        label = (row.get("corrected_target") or "").strip()
        if not label or label == DROP:
            skipped += 1
            continue
        if task.labels and label not in task.labels:
            raise DataError(f"{path}:{line}: field 'corrected_target': label {label!r} is not in task.labels")
        if not (row.get("input") or "").strip():
            raise DataError(f"{path}:{line}: field 'input': empty")
        flags = (row.get("flags") or "").split(";")
        sample = "random" if SAMPLE_FLAG in flags else "ranked"
        kept[sample].append({"id": row["id"], task.input_field: row["input"], task.target_field: label,
                             "source": row.get("source", ""), "origin": "served", "sample": sample,
                             "served_output": None if "suggested_by_monitor" in flags
                             else (row.get("suggested_target") or "").strip() or None})
    root = ws.workspace(project)
    recent = _merge(root / RECENT, kept["random"])
    if kept["ranked"]:
        _merge(root / RANKED, kept["ranked"])
    unmarked = sum(1 for r in recent if r.get("origin") == "served" and "sample" not in r)
    return ServedImport(len(kept["random"]), len(kept["ranked"]), skipped, root / RECENT, root / RANKED, unmarked)

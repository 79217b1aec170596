"""Benchmark: does a new version of the BBC News data move rows of the frozen test split?

    PYTHONPATH=src python bench/frozen_split_bbc.py [--out /tmp/frozen-bbc]

Four new versions, each prepared after the version before it: (A) 20 articles per label held out,
then appended at the end (ids kept); (B) without the id field, one article inserted at the top;
(C) without the id field, 20 per label appended; (D) 20 per label appended under new ids that sort
before the others ("added-…"). For each it prints the share of the earlier test rows still in test
and how many earlier train and val rows are now test rows (rows compared by their text). Run it with
another checkout's src on PYTHONPATH to measure that code the same way.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path

from tunewise.config import load_config
from tunewise.data.prepare import prepare_project, read_part
from tunewise.data.split import records_hash
from tunewise.examples import bbc_rows, init_example


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/frozen-bbc"))
    out = ap.parse_args().out
    shutil.rmtree(out, ignore_errors=True)
    init_example(out, "bbc-news")
    rows = bbc_rows()
    by_label = defaultdict(list)
    for r in rows:
        by_label[r["label"]].append(r)
    held = {r["id"] for group in by_label.values() for r in group[-20:]}
    base = [r for r in rows if r["id"] not in held]
    added = [r for r in rows if r["id"] in held]

    parts, folder = _prepare(out, rows)
    test = read_part(folder, "test")
    print(f"full data, first split: train {len(parts['train'])}, val {len(parts['val'])}, test {len(test)}, "
          f"test sha256 {records_hash(test)[:12]}")
    cases = {
        "A append 20/label (ids)": (base, base + added, True),
        "B insert 1 row at the top (no ids)": (rows[1:], rows, False),
        "C append 20/label (no ids)": (base, base + added, False),
        "D append 20/label, new ids sort first": (base, base + [{**r, "id": f"added-{r['id']}"} for r in added], True),
    }
    for name, (before_rows, after_rows, ids) in cases.items():
        shutil.rmtree(out / ".tunewise", ignore_errors=True)
        before, _ = _prepare(out, before_rows, ids)
        after, folder = _prepare(out, after_rows, ids)
        frozen = json.loads((folder / "manifest.json").read_text()).get("frozen_split", {}).get("parts", {})
        print(f"{name}: earlier test {len(before['test'])}, now {len(after['test'])}; "
              f"earlier test rows still in test {len(before['test'] & after['test']) / len(before['test']):.1%}; "
              f"earlier train rows now in test {len(before['train'] & after['test'])}, "
              f"earlier val rows now in test {len(before['val'] & after['test'])}"
              + (f"; manifest: {frozen}" if frozen else ""))


def _prepare(project: Path, rows: list[dict], ids: bool = True) -> tuple[dict[str, set[str]], Path]:
    lines = [json.dumps(r if ids else {k: v for k, v in r.items() if k != "id"}) for r in rows]
    (project / "data" / "articles.jsonl").write_text("\n".join(lines) + "\n")
    folder, _ = prepare_project(load_config(project), project)
    return {n: {r.input for r in read_part(folder, n)} for n in ("train", "val", "test")}, folder


if __name__ == "__main__":
    main()

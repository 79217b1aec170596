"""Benchmark: rank a generation ladder's rungs on content (tunewise) and on ROUGE-L (the peer,
Google's rouge-score package, the metric generation reports usually rank on), from the same run.

    PYTHONPATH=src python bench/content_vs_rouge.py examples/company-glossary --workdir /tmp/gloss [--rungs ...]
    PYTHONPATH=src python bench/content_vs_rouge.py --ladder PATH/ladder.json   # re-print a finished ladder

The example is copied to --workdir and run through the real ladder (every rung on one frozen test
split); the script prints every metric with its 95% CI, the order each metric puts the rungs in,
the paired content tests, and the recommendation with the content check's notes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

METRICS = ["content_f1", "content_precision", "content_recall", "groundedness", "semantic_similarity",
           "rouge_l", "chrf", "exact_match", "format_compliance", "retrieval_recall_at_k"]


def run(example: Path, workdir: Path, rungs: list[str] | None) -> Path:
    from tunewise.config import load_config
    from tunewise.ladder import run_ladder

    project = workdir / example.name
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(example, project, ignore=shutil.ignore_patterns(".tunewise", "__pycache__"))
    t0 = time.perf_counter()
    report = run_ladder(load_config(project), project, rungs)
    print(f"ladder wall time {time.perf_counter() - t0:.0f} s; report {report}")
    return report / "ladder.json"


def show(path: Path) -> None:
    ladder = json.loads(path.read_text())
    rungs = ladder["rungs"]
    cols = [m for m in METRICS if any(m in r["metrics"] for r in rungs)]
    print(f"\n{ladder['project']}: {ladder['n_test']} test items, ranked on {ladder['primary']}\n")
    print("| rung | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for r in rungs:
        m = r["metrics"]
        cell = lambda k: "–" if m.get(k) is None else f"{100 * m[k]:.1f} ({100 * m[k + '_ci'][0]:.1f}–{100 * m[k + '_ci'][1]:.1f})"  # noqa: E731
        print(f"| {r['name']} | " + " | ".join(cell(k) for k in cols) + " |")
    print()
    for k in ("content_f1", "groundedness", "semantic_similarity", "rouge_l"):
        if all(r["metrics"].get(k) is not None for r in rungs):
            order = sorted(rungs, key=lambda r: -r["metrics"][k])
            print(f"order by {k}: " + " > ".join(f"{r['name']} {100 * r['metrics'][k]:.1f}" for r in order))
    rec = ladder["recommendation"]
    print(f"\nrecommendation: {rec['rung']} — {rec['reason']}")
    for line in ([rec["content_check"]] if rec.get("content_check") else []) + rec.get("notes", []):
        print(f"  - {line}")
    if rec.get("overruled"):
        print(f"  - overruled: {rec['overruled']['rung']} ({rec['overruled']['reason']})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("example", nargs="?", type=Path)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/content-bench"))
    ap.add_argument("--rungs", default=None, help="comma-separated rungs (default: the example's)")
    ap.add_argument("--ladder", type=Path, help="print a finished ladder.json instead of running one")
    args = ap.parse_args()
    if args.ladder is None and args.example is None:
        ap.error("give an example folder or --ladder")
    path = args.ladder or run(args.example, args.workdir, args.rungs.split(",") if args.rungs else None)
    show(path)


if __name__ == "__main__":
    main()

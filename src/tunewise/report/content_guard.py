"""A recommendation may not prefer a rung that says less of the right thing because it looks right.

`recommend` ranks rungs on one metric (`eval.primary`). When that is a surface metric (ROUGE-L,
chrF, ...), a rung that copies the answer template and invents the facts can win it. This guard
takes every rung's per-item content scores (content F1 and, with documents, groundedness), runs
paired tests on the same test items, and overrules a recommendation when another rung is
significantly better on content or groundedness. It also writes one sentence for every pair of
rungs that a surface metric and a content metric rank in opposite, significant directions.
"""

from __future__ import annotations

import numpy as np

ALPHA = 0.05
CONTENT = ("content_f1", "groundedness")
SURFACE = ("rouge_l", "chrf")


def paired(a: list[float], b: list[float], resamples: int, seed: int) -> dict | None:
    """Mean difference a - b over items where both apply, its 95% paired-bootstrap CI and p-value."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    if len(d) == 0:
        return None
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (resamples, len(d)))].mean(1)
    p = min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean()))
    return {"diff": float(d.mean()), "diff_ci": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))],
            "p_value": float(p), "n": len(d)}


def _p(value: float) -> str:
    return "p<0.001" if value < 0.001 else f"p={value:.2g}"


def _gap(t: dict) -> str:
    lo, hi = t["diff_ci"]
    return f"{100 * t['diff']:+.1f} pts, 95% CI {100 * lo:+.1f} to {100 * hi:+.1f}, {_p(t['p_value'])}"


def _better(t: dict | None) -> bool:
    return t is not None and t["p_value"] < ALPHA and t["diff"] > 0


def guard_recommendation(rec: dict, results: list[dict], resamples: int, seed: int) -> dict:
    """Check ``rec`` (from `recommend`) against content metrics; pops each rung's ``metric_items``."""
    items = {r["name"]: r.pop("metric_items", None) or {} for r in results}
    names = [r["name"] for r in results]
    guards = [m for m in CONTENT if names and all(m in items[n] for n in names)]
    chosen = rec.get("rung")
    if chosen is None or len(names) < 2 or not guards:
        return rec
    tests = {(a, b, m): paired(items[a][m], items[b][m], resamples, seed)
             for a in names for b in names if a != b for m in (*guards, *SURFACE) if m in items[a] and m in items[b]}
    beaten = {n: [(o, m) for o in names if o != n for m in guards if _better(tests.get((o, n, m)))] for n in names}
    notes = _disagreements(names, tests, guards) + _surface_leader(rec, results)
    out = {**rec, "content_checked": guards, "notes": notes}
    if not beaten[chosen]:
        out["content_check"] = (f"no rung is significantly better than {chosen} on {' or '.join(guards)} "
                                f"(paired bootstrap, p<{ALPHA})")
        return out
    mean = lambda n, m: float(np.nanmean(items[n][m])) if not np.isnan(items[n][m]).all() else -1.0
    unbeaten = [n for n in names if not beaten[n]]
    # Among rungs no other rung beats on content, the one with the most content; with a cycle
    # (A beats B on one content metric, B beats A on the other), the one with the most content.
    pick = max(unbeaten or names, key=lambda n: tuple(mean(n, m) for m in guards))
    other, metric = max(beaten[chosen], key=lambda om: tests[(om[0], chosen, om[1])]["diff"])
    why = (f"{chosen} was first on {rec.get('metric')}, but {other} is significantly better on {metric} "
           f"({_gap(tests[(other, chosen, metric)])}).")
    reason = (f"{pick}: no rung is significantly better on {' or '.join(guards)}. {why} "
              f"A rung that says less of the reference's content is not recommended for how its answers look.")
    return {**out, "rung": pick, "reason": reason, "overruled": {"rung": chosen, "reason": rec.get("reason")}}


def _disagreements(names: list[str], tests: dict, guards: list[str]) -> list[str]:
    """One sentence per pair a surface metric and a content metric rank in opposite, significant directions."""
    notes = []
    for a in names:
        for b in names:
            for s in SURFACE:
                for m in guards:
                    if _better(tests.get((a, b, s))) and _better(tests.get((b, a, m))):
                        notes.append(f"{s} ranks {a} above {b} ({_gap(tests[(a, b, s)])}) but {m} ranks {b} "
                                     f"above {a} ({_gap(tests[(b, a, m)])}): the surface metric disagrees with content.")
    return notes


def _surface_leader(rec: dict, results: list[dict]) -> list[str]:
    """Say so when ROUGE-L alone would put another rung first than the deciding metric does."""
    metric = rec.get("metric")
    scored = [r for r in results if r["metrics"].get("rouge_l") is not None and r["metrics"].get(metric) is not None]
    if metric in SURFACE or len(scored) < 2:
        return []
    by_surface = max(scored, key=lambda r: r["metrics"]["rouge_l"])
    by_metric = max(scored, key=lambda r: r["metrics"][metric])
    if by_surface is by_metric:
        return []
    return [f"rouge_l alone would rank {by_surface['name']} first ({100 * by_surface['metrics']['rouge_l']:.1f} vs "
            f"{by_metric['name']} {100 * by_metric['metrics']['rouge_l']:.1f}); {metric} ranks {by_metric['name']} "
            f"first ({100 * by_metric['metrics'][metric]:.1f} vs {100 * by_surface['metrics'][metric]:.1f})."]

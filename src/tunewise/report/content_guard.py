"""Notes beside the recommendation where a surface metric and a content metric disagree.

The guard itself (a rung better on content by more than its margin overrules the choice) is part of
the one decision procedure in `tunewise.report.decide`. This module only writes sentences: one for
every pair of rungs that a surface metric (ROUGE-L, chrF) and a content metric rank in opposite,
significant directions, and one when ROUGE-L alone would put another rung first.
"""

from __future__ import annotations

from tunewise.evaluate.stats import paired_summary

ALPHA = 0.05
CONTENT = ("content_f1", "groundedness")
SURFACE = ("rouge_l", "chrf")


def _p(value: float) -> str:
    return "p<0.001" if value < 0.001 else f"p={value:.2g}"


def _gap(t: dict) -> str:
    lo, hi = t["diff_ci"]
    return f"{100 * t['diff']:+.1f} pts, 95% CI {100 * lo:+.1f} to {100 * hi:+.1f}, {_p(t['p_value'])}"


def _better(t: dict | None) -> bool:
    return t is not None and t["n"] > 1 and t["p_value"] < ALPHA and t["diff"] > 0


def content_notes(rec: dict, results: list[dict], items: dict[str, dict], names: list[str]) -> list[str]:
    """``items``: rung name -> metric -> per-item scores; ``names``: the rungs with a measured primary."""
    metrics = [m for m in (*CONTENT, *SURFACE) if all(m in items[n] for n in names)]
    tests = {(a, b, m): paired_summary(items[a][m], items[b][m]) for a in names for b in names if a != b
             for m in metrics}
    return _disagreements(names, tests, [m for m in CONTENT if m in metrics]) + _surface_leader(rec, results)


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

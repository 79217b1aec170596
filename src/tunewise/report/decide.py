"""The recommendation: the cheapest rung whose quality is not significantly below the best."""

from __future__ import annotations

# Cheap → expensive. A rung's place here is its cost rank when two rungs tie on quality.
COST_ORDER = ["zero-shot", "few-shot", "rag", "embedding-classifier", "encoder-finetune", "lora", "full"]
FINE_TUNED = {"lora", "full"}
ALPHA = 0.05


def _rank(name: str) -> int:
    return COST_ORDER.index(name) if name in COST_ORDER else len(COST_ORDER)


def recommend(rungs: list[dict]) -> dict:
    """``rungs``: dicts with name, metrics.accuracy (+ _ci) and paired_vs_best.p_value."""
    if not rungs:
        return {"rung": None, "reason": "no rung was run"}
    best = max(rungs, key=lambda r: r["metrics"]["accuracy"])
    tied = [r for r in rungs if r is best or r["paired_vs_best"]["p_value"] >= ALPHA]
    choice = min(tied, key=lambda r: _rank(r["name"]))
    acc = lambda r: 100 * r["metrics"]["accuracy"]  # noqa: E731
    others = [r for r in rungs if r is not best]
    if choice is best and not others:
        return {"rung": best["name"], "reason": f"{best['name']} is the only rung run ({acc(best):.1f}% accuracy)."}
    if choice is best and len(tied) == 1:
        runner = max(others, key=lambda r: r["metrics"]["accuracy"])
        gap = best["paired_vs_best_of_rest"]
        lo, hi = gap["diff_ci"]
        verb = "fine-tune" if best["name"] in FINE_TUNED else "no fine-tuning needed"
        return {
            "rung": best["name"],
            "reason": (
                f"{best['name']} beats the next best rung ({runner['name']}) by "
                f"{acc(best) - acc(runner):+.1f} points (95% CI {100 * lo:+.1f} to {100 * hi:+.1f}, "
                f"McNemar p={gap['p_value']:.2g}); {verb}."
            ),
        }
    if choice is best:
        near = ", ".join(f"{r['name']} (p={r['paired_vs_best']['p_value']:.2g})" for r in tied if r is not best)
        return {
            "rung": best["name"],
            "reason": (
                f"{best['name']} scores highest ({acc(best):.1f}%) and is the cheapest of the rungs within "
                f"noise of it: {near}; the costlier rungs buy no significant gain."
            ),
        }
    verdict = "don't fine-tune" if best["name"] in FINE_TUNED and choice["name"] not in FINE_TUNED else "use it"
    return {
        "rung": choice["name"],
        "reason": (
            f"{choice['name']} ({acc(choice):.1f}%) is within noise of the best rung, {best['name']} "
            f"({acc(best):.1f}%; McNemar p={choice['paired_vs_best']['p_value']:.2g}), and costs less; "
            f"{verdict}."
        ),
    }

"""The recommendation: the cheapest rung whose quality is not significantly below the best.

"Cheapest" is measured, not assumed: each rung's cost for its first month, training plus
``cost.requests_per_month`` requests at the measured latency and prompt length and the configured
prices (``tunewise.evaluate.cost``). On a CPU an embedding classifier is far cheaper per request
than prompting a 135M LLM, and the fixed ordering below would hide that. The fixed order only
breaks ties (equal measured cost, e.g. all prices 0).
"""

from __future__ import annotations

COST_ORDER = [
    "zero-shot", "few-shot", "rag", "embedding-classifier", "encoder-finetune",
    "prompt-tuning", "prefix", "ia3", "lora", "dora", "qlora", "full", "dpo",
]
FINE_TUNED = {"prompt-tuning", "prefix", "ia3", "lora", "dora", "qlora", "full", "dpo"}
PROMPTING = {"zero-shot", "few-shot", "rag"}
ALPHA = 0.05


def _rank(name: str) -> int:
    return COST_ORDER.index(name) if name in COST_ORDER else len(COST_ORDER)


def _value(r: dict) -> float:
    return r["metrics"][r.get("primary", "accuracy")]


def cost_key(r: dict) -> tuple[float, int]:
    return (r.get("cost", {}).get("usd_first_month", 0.0), _rank(r["name"]))


def _p(value: float) -> str:
    # A bootstrap p of 0 only says no resample crossed zero: below the resolution, not zero.
    return "p<0.001" if value < 0.001 else f"p={value:.2g}"


def _test(r: dict) -> str:
    p = r["paired_vs_best"]
    return f"{'McNemar' if p.get('test', 'mcnemar') == 'mcnemar' else 'paired bootstrap'} {_p(p['p_value'])}"


def _ratio(a: dict, b: dict) -> str:
    """'at a tenth of the cost' style wording of a's cost relative to b's."""
    ca, cb = cost_key(a)[0], cost_key(b)[0]
    if ca <= 0 or cb <= 0:
        return "at lower cost"
    return f"at {ca / cb:.0%} of the cost" if ca < cb else "at no saving"


def recommend(rungs: list[dict]) -> dict:
    """``rungs``: dicts with name, primary, metrics, cost.usd_first_month and paired_vs_best."""
    if not rungs:
        return {"rung": None, "reason": "no rung was run"}
    metric = rungs[0].get("primary", "accuracy")
    best = max(rungs, key=_value)
    tied = [r for r in rungs if r is best or r["paired_vs_best"]["p_value"] >= ALPHA]
    choice = min(tied, key=cost_key)
    pts = lambda r: 100 * _value(r)
    others = [r for r in rungs if r is not best]
    base = {"rung": choice["name"], "best": best["name"], "metric": metric, "alpha": ALPHA,
            "within_noise_of_best": [r["name"] for r in tied]}
    if not others:
        return {**base, "reason": f"{best['name']} is the only rung run ({pts(best):.1f}% {metric})."}
    if choice is best and len(tied) == 1:
        gap = best["paired_vs_best_of_rest"]
        runner = next(r for r in others if r["name"] == gap["vs"])
        lo, hi = gap["diff_ci"]
        if best["name"] in FINE_TUNED:
            verb = "fine-tune"
        elif best["name"] in PROMPTING:
            verb = "no fine-tuning needed"
        else:
            verb = "use it; no LLM fine-tuning needed"
        test = "McNemar" if gap.get("test", "mcnemar") == "mcnemar" else "paired bootstrap"
        return {**base, "reason": (
            f"{best['name']} beats the next best rung ({runner['name']}) by {pts(best) - pts(runner):+.1f} points "
            f"of {metric} (95% CI {100 * lo:+.1f} to {100 * hi:+.1f}, {test} {_p(gap['p_value'])}); {verb}."
        )}
    if choice is best:
        near = ", ".join(f"{r['name']} ({_test(r)})" for r in tied if r is not best)
        return {**base, "reason": (
            f"{best['name']} scores highest ({pts(best):.1f}% {metric}) and is also the cheapest of the rungs "
            f"within noise of it: {near}."
        )}
    if best["name"] in FINE_TUNED and choice["name"] not in FINE_TUNED:
        verdict = "don't fine-tune"
    else:
        verdict = f"use {choice['name']}"
    return {**base, "reason": (
        f"{choice['name']} ({pts(choice):.1f}% {metric}) is within noise of the best rung, {best['name']} "
        f"({pts(best):.1f}%; {_test(choice)}), {_ratio(choice, best)}; {verdict}."
    )}

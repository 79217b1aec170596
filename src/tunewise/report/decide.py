"""The recommendation: the cheapest rung shown to be no worse than the best by more than a margin.

"No worse" is a non-inferiority test, not "not significantly worse": a cheaper rung is recommended
only when the lower bound of the 95% CI of its paired difference to the best rung (cheaper minus
best, on the same test items) is above -``eval.margin`` (default 0.02: 2 points of the primary
metric). "Not significantly worse" (p >= 0.05) rewards small test sets: with 80 items almost every
rung ties with the best, and the cheapest won by default. When a cheaper rung's interval straddles
-margin, the test set is too small to decide; the recommendation then keeps the rung that is shown
to be good enough, says so, and estimates how many test rows would settle it.

"Cheapest" is computed, not assumed: each rung's cost for its first month, training plus
``cost.requests_per_month`` requests priced from their FLOPs and prompt length at the configured
prices (``tunewise.evaluate.cost``). On a CPU an embedding classifier is far cheaper per request
than prompting a 135M LLM, and the fixed ordering below would hide that. The fixed order only
breaks ties (equal cost, e.g. all prices 0).
"""

from __future__ import annotations

COST_ORDER = [
    "zero-shot", "few-shot", "rag", "embedding-classifier", "encoder-finetune",
    "prompt-tuning", "prefix", "ia3", "lora", "dora", "qlora", "full", "dpo",
]
FINE_TUNED = {"prompt-tuning", "prefix", "ia3", "lora", "dora", "qlora", "full", "dpo"}
PROMPTING = {"zero-shot", "few-shot", "rag"}
DEFAULT_MARGIN = 0.02


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


def status(r: dict, best: dict, margin: float) -> str:
    """'best', 'non-inferior' (CI lower bound above -margin), 'worse' (CI upper bound at or below
    -margin) or 'undecided' (the CI straddles -margin)."""
    if r is best:
        return "best"
    lo, hi = r["paired_vs_best"]["diff_ci"]
    if lo > -margin:
        return "non-inferior"
    return "worse" if hi <= -margin else "undecided"


def _gap(r: dict) -> str:
    p = r["paired_vs_best"]
    lo, hi = p["diff_ci"]
    return f"{100 * p['diff']:+.1f} points (95% CI {100 * lo:+.1f} to {100 * hi:+.1f}, {_test(r)})"


def _rows_needed(r: dict, margin: float) -> int | None:
    from tunewise.evaluate.stats import noninferiority_rows

    p = r["paired_vs_best"]
    return noninferiority_rows(p["diff"], p.get("diff_sd", 0.0), margin)


def _too_small(open_: list[dict], best: dict, choice: dict, margin: float) -> str:
    m = f"{100 * margin:g}"
    n = open_[0]["paired_vs_best"].get("n")
    size = f" ({n:,} rows)" if n else ""
    parts = []
    for r in open_:
        rows = _rows_needed(r, margin)
        need = (f"about {rows:,} test rows would settle it" if rows is not None
                else "no test set size would settle it at the observed difference")
        parts.append(f"whether {r['name']} ({_ratio(r, choice)}) is within {m} points of {best['name']}: its "
                     f"paired difference is {_gap(r)}; {need}")
    return f"The test set{size} is too small to decide " + "; nor ".join(parts) + "."


def recommend(rungs: list[dict], margin: float = DEFAULT_MARGIN) -> dict:
    """``rungs``: dicts with name, primary, metrics, cost.usd_first_month and paired_vs_best (diff, diff_ci,
    diff_sd, n); ``margin``: the non-inferiority margin in units of the primary metric."""
    if not rungs:
        return {"rung": None, "reason": "no rung was run"}
    metric = rungs[0].get("primary", "accuracy")
    best = max(rungs, key=_value)
    states = {r["name"]: status(r, best, margin) for r in rungs}
    good = [r for r in rungs if states[r["name"]] in ("best", "non-inferior")]
    choice = min(good, key=cost_key)
    open_ = sorted((r for r in rungs if states[r["name"]] == "undecided" and cost_key(r) < cost_key(choice)),
                   key=cost_key)
    pts = lambda r: 100 * _value(r)
    m = f"{100 * margin:g}"
    base = {"rung": choice["name"], "best": best["name"], "metric": metric, "margin": margin, "status": states,
            "non_inferior": [r["name"] for r in good], "decided": not open_,
            "undecided": [{"rung": r["name"], "rows_needed": _rows_needed(r, margin)} for r in open_]}
    if len(rungs) == 1:
        return {**base, "reason": f"{best['name']} is the only rung run ({pts(best):.1f}% {metric})."}
    if choice is best:
        if best["name"] in FINE_TUNED:
            verb = "fine-tune"
        elif best["name"] in PROMPTING:
            verb = "no fine-tuning needed"
        else:
            verb = "use it; no LLM fine-tuning needed"
        runner = max((r for r in rungs if r is not best), key=_value)
        if all(cost_key(best) <= cost_key(r) for r in rungs):
            reason = (f"{best['name']} scores highest ({pts(best):.1f}% {metric}) and is also the cheapest rung "
                      f"(next best {runner['name']}: {_gap(runner)}); {verb}.")
        else:
            reason = (f"{best['name']} scores highest ({pts(best):.1f}% {metric}); no cheaper rung is shown to be "
                      f"within {m} points of it (next best {runner['name']}: {_gap(runner)}); {verb}.")
    else:
        verdict = ("don't fine-tune" if best["name"] in FINE_TUNED and choice["name"] not in FINE_TUNED
                   else f"use {choice['name']}")
        reason = (f"{choice['name']} ({pts(choice):.1f}% {metric}) is within {m} points of the best rung, "
                  f"{best['name']} ({pts(best):.1f}%): paired difference {_gap(choice)}, lower bound above "
                  f"-{m}; {_ratio(choice, best)}; {verdict}.")
    if open_:
        reason += " " + _too_small(open_, best, choice, margin)
    return {**base, "reason": reason}

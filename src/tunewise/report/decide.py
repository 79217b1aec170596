"""The recommendation: the one decision procedure (docs/decision.md has it in full, with its error rates).

1. A rung whose primary metric could not be computed is "not measured" and never recommended.
2. Each other rung's paired difference to the best (same test items) is tested for non-inferiority at
   ``eval.margin``: H0 "worse by margin or more", one-sided alpha 0.025 (the tail of the 95% interval
   the report shows; Newcombe's interval for right/wrong items, paired t otherwise). The p-values of all
   rungs are corrected together (Holm, statsmodels), so adding rungs does not add false recommendations.
3. The cheapest of the best and the rungs shown non-inferior is chosen. When every comparison is open
   and the test split is smaller than a power calculation says it must be, the recommendation is
   withheld and the rows needed are named.
4. Guard metrics (``eval.guard_margins``: content F1, groundedness) overrule the choice only when
   another rung is better on one by more than that metric's own margin, Holm-corrected over rungs and
   guard metrics.

Direction: a metric where lower is better (perplexity, ``evaluate.score.LOWER_IS_BETTER``) has its
item scores turned round here, so every step above reads "higher is better"; for perplexity the items
are each document's share of the mean NLL per token, so the margin is in nats per token (0.02 ≈ 2% of
perplexity) and differences are shown as the ratio of perplexities. For a plain-text corpus
(task.type text) the reason says whether domain adaptation paid, from these same verdicts.

"Cheapest" is computed, not assumed: each rung's cost for its first month, training plus
``cost.requests_per_month`` requests priced from their FLOPs and prompt length at the configured
prices (``tunewise.evaluate.cost``). On a CPU an embedding classifier is far cheaper per request
than prompting a 135M LLM, and a fixed ordering would hide that. The table of rungs' order
(``tunewise.rungspec``, cheapest first) only breaks ties (equal cost, e.g. all prices 0).
"""

from __future__ import annotations

import math

import numpy as np

from tunewise.evaluate.score import LOWER_IS_BETTER, orientation
from tunewise.evaluate.stats import holm, p_above, paired_stats, paired_summary, rows_for_noninferiority, wilson_ci
from tunewise.rungspec import RUNGS, TEXT

# The fixed order that breaks cost ties is the table of rungs' (cheapest first).
FINE_TUNED = {n for n, s in RUNGS.items() if s.method is not None}  # the LLM fine-tuning rungs
PROMPTING = {n for n, s in RUNGS.items() if s.prompting}
DEFAULT_MARGIN = 0.02
DEFAULT_GUARD_MARGINS = {"content_f1": 0.02, "groundedness": 0.02}
ALPHA = 0.025  # one-sided: the lower tail of every 95% interval in the report


def _rank(name: str) -> int:
    return RUNGS[name].cost_rank if name in RUNGS else len(RUNGS)


def measured(x) -> bool:
    """The one NaN policy: a metric that is None or NaN was not measured."""
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _value(r: dict) -> float:
    return r["metrics"].get(r.get("primary", "accuracy"))


def _better(r: dict) -> float:
    """The primary metric turned so that higher is better: what 'best' means."""
    return orientation(r.get("primary", "accuracy")) * _value(r)


def level(metric: str, value: float) -> str:
    """A value of the metric in words: '82.0% accuracy', 'perplexity 23.41'."""
    return f"{metric} {value:.4g}" if metric in LOWER_IS_BETTER else f"{100 * value:.1f}% {metric}"


def margin_words(metric: str, margin: float) -> str:
    """The non-inferiority margin in the metric's words."""
    if metric in LOWER_IS_BETTER:  # the margin is in nats per token: a ratio of perplexities
        return f"{100 * math.expm1(margin):.3g}% of {metric} (eval.margin {margin:g} nats per token)"
    return f"{100 * margin:g} points"


def diff_words(metric: str, diff: float, lo: float, hi: float) -> str:
    """A paired difference to the best (turned so that higher is better) and its interval."""
    if metric in LOWER_IS_BETTER:
        return f"{metric} ×{math.exp(-diff):.3f} the best's (95% CI ×{math.exp(-hi):.3f} to ×{math.exp(-lo):.3f}"
    return f"{100 * diff:+.1f} points (95% CI {100 * lo:+.1f} to {100 * hi:+.1f}"


def cost_key(r: dict) -> tuple[float, int]:
    return (r.get("cost", {}).get("usd_first_month", 0.0), _rank(r["name"]))


def _p(value: float) -> str:
    return "p<0.001" if value < 0.001 else f"p={value:.2g}"


def _test(r: dict) -> str:
    p = r["paired_vs_best"]
    name = {"mcnemar": "McNemar", "paired-t": "paired t"}.get(p.get("test", "mcnemar"), "paired bootstrap")
    return f"{name} {_p(p['p_value'])}"


def _ratio(a: dict, b: dict) -> str:
    """'at a tenth of the cost' style wording of a's cost relative to b's."""
    ca, cb = cost_key(a)[0], cost_key(b)[0]
    if ca <= 0 or cb <= 0:
        return "at lower cost"
    return f"at {ca / cb:.0%} of the cost" if ca < cb else "at no saving"




def compare(results: list[dict]) -> None:
    """Add each rung's paired comparison to the best rung on the same test items (and the best's to the
    runner-up); pops ``item_scores``. A rung without its primary metric gets ``not_measured``."""
    sign = orientation(results[0].get("primary", "accuracy")) if results else 1
    items = {r["name"]: sign * np.asarray(r.pop("item_scores", []), dtype=float) for r in results}
    scored = [r for r in results if measured(_value(r))]
    if not scored:
        for r in results:
            r["paired_vs_best"] = {"vs": None, "not_measured": True}
        return
    best = max(scored, key=_better)

    def paired(x: dict, y: dict) -> dict:
        return {"vs": y["name"], **paired_summary(items[x["name"]], items[y["name"]])}

    for r in results:
        if r is best:
            r["paired_vs_best"] = {"vs": best["name"], "p_value": 1.0, "diff": 0.0}
        else:
            r["paired_vs_best"] = paired(r, best) if measured(_value(r)) else {"vs": best["name"], "not_measured": True}
        if r.get("draws"):
            add_draws(r, items[best["name"]] if r is not best else None)
    rest = [r for r in scored if r is not best]
    if rest:
        best["paired_vs_best_of_rest"] = paired(best, max(rest, key=_better))


def add_draws(r: dict, best_items: np.ndarray | None) -> None:
    """A rung measured on several random draws (few-shot example sets): ``r["draws"]`` holds each draw's
    seed, value and item_scores (popped here). Adds each draw's paired comparison to the best and
    ``draw_summary``: mean, SD and range over draws, and a 95% t interval of the mean over draws, which
    holds the between-draw variance as well as the test rows' (each draw's value carries both)."""
    from scipy import stats as sps

    values = np.array([d["value"] for d in r["draws"]], dtype=float)
    k = len(values)
    sd = float(values.std(ddof=1)) if k > 1 else float("nan")
    half = float(sps.t.ppf(0.975, k - 1) * sd / math.sqrt(k)) if k > 1 else float("nan")
    r["draw_summary"] = {"k": k, "mean": float(values.mean()), "sd": sd, "min": float(values.min()),
                         "max": float(values.max()), "ci": [float(values.mean() - half), float(values.mean() + half)]}
    for d in r["draws"]:
        items = np.asarray(d.pop("item_scores", []), dtype=float)
        if best_items is not None and len(items):
            d["paired_vs_best"] = paired_summary(items, best_items)


def _draw_p(r: dict, margin: float) -> tuple[float, list[float]]:
    """The non-inferiority p of a rung: on one draw its own; over several draws the largest (an
    intersection-union test: "as good" must hold on every draw, so no correction is owed for them)."""
    draws = [d["paired_vs_best"] for d in r.get("draws", []) if "paired_vs_best" in d]
    own = p_above(r["paired_vs_best"]["stats"], -margin)
    each = [p_above(d["stats"], -margin) for d in draws]
    return (max(each) if each else own), each


def statuses(scored: list[dict], best: dict, margin: float) -> dict[str, str]:
    """'best'; 'non-inferior' (Holm-corrected one-sided test against -margin rejects 'worse by the margin',
    on every draw for a drawn rung); 'flips' (non-inferior on some draws, not on others); 'worse' (the
    95% interval lies at or below -margin); else 'undecided'."""
    others = [r for r in scored if r is not best]
    tests = [_draw_p(r, margin) for r in others]
    p = [t[0] for t in tests]
    for r, pv in zip(others, p, strict=True):
        r["paired_vs_best"]["p_noninferior"] = pv
    out = {best["name"]: "best"}
    for r, ok, (_, each) in zip(others, holm(p, ALPHA), tests, strict=True):
        hi = r["paired_vs_best"]["diff_ci"][1]
        flips = each and not ok and any(x < ALPHA for x in each)
        out[r["name"]] = ("non-inferior" if ok else "flips" if flips else "worse" if hi <= -margin
                          else "undecided")
    return out


def _flip_text(r: dict, margin: float) -> str:
    each = _draw_p(r, margin)[1]
    passed = sum(x < ALPHA for x in each)
    d = r["draw_summary"]
    return (f"{r['name']}'s verdict flips with the random draw: within {100 * margin:g} points of the best on "
            f"{passed} of {len(each)} example sets, not on the others ({100 * d['min']:.1f}–{100 * d['max']:.1f}% "
            f"across sets, mean {100 * d['mean']:.1f}%); \"as good\" is withheld for it.")


def _gap(r: dict) -> str:
    p = r["paired_vs_best"]
    return f"{diff_words(r.get('primary', 'accuracy'), p['diff'], *p['diff_ci'])}, {_test(r)})"


def _rows_needed(r: dict, margin: float) -> int | None:
    from tunewise.evaluate.stats import noninferiority_rows

    p = r["paired_vs_best"]
    return noninferiority_rows(p["diff"], p.get("diff_sd", 0.0), margin)


def rows_to_tell_apart(scored: list[dict], best: dict, margin: float) -> int | None:
    """Power calculation: test rows needed to show, with 80% power at one-sided alpha 0.025, that a rung
    as good as the best is within the margin. The per-item SD is the largest the data cannot rule out:
    on right/wrong items the square root of the Wilson upper bound of the discordance rate (so one row
    cannot claim it never disagrees), else the largest observed SD. None: no SD could be estimated."""
    sds = []
    for r in scored:
        if r is best:
            continue
        st = r["paired_vs_best"]["stats"]
        if "table" in st:
            sds.append(math.sqrt(wilson_ci(st["table"][1] + st["table"][2], sum(st["table"]))[1]))
        elif st["n"] > 1:
            sds.append(st["sd"])
    return rows_for_noninferiority(max(sds), margin) if sds and max(sds) > 0 else None


def _too_small(open_: list[dict], best: dict, choice: dict, margin: float) -> str:
    m = margin_words(best.get("primary", "accuracy"), margin)
    n = open_[0]["paired_vs_best"].get("n")
    size = f" ({n:,} rows)" if n else ""
    parts = []
    for r in open_:
        rows = _rows_needed(r, margin)
        need = (f"about {rows:,} test rows would settle it" if rows is not None
                else "no test set size would settle it at the observed difference")
        parts.append(f"whether {r['name']} ({_ratio(r, choice)}) is within {m} of {best['name']}: its "
                     f"paired difference is {_gap(r)}; {need}")
    return f"The test set{size} is too small to decide " + "; nor ".join(parts) + "."


def _withheld(base: dict, scored: list[dict], best: dict, margin: float, n: int, rows: int | None) -> dict:
    need = f"about {rows:,}" if rows else f"more than {n:,}"
    reason = (f"Withheld: the test split ({n:,} rows) is too small to tell the rungs apart at a margin of "
              f"{margin_words(best.get('primary', 'accuracy'), margin)}: no comparison to {best['name']} is decided, and showing that a rung as "
              f"good as the best is within the margin needs {need} test rows (80% power, one-sided alpha "
              f"{ALPHA}). {best['name']} scored {'lowest' if best.get('primary') in LOWER_IS_BETTER else 'highest'}; that alone "
              "is not evidence.")
    return {**base, "rung": None, "withheld": True, "decided": False, "provisional": best["name"],
            "rows_needed": rows, "reason": reason}


def _best_reason(best: dict, rungs: list[dict], m: str, metric: str, verb: str | None = None) -> str:
    """``verb``: what to do, when the caller words it (a text corpus says whether adaptation paid)."""
    top = (f"has the lowest {metric} ({_value(best):.4g})" if metric in LOWER_IS_BETTER
           else f"scores highest ({level(metric, _value(best))})")
    if verb is None:
        verb = ("fine-tune" if best["name"] in FINE_TUNED else "no fine-tuning needed" if best["name"] in PROMPTING
                else "use it; no LLM fine-tuning needed")
    runner = max((r for r in rungs if r is not best), key=_better)
    if all(cost_key(best) <= cost_key(r) for r in rungs):
        return (f"{best['name']} {top} and is also the cheapest rung "
                f"(next best {runner['name']}: {_gap(runner)}); {verb}.")
    return (f"{best['name']} {top}; no cheaper rung is shown to be "
            f"within {m} of it (next best {runner['name']}: {_gap(runner)}); {verb}.")


def adaptation(states: dict[str, str], choice: str, best: str) -> str:
    """A plain-text corpus: whether adapting the base model to it (continued pre-training) paid, read
    from the decision's own verdicts on the base model (the prompting rung: zero-shot)."""
    base = [n for n in states if n in PROMPTING]
    if not base or not any(n in FINE_TUNED for n in states):
        return ("whether domain adaptation pays is not measured: the ladder needs the base model (zero-shot) "
                "and a trained rung (lora, full)")
    names = ", ".join(base)
    if choice in FINE_TUNED:
        if all(states[n] == "worse" for n in base):
            return (f"domain adaptation paid: {choice} has a lower perplexity than the base model ({names}) "
                    "beyond the noise and the margin")
        return (f"whether domain adaptation paid is not decided: the base model ({names}) is not shown worse "
                f"than {choice} by more than the margin")
    if choice == best:
        return "domain adaptation did not pay: no trained rung has a lower perplexity than the base model"
    return (f"domain adaptation did not pay: the base model ({choice}) is shown within the margin of {best}'s "
            "perplexity, at lower cost")


def recommend(rungs: list[dict], margin: float = DEFAULT_MARGIN, guard_margins: dict[str, float] | None = None,
              task: str | None = None) -> dict:
    """``rungs``: dicts with name, primary, metrics, cost.usd_first_month and paired_vs_best (from
    ``compare``), and optionally metric_items (per-item guard metrics; popped); ``margin``: the
    non-inferiority margin in units of the primary metric; ``guard_margins``: guard metric -> its margin;
    ``task``: the task type (a plain-text corpus is told whether domain adaptation paid)."""
    if not rungs:
        return {"rung": None, "reason": "no rung was run"}
    metric = rungs[0].get("primary", "accuracy")
    scored = [r for r in rungs if measured(_value(r))]
    missing = [r["name"] for r in rungs if r not in scored]
    unmeasured = (f" Not measured ({metric} could not be computed, never recommended): {', '.join(missing)}."
                  if missing else "")
    if not scored:
        return {"rung": None, "decided": False, "metric": metric, "not_measured": missing,
                "reason": f"No rung has a measured {metric}; nothing can be recommended." + unmeasured}
    best = max(scored, key=_better)
    states = {**statuses(scored, best, margin), **{n: "not measured" for n in missing}}
    good = [r for r in scored if states[r["name"]] in ("best", "non-inferior")]
    choice = min(good, key=cost_key)
    open_ = sorted((r for r in scored if states[r["name"]] == "undecided" and cost_key(r) < cost_key(choice)),
                   key=cost_key)
    m = margin_words(metric, margin)
    base = {"rung": choice["name"], "best": best["name"], "metric": metric, "margin": margin, "status": states,
            "alpha": ALPHA, "correction": "holm", "non_inferior": [r["name"] for r in good], "decided": not open_,
            "not_measured": missing,
            "undecided": [{"rung": r["name"], "rows_needed": _rows_needed(r, margin)} for r in open_]}
    adapted = adaptation(states, choice["name"], best["name"]) if task == TEXT else None
    if adapted is not None:
        base["domain_adaptation"] = adapted
    if len(scored) == 1:
        return _guard({**base, "reason": f"{best['name']} is the only rung measured ({level(metric, _value(best))})."
                                         + (f" {adapted[0].upper()}{adapted[1:]}." if adapted else "") + unmeasured},
                      rungs, guard_margins)
    n = best.get("paired_vs_best_of_rest", {}).get("n") or max(r["paired_vs_best"].get("n", 0) for r in scored)
    rows = rows_to_tell_apart(scored, best, margin)
    if all(states[r["name"]] == "undecided" for r in scored if r is not best) and (rows is None or n < rows):
        held = _withheld(base, scored, best, margin, n, rows)
        return {**held, "reason": held["reason"] + (" Whether domain adaptation paid is not decided." if adapted
                                                    else "")}
    if choice is best:
        reason = _best_reason(best, scored, m, metric, adapted)
    else:
        verdict = adapted or ("don't fine-tune" if best["name"] in FINE_TUNED and choice["name"] not in FINE_TUNED
                              else f"use {choice['name']}")
        reason = (f"{choice['name']} ({level(metric, _value(choice))}) is within {m} of the best rung, "
                  f"{best['name']} ({level(metric, _value(best))}): paired difference {_gap(choice)}; non-inferior "
                  f"at one-sided alpha {ALPHA} after Holm's correction over {len(scored) - 1} comparisons; "
                  f"{_ratio(choice, best)}; {verdict}.")
    if open_:
        reason += " " + _too_small(open_, best, choice, margin)
    flipped = [r for r in scored if states[r["name"]] == "flips"]
    for r in flipped:
        reason += " " + _flip_text(r, margin)
    base["flips"] = [r["name"] for r in flipped]
    return _guard({**base, "reason": reason + unmeasured}, rungs, guard_margins)


def _guard(rec: dict, rungs: list[dict], guard_margins: dict[str, float] | None) -> dict:
    """Overrule the choice when another rung is better on a guard metric by more than that metric's own
    margin (one-sided alpha 0.025, Holm over every other rung and guard metric); pops ``metric_items``."""
    from tunewise.report.content_guard import content_notes

    margins = DEFAULT_GUARD_MARGINS if guard_margins is None else guard_margins
    items = {r["name"]: r.pop("metric_items", None) or {} for r in rungs}
    names = [r["name"] for r in rungs if measured(_value(r))]
    guards = [g for g in margins if g != rec.get("metric") and names and all(g in items[n] for n in names)]
    chosen = rec.get("rung")
    if chosen is None or len(names) < 2 or not guards:
        return rec
    stats = {(a, b, g): paired_stats(items[a][g], items[b][g]) for a in names for b in names if a != b for g in guards}

    def beaten(n: str) -> list[tuple[str, str]]:
        family = [(o, g) for o in names if o != n for g in guards]
        rejected = holm([p_above(stats[(o, n, g)], margins[g]) for o, g in family], ALPHA)
        return [og for og, r in zip(family, rejected, strict=True) if r]

    out = {**rec, "content_checked": guards, "guard_margins": {g: margins[g] for g in guards},
           "notes": content_notes(rec, rungs, items, names)}
    lost = beaten(chosen)
    within = " or ".join(f"{g} by more than {100 * margins[g]:g} points" for g in guards)
    if not lost:
        out["content_check"] = (f"no rung is shown better than {chosen} on {within} (one-sided alpha {ALPHA}, "
                                f"Holm over {len(names) - 1} rungs x {len(guards)} metrics)")
        return out
    mean = lambda n, g: float(np.nanmean(items[n][g])) if not np.isnan(items[n][g]).all() else -1.0
    unbeaten = [n for n in names if not beaten(n)]
    # Among rungs no other rung beats on a guard, the one with the most content; with a cycle, the most.
    pick = max(unbeaten or names, key=lambda n: tuple(mean(n, g) for g in guards))
    other, g = max(lost, key=lambda og: mean(og[0], og[1]) - mean(chosen, og[1]))
    summary = paired_summary(items[other][g], items[chosen][g])
    lo, hi = summary["diff_ci"]
    why = (f"{chosen} was first on {rec.get('metric')}, but {other} is better on {g} by more than its margin of "
           f"{100 * margins[g]:g} points ({100 * summary['diff']:+.1f} pts, 95% CI {100 * lo:+.1f} to {100 * hi:+.1f}).")
    reason = (f"{pick}: no rung is shown better on {within}. {why} "
              f"A rung that says less of the reference's content is not recommended for how its answers look.")
    return {**out, "rung": pick, "reason": reason, "overruled": {"rung": chosen, "reason": rec.get("reason")}}

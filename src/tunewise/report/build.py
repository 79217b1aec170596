"""Write report.md and report.html (one self-contained file) from a ladder result (ladder.json)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tunewise import workspace as ws
from tunewise.evaluate.cost import break_even, break_even_sentences, prices_line, render_break_even_md
from tunewise.evaluate.score import LOWER_IS_BETTER, PLAIN
from tunewise.report.curve_view import curve_markdown

# Metrics shown as table columns per task type, primary first.
METRIC_COLUMNS = {
    "classification": ["accuracy", "macro_f1"],
    "extraction": ["field_f1", "field_precision", "field_recall", "json_valid_rate", "hallucination_rate"],
    "generation": ["content_f1", "content_precision", "content_recall", "groundedness", "semantic_similarity",
                   "rouge_l", "chrf", "exact_match", "format_compliance", "retrieval_recall_at_k"],
    "text": ["perplexity", "nll_per_token"],
}


def _pct(x: float | None) -> str:
    if x is None:
        return "–"
    return "not measured" if x != x else f"{100 * x:.1f}"  # NaN: the one policy of report.decide


def _ci(pair, metric: str | None = None) -> str:
    return f"{_num(metric, pair[0])}–{_num(metric, pair[1])}"


def metric_cell(metric: str, metrics: dict) -> str:
    """'82.0 (78.1–85.5)': a metric of a rung with its interval, as every table shows it."""
    ci = metrics.get(f"{metric}_ci")
    return _num(metric, metrics.get(metric)) + (f" ({_ci(ci, metric)})" if ci else "")


def _num(metric: str | None, x: float | None) -> str:
    """A metric's value as the report shows it: a share as a percentage, perplexity as it is."""
    if metric not in PLAIN or x is None or math.isnan(x):
        return _pct(x)
    return f"{x:.3f}" if metric == "nll_per_token" else f"{x:.2f}"


def metric_head(metric: str) -> str:
    return f"{metric} (95% CI)" if metric in PLAIN else f"{metric} % (95% CI)"


def _money(x: float) -> str:
    return f"{x:.4f}" if x < 1 else f"{x:,.2f}"


def _paired(r: dict) -> str:
    p = r.get("paired_vs_best", {})
    if p.get("not_measured"):
        return "not measured"
    if "diff_ci" not in p:
        return "best"
    lo, hi = p["diff_ci"]
    if r.get("primary") in LOWER_IS_BETTER:  # turned round (higher is better): shown as a ratio to the best
        return f"×{math.exp(-p['diff']):.3f} (×{math.exp(-hi):.3f} to ×{math.exp(-lo):.3f}), p={p['p_value']:.2g}"
    return f"{100 * p['diff']:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f}), p={p['p_value']:.2g}"


def paired_head(ladder: dict) -> str:
    if ladder.get("primary") in LOWER_IS_BETTER:
        return f"vs best: {ladder['primary']} ratio (95% CI), p"
    return "vs best: Δ pts (95% CI), p"


def _latency(r: dict) -> str:
    """Measured latency: the timing pass's median (IQR); ladders saved before it: the scoring figure."""
    t = r.get("latency")
    if not t:
        return f"{r['ms_per_example']:.1f}"
    return f"{t['median_ms']:.1f} ({t['q1_ms']:.1f}–{t['q3_ms']:.1f})"


def _gflops(r: dict) -> str:
    c = r.get("compute")
    return "–" if not c else f"{c['flops_per_request'] / 1e9:.3g}"


def _per_1k(r: dict) -> str:
    spread = r.get("cost_spread_per_1k")
    cell = _money(r["cost"]["usd_per_1k_requests"])
    return cell if not spread else f"{cell} ({_money(spread[0])}–{_money(spread[1])})"


def rule_text(ladder: dict) -> str:
    """The recommendation rule in one sentence, with this ladder's margin."""
    rec = ladder["recommendation"]
    if "margin" not in rec:  # a ladder saved before the margin rule
        return (f"the cheapest rung whose {ladder['primary']} is not significantly below the best rung's "
                f"(paired test on the same test items, p ≥ {rec.get('alpha', 0.05)}).")
    from tunewise.report.decide import margin_words

    m, metric = f"{100 * rec['margin']:g}", ladder["primary"]
    lead, edge = f"at most {m} points of {metric} below the best rung", f"-{m}"
    if metric in LOWER_IS_BETTER:  # compared on mean NLL per token, turned so that higher is better
        lead = f"at most {margin_words(metric, rec['margin'])} above the best rung's {metric}"
        edge = f"-{rec['margin']:g}"
    return (f"the cheapest rung shown to be {lead}: its "
            f"paired difference to the best (same test items) is shown above {edge} (`eval.margin: {rec['margin']:g}`) "
            "at one-sided alpha 0.025 after Holm's correction over all rungs (the lower end of the 95% interval "
            f"is above {edge} when only one rung is compared). Where a cheaper rung's interval straddles {edge}, the "
            "report says the test set is too small to decide and estimates the rows needed (normal approximation "
            "with the observed per-item SD of the difference, 80% power); when nothing at all is decided and a "
            "power calculation says the split is too small, the recommendation is withheld. A rung whose "
            "primary metric could not be computed is not measured and never recommended. docs/decision.md.")


def perplexity_note(ladder: dict) -> str:
    """How perplexity and its interval were computed (a plain-text corpus only)."""
    if ladder.get("primary") not in LOWER_IS_BETTER:
        return ""
    return ("Perplexity is exp of the test documents' token-weighted mean negative log-likelihood (every token "
            "after a document's first, the EOS included); its interval is a percentile bootstrap over documents "
            "of that mean, and 'vs best' is the paired t interval of the per-document shares of the mean NLL, "
            "shown as the ratio of perplexities. ")


def method_note(ladder: dict) -> str:
    """How cost and latency were obtained, and why they are kept apart."""
    timing = ladder.get("timing")
    if not ladder.get("throughput") or not timing:
        return "Cost and latency come from the seconds measured while scoring (a ladder saved before FLOPs were counted)."
    return (
        "Cost is computed, not timed: each request costs its forward FLOPs (2 × the model's weights, embedding "
        "lookups excluded, × its prompt and answer tokens) and training its training FLOPs (6 × weights × tokens "
        "trained on, 4 with a frozen base, 2 for a forward-only fit, +2 for DPO's reference model, plus 2 × weights × "
        "tokens of the val evaluations that pick the checkpoint), priced on the machine named below the "
        "break-even (a GPU also prices each generated token by the bytes it reads). So rungs "
        "that run the same model on the same tokens cost the same, whatever else the machine ran meanwhile; "
        "the $ / 1k range, on this CPU, is the cost at its measured throughput's interquartile range. The rungs "
        "record their work, not their price, so `tunewise report --set cost.…` re-prices without re-running. "
        "Latency is measured separately, on this machine: "
        f"the same {timing['examples']} seeded test rows predicted {timing['repeats']} times per rung "
        f"(batch size {timing['batch_size']}), median (IQR) ms per example; it moves with the machine's load. "
        "'train s' is measured wall time; FLOPs leave out framework overheads, the backward pass's lower "
        "efficiency and checkpointing, so train $ is a lower bound, well below it for short runs on a CPU.")


def _breakeven(r: dict) -> str:
    be = r.get("break_even")
    if not be:
        return "–"
    if be["requests"] is None:
        return f"never (vs {be['vs']})"
    return f"{be['requests']:,} (vs {be['vs']})"


def ladder_break_even(ladder: dict) -> dict:
    """The break-even saved with the ladder, or computed from it (ladders saved before it was stored)."""
    result = ladder.get("break_even") or break_even(ladder)
    # NaN is "not measured" (report.decide); the break-even table shows it as None does: "–".
    rows = [{**r, "value": None if r.get("value") != r.get("value") else r.get("value")} for r in result.get("rungs", [])]
    return {**result, "rungs": rows}


def metric_columns(ladder: dict) -> list[str]:
    cols = METRIC_COLUMNS.get(ladder.get("task", "classification"), ["accuracy"])
    primary = ladder.get("primary")
    cols = [primary, *(c for c in cols if c != primary)] if primary else cols  # the deciding metric first
    present = set().union(*(r["metrics"] for r in ladder["rungs"])) if ladder["rungs"] else set()
    return [c for c in cols if c in present]


def why_primary(ladder: dict) -> str:
    """Which metric ranked the rungs and why (older ladders name no reason)."""
    from tunewise.evaluate.score import PRIMARY, WHY_PRIMARY

    metric = ladder.get("primary", "accuracy")
    if metric == PRIMARY.get(ladder.get("task", ""), metric) and metric in WHY_PRIMARY:
        return f"Rungs are ranked on **{metric}** (the default for this task): {WHY_PRIMARY[metric]}."
    return f"Rungs are ranked on **{metric}**, as set by `eval.primary`."


def draw_lines(ladder: dict) -> list[str]:
    """One line per rung measured on several random draws (few-shot example sets): the spread."""
    lines = []
    for r in ladder["rungs"]:
        d = r.get("draw_summary")
        if d:
            values = ", ".join(_pct(x["value"]) for x in r.get("draws", []))
            lines.append(f"{r['name']} across {d['k']} example sets (seeds {', '.join(str(x['seed']) for x in r['draws'])}): "
                         f"{values}; mean {_pct(d['mean'])}, SD {_pct(d['sd'])} points, 95% CI {_ci(d['ci'])} "
                         "(includes the between-set variance; the table shows the first set, the one served).")
    return lines


def recommendation_notes(rec: dict, ladder: dict | None = None) -> list[str]:
    """The content check's verdict, every surface-vs-content disagreement and every drawn rung's spread."""
    lines = draw_lines(ladder) if ladder else []
    if rec.get("overruled"):
        lines.append(f"Overruled: **{rec['overruled']['rung']}** was the choice on {rec.get('metric')} "
                     f"({rec['overruled']['reason']})")
    if rec.get("content_check"):
        lines.append(f"Content check: {rec['content_check']}.")
    return lines + list(rec.get("notes", []))


def _cell(text, width: int = 160) -> str:
    text = str(text).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= width else text[:width] + " …"


def answers_table(rows: list[dict]) -> list[str]:
    lines = ["| id | question | reference | answer | scores |", "|---|---|---|---|---|"]
    for e in rows:
        scores = ", ".join(f"{k} {100 * v:.0f}" for k, v in e["scores"].items())
        question = e["input"] if len(e["input"]) <= 120 else "… " + e["input"][-120:]
        lines.append(f"| {e['id']} | {_cell(question)} | {_cell(e['target'])} | {_cell(e['output'])} | {scores} |")
    return lines


def rung_table(ladder: dict) -> list[str]:
    cols = metric_columns(ladder)
    head = ["rung", *(metric_head(c) for c in cols), paired_head(ladder), "train s",
            "latency ms / example (IQR)", "prompt tokens", "GFLOPs / request", "train $", "$ / 1k requests (range)",
            "$ first month", "break-even requests"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in ladder["rungs"]:
        m = r["metrics"]
        cells = [r["name"]]
        cells += [metric_cell(c, m) for c in cols]
        cells += [_paired(r), f"{r['train_seconds']:.0f}", _latency(r), f"{r['prompt_tokens_per_request']:.0f}",
                  _gflops(r), _money(r["cost"]["train_usd"]), _per_1k(r), _money(r["cost"]["usd_first_month"]),
                  _breakeven(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_class_table(r: dict, labels: list[str]) -> list[str]:
    lines = ["| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for lab in labels:
        c = r["metrics"]["per_class"][lab]
        lines.append(f"| {lab} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | {int(c['support'])} |")
    return lines


def confusion_table(r: dict, labels: list[str]) -> list[str]:
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for lab, row in zip(labels, r["metrics"]["confusion_matrix"], strict=True):
        lines.append(f"| **{lab}** | " + " | ".join(str(v) for v in row) + " |")
    return lines


def errors_table(r: dict) -> list[str]:
    lines = ["| id | input | expected | got |", "|---|---|---|---|"]
    for e in r.get("worst_errors", []):
        text = e["input"].replace("\n", " ").replace("|", "\\|")[:200]
        lines.append(f"| {e['id']} | {text} | {e['target']} | {str(e['output']).replace(chr(10), ' ')[:120]} |")
    return lines


def run_status_lines(ladder: dict) -> list[str]:
    """What did not run as asked: an interrupted ladder, failed rungs, rungs reused from earlier runs."""
    lines = []
    done, asked = len(ladder["rungs"]), len(ladder.get("requested", ladder["rungs"]))
    if ladder.get("status") == "interrupted":
        lines.append(f"**Interrupted**: {done} of {asked} rungs finished before Ctrl-C; this report covers them only.")
    for f in ladder.get("failed", []):
        lines.append(f"**Failed**: rung `{f['name']}` — {f['error']}")
    if ladder.get("reused"):
        lines.append(f"Reused from earlier runs with the same config, data and tunewise version: "
                     f"{', '.join(ladder['reused'])} (`tunewise ladder --fresh` recomputes them).")
    if epoch := ((ladder.get("dataset") or {}).get("frozen_split") or {}).get("epoch"):
        lines.append(f"**Test split made afresh** (split epoch {epoch}, by `tunewise prepare --resplit` or a new "
                     "data.seed): comparisons with reports on an earlier split are void.")
    return lines


def render_markdown(ladder: dict) -> str:
    rec = ladder["recommendation"]
    out = [
        f"# tunewise ladder report: {ladder['project']}",
        "",
        (f"Test split: **{ladder['n_test']}** examples, sha256 `{ladder['test_hash']}` "
         f"(train {ladder['n_train']}, val {ladder['n_val']}, rejected rows {ladder['n_rejected']}). "
         "Every rung was scored on exactly these examples."),
        *(["", f"Data: {ladder['dataset']['note']}."] if ladder.get("dataset", {}).get("note") else []),
        *[x for line in run_status_lines(ladder) for x in ("", line)],
        "",
        "## Recommendation",
        "",
        f"**{rec['rung'] or 'withheld'}**: {rec['reason']}",
        "",
        f"Rule: {rule_text(ladder)}",
        *(f"- {line}" for line in recommendation_notes(rec, ladder)),
        "",
        why_primary(ladder),
        "",
        "## Rungs",
        "",
        *rung_table(ladder),
        "",
        ("Confidence intervals are 95%: Wilson score intervals for proportions (accuracy, exact match), "
         "bootstrap percentiles (scipy) for other metrics. 'vs best' is the paired difference to the best rung "
         "on the same examples, with Newcombe's hybrid score interval and exact McNemar p for right/wrong "
         "items, the paired t interval and p otherwise. " + perplexity_note(ladder)
         + "Money uses the prices in the config's `cost:` section. " + method_note(ladder)),
        "",
        *render_break_even_md(ladder_break_even(ladder)),
        *(curve_markdown(ladder["curve"]) if ladder.get("curve") else []),
    ]
    if ladder.get("n_ood"):
        out += ["", f"## Out-of-distribution test ({ladder['n_ood']} examples)", ""]
        out += [f"- {r['name']}: {ladder['primary']} {_num(ladder['primary'], r['ood_metrics'][ladder['primary']])}"
                f"{'' if ladder['primary'] in PLAIN else '%'}"
                for r in ladder["rungs"] if r.get("ood_metrics")]
    for r in ladder["rungs"]:
        out += ["", f"## {r['name']}", ""]
        if r.get("warnings"):  # what the run warned about, not only in the log
            out += ["**Warnings:** " + "; ".join(r["warnings"]), ""]
        if "confusion_matrix" in r["metrics"]:
            out += ["Per-class scores (%):", "", *per_class_table(r, ladder["labels"]), "",
                    "Confusion matrix:", "", *confusion_table(r, ladder["labels"]), ""]
        if r.get("answers"):
            a = r["answers"]
            out += [f"Answers beside the reference, the worst by {a['metric']}:", "", *answers_table(a["worst"]), "",
                    "A seeded random sample (the same questions for every rung):", "", *answers_table(a["sample"])]
        elif r.get("worst_errors"):
            out += ["Worst errors:", "", *errors_table(r)]
    return "\n".join(out) + "\n"


def render_html(ladder: dict) -> str:
    """One self-contained page: inline CSS and SVG charts, no scripts, no external URLs."""
    import jinja2

    from tunewise.report import plots

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tunewise.report", "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    curves = [c for c in (plots.training_curve(r) for r in ladder["rungs"]) if c]
    return env.get_template("report.html").render(
        ladder=ladder, metric_cols=metric_columns(ladder), bootstrap=ladder.get("bootstrap", 1000),
        charts={"ladder": plots.ladder_chart(ladder), "cost": plots.quality_vs_cost(ladder)}, curves=curves,
        learning_chart=plots.learning_curves(ladder["curve"]) if ladder.get("curve") else "",
        ood=any(r.get("ood_metrics") for r in ladder["rungs"]),
        pct=_pct, num=_num, head=metric_head, paired_head=paired_head(ladder), ci=_ci, money=_money, paired=_paired, breakeven=_breakeven, latency=_latency, gflops=_gflops,
        per_1k=_per_1k, rule=rule_text(ladder).replace("`", ""), method_note=method_note(ladder),
        notes=recommendation_notes(ladder["recommendation"], ladder), why_primary=why_primary(ladder).replace("**", ""),
        status_lines=run_status_lines(ladder),
        be=ladder_break_even(ladder), be_sentences=break_even_sentences(ladder_break_even(ladder)),
        prices_line=prices_line(ladder_break_even(ladder)).replace("`", ""),
    )


def write_report(ladder: dict, report_dir: Path) -> None:
    ws.write_text(Path(report_dir) / "report.md", render_markdown(ladder))
    ws.write_text(Path(report_dir) / "report.html", render_html(ladder))


def rebuild(report_dir: Path) -> None:
    """Re-render the report files from a saved ladder.json."""
    ladder = json.loads((Path(report_dir) / "ladder.json").read_text(encoding="utf-8"))
    write_report(ladder, report_dir)

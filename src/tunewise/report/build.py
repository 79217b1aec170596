"""Write report.md and report.html (one self-contained file) from a ladder result (ladder.json)."""

from __future__ import annotations

import json
from pathlib import Path

from tunewise import workspace as ws
from tunewise.evaluate.cost import break_even, break_even_sentences, prices_line, render_break_even_md
from tunewise.report.curve_view import curve_markdown

# Metrics shown as table columns per task type, primary first.
METRIC_COLUMNS = {
    "classification": ["accuracy", "macro_f1"],
    "extraction": ["field_f1", "field_precision", "field_recall", "json_valid_rate", "hallucination_rate"],
    "generation": ["rouge_l", "chrf", "exact_match", "format_compliance", "unsupported_rate"],
}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _ci(pair) -> str:
    return f"{_pct(pair[0])}–{_pct(pair[1])}"


def _money(x: float) -> str:
    return f"{x:.4f}" if x < 1 else f"{x:,.2f}"


def _paired(r: dict) -> str:
    p = r.get("paired_vs_best", {})
    if "diff_ci" not in p:
        return "best"
    lo, hi = p["diff_ci"]
    return f"{100 * p['diff']:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f}), p={p['p_value']:.2g}"


def _breakeven(r: dict) -> str:
    be = r.get("break_even")
    if not be:
        return "–"
    if be["requests"] is None:
        return f"never (vs {be['vs']})"
    return f"{be['requests']:,} (vs {be['vs']})"


def ladder_break_even(ladder: dict) -> dict:
    """The break-even saved with the ladder, or computed from it (ladders saved before it was stored)."""
    return ladder.get("break_even") or break_even(ladder)


def metric_columns(ladder: dict) -> list[str]:
    cols = METRIC_COLUMNS.get(ladder.get("task", "classification"), ["accuracy"])
    present = set().union(*(r["metrics"] for r in ladder["rungs"])) if ladder["rungs"] else set()
    return [c for c in cols if c in present]


def rung_table(ladder: dict) -> list[str]:
    cols = metric_columns(ladder)
    head = ["rung", *(f"{c} % (95% CI)" for c in cols), "vs best: Δ pts (95% CI), p", "train s", "ms / example",
            "prompt tokens", "train $", "$ / 1k requests", "$ first month", "break-even requests"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in ladder["rungs"]:
        m = r["metrics"]
        cells = [r["name"]]
        cells += [f"{_pct(m.get(c))}" + (f" ({_ci(m[c + '_ci'])})" if m.get(c + "_ci") else "") for c in cols]
        cells += [_paired(r), f"{r['train_seconds']:.0f}", f"{r['ms_per_example']:.1f}",
                  f"{r['prompt_tokens_per_request']:.0f}", _money(r["cost"]["train_usd"]),
                  _money(r["cost"]["usd_per_1k_requests"]), _money(r["cost"]["usd_first_month"]), _breakeven(r)]
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


def render_markdown(ladder: dict) -> str:
    rec = ladder["recommendation"]
    out = [
        f"# tunewise ladder report: {ladder['project']}",
        "",
        (f"Test split: **{ladder['n_test']}** examples, sha256 `{ladder['test_hash']}` "
         f"(train {ladder['n_train']}, val {ladder['n_val']}, rejected rows {ladder['n_rejected']}). "
         "Every rung was scored on exactly these examples."),
        *(["", f"Data: {ladder['dataset']['note']}."] if ladder.get("dataset", {}).get("note") else []),
        "",
        "## Recommendation",
        "",
        f"**{rec['rung']}**: {rec['reason']}",
        "",
        "## Rungs",
        "",
        *rung_table(ladder),
        "",
        ("Confidence intervals are 95% bootstrap percentiles over test examples. 'vs best' is the paired "
         "difference to the best rung on the same examples: exact McNemar p for right/wrong items, "
         "paired-bootstrap p otherwise. Money uses the prices in the config's `cost:` section."),
        "",
        *render_break_even_md(ladder_break_even(ladder)),
        *(curve_markdown(ladder["curve"]) if ladder.get("curve") else []),
    ]
    if ladder.get("n_ood"):
        out += ["", f"## Out-of-distribution test ({ladder['n_ood']} examples)", ""]
        out += [f"- {r['name']}: {ladder['primary']} {_pct(r['ood_metrics'][ladder['primary']])}%"
                for r in ladder["rungs"] if r.get("ood_metrics")]
    for r in ladder["rungs"]:
        out += ["", f"## {r['name']}", ""]
        if "confusion_matrix" in r["metrics"]:
            out += ["Per-class scores (%):", "", *per_class_table(r, ladder["labels"]), "",
                    "Confusion matrix:", "", *confusion_table(r, ladder["labels"]), ""]
        if r.get("worst_errors"):
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
        pct=_pct, ci=_ci, money=_money, paired=_paired, breakeven=_breakeven,
        be=ladder_break_even(ladder), be_sentences=break_even_sentences(ladder_break_even(ladder)),
        prices_line=prices_line(ladder_break_even(ladder)["prices"]).replace("`", ""),
    )


def write_report(ladder: dict, report_dir: Path) -> None:
    ws.write_text(Path(report_dir) / "report.md", render_markdown(ladder))
    ws.write_text(Path(report_dir) / "report.html", render_html(ladder))


def rebuild(report_dir: Path) -> None:
    """Re-render the report files from a saved ladder.json."""
    ladder = json.loads((Path(report_dir) / "ladder.json").read_text(encoding="utf-8"))
    write_report(ladder, report_dir)

"""Write report.md from a ladder result (the dict saved as ladder.json)."""

from __future__ import annotations

import json
from pathlib import Path

from tunewise import workspace as ws


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(pair) -> str:
    return f"{_pct(pair[0])}–{_pct(pair[1])}"


def rung_table(ladder: dict) -> list[str]:
    lines = [
        "| rung | accuracy % (95% CI) | macro-F1 % (95% CI) | vs best: McNemar p | train s | train tok/s | ms / example | prompt tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in ladder["rungs"]:
        m = r["metrics"]
        p = r.get("paired_vs_best", {}).get("p_value")
        lines.append(
            f"| {r['name']} | {_pct(m['accuracy'])} ({_ci(m['accuracy_ci'])}) | {_pct(m['macro_f1'])} "
            f"({_ci(m['macro_f1_ci'])}) | {'best' if p == 1.0 else f'{p:.2g}'} | {r['train_seconds']:.0f} | "
            f"{r.get('train_tokens_per_second', 0):.0f} | {r['ms_per_example']:.1f} | {r['prompt_tokens_per_request']:.0f} |"
        )
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


def verdict(ladder: dict) -> str:
    """One paragraph in plain words: who won, by how much, and whether the CIs overlap."""
    rungs = ladder["rungs"]
    rec = ladder["recommendation"]
    if len(rungs) < 2:
        return rec["reason"]
    by_acc = sorted(rungs, key=lambda r: r["metrics"]["accuracy"], reverse=True)
    best, runner = by_acc[0], by_acc[1]
    lo_b, _ = best["metrics"]["accuracy_ci"]
    _, hi_r = runner["metrics"]["accuracy_ci"]
    overlap = (
        "The two 95% confidence intervals do not overlap."
        if lo_b > hi_r
        else "The two 95% confidence intervals overlap, so the gap may be noise."
    )
    return (
        f"On {ladder['n_test']} frozen test examples, {best['name']} scored {_pct(best['metrics']['accuracy'])}% "
        f"accuracy and {runner['name']} {_pct(runner['metrics']['accuracy'])}%. {overlap} "
        f"Recommendation: **{rec['rung']}**. {rec['reason']}"
    )


def render_markdown(ladder: dict) -> str:
    labels = ladder["labels"]
    out = [
        f"# tunewise ladder report: {ladder['project']}",
        "",
        f"Test split: **{ladder['n_test']}** examples, sha256 `{ladder['test_hash']}` "
        f"(train {ladder['n_train']}, val {ladder['n_val']}, rejected rows {ladder['n_rejected']}). "
        "Every rung was scored on exactly these examples.",
        "",
        "## Verdict",
        "",
        verdict(ladder),
        "",
        "## Rungs",
        "",
        *rung_table(ladder),
        "",
        "Confidence intervals are 95% bootstrap percentiles over test examples; p is the exact McNemar "
        "test against the best rung on the same examples.",
    ]
    for r in ladder["rungs"]:
        out += ["", f"## {r['name']}", "", "Per-class scores (%):", "", *per_class_table(r, labels), "",
                "Confusion matrix:", "", *confusion_table(r, labels)]
    return "\n".join(out) + "\n"


def write_report(ladder: dict, report_dir: Path) -> None:
    ws.write_text(Path(report_dir) / "report.md", render_markdown(ladder))


def rebuild(report_dir: Path) -> None:
    """Re-render the report files from a saved ladder.json."""
    ladder = json.loads((Path(report_dir) / "ladder.json").read_text(encoding="utf-8"))
    write_report(ladder, report_dir)

"""The learning-curve section (`tunewise curve`): Markdown lines, its own HTML page, and finding the
newest curve measured on a ladder's test split. The ladder report shows the same section."""

from __future__ import annotations

import json
from pathlib import Path

from tunewise import workspace as ws


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _ci(pair) -> str:
    return f"{_pct(pair[0])}–{_pct(pair[1])}"


def curve_markdown(curve: dict) -> list[str]:
    """The learning-curve section (lines), for report.md and the curve folder's curve.md."""
    lines = ["## How much data is enough: learning curves", "",
             (f"Each trained rung fitted on nested, seeded, stratified subsets of the {curve['n_train']:,} train rows "
              f"(sizes {', '.join(f'{n:,}' for n in curve['sizes'])}) and scored on the same {curve['n_test']:,} test "
              "rows; prompting rungs learn nothing from more rows and were measured once."), ""]
    lines += [f"- {s}" for s in curve["advice"]] + ["", f"| rung | train rows | {curve['primary']} % (95% CI) | train s |",
                                                    "|---|---|---|---|"]
    for r in curve["rungs"]:
        for p in r["points"]:
            ci = f" ({_ci(p['ci'])})" if p.get("ci") else ""
            lines.append(f"| {r['name']} | {p['n']:,} | {_pct(p['value'])}{ci} | {p['train_seconds']:.1f} |")
    lines += ["", ("Curve: q(n) = a − b·n^(−c), least squares with bounds; its 95% band and every projection come "
                   f"from refits on {curve['bootstrap']} bootstrap resamples of the test items. They show the noise of the "
                   "test items only, not which train rows were drawn, so the real uncertainty of a projection is wider."),
              *([f"Notes: {'; '.join(curve['notes'])}."] if curve.get("notes") else []), ""]
    return lines


def latest_curve(project: Path, test_hash: str) -> dict | None:
    """The newest curve.json of a project measured on this very test split, else None."""
    root = ws.workspace(Path(project)) / "curves"
    for folder in sorted(root.glob("*"), reverse=True) if root.exists() else []:
        path = folder / "curve.json"
        if path.exists():
            curve = json.loads(path.read_text(encoding="utf-8"))
            if curve.get("test_hash") == test_hash:
                return curve
    return None


def render_curve_html(curve: dict) -> str:
    """curve.html: the learning-curve section as a page of its own (the ladder report shows the same)."""
    import jinja2

    from tunewise.report import plots

    env = jinja2.Environment(loader=jinja2.PackageLoader("tunewise.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("curve.html").render(lc=curve, learning_chart=plots.learning_curves(curve), pct=_pct, ci=_ci)

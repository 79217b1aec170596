"""monitor.html: the verdict in words, one trend chart per signal (inline SVG), the most drifted inputs."""

from __future__ import annotations

import html
from pathlib import Path

from tunewise import workspace as ws
from tunewise.report.plots import OTHER, _figure, _svg

ALARM = "#c0392b"
VERDICT_COLOR = {"stable": "#1b7f3b", "watch": "#b9770e", "retrain": ALARM}

# (title, how to read a window's value, the alarm it belongs to, the threshold key or None)
SIGNALS = [
    ("Estimated accuracy (CBPE, no labels)", lambda w: w["cbpe"]["accuracy"], "quality", None),
    ("Embedding drift (MMD² excess over chance)", lambda w: w["embedding"]["excess"], "embedding", "min_mmd"),
    ("Out-of-distribution rate", lambda w: w["ood"]["rate"], "ood", "max_ood_rate"),
    ("Predicted-label shift (PSI)", lambda w: w["labels"]["psi"], "labels", "max_psi"),
    ("Mean top-label probability", lambda w: w["confidence"]["mean"], "confidence", None),
    ("Input length shift (KS distance)", lambda w: w["length"]["ks"], "length", "max_length_ks"),
    ("New-vocabulary rate", lambda w: w["new_vocab"]["rate"], "new_vocab", None),
]


def trend(result: dict, title: str, get, alarm: str, threshold: float | None) -> str | None:
    tested = [w for w in result["windows"] if w["tested"]]
    try:
        ys = [get(w) for w in tested]
    except KeyError:
        return None
    if not ys:
        return None
    fig, ax = _figure(7, 2.4)
    xs = list(range(len(ys)))
    ax.plot(xs, ys, "o-", color=OTHER, markersize=4)
    hot = [(x, y) for x, y, w in zip(xs, ys, tested, strict=True) if alarm in w["alarms"]]
    if hot:
        ax.plot(*zip(*hot, strict=True), "o", color=ALARM, markersize=8, label="alarm")
        ax.legend(loc="best", fontsize=8)
    if threshold is not None:
        ax.axhline(threshold, color=ALARM, linestyle="--", linewidth=1)
    if alarm == "quality":
        ref = result["reference"]["ladder"]["accuracy"]
        ax.axhline(ref, color="#555", linestyle=":", linewidth=1)
        lab = [(x, w["labelled"]["accuracy"]) for x, w in zip(xs, tested, strict=True) if "labelled" in w]
        if lab:
            ax.plot(*zip(*lab, strict=True), "s", color="#1b7f3b", markersize=5, label="measured (labelled)")
            ax.legend(loc="best", fontsize=8)
    step = max(1, len(xs) // 10)
    ax.set_xticks(xs[::step], [tested[i]["window"] for i in xs[::step]], rotation=30, ha="right", fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def render(result: dict) -> str:
    e = html.escape
    v = result["verdict"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>tunewise monitor</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}"
        ".alarm{color:#c0392b}</style></head><body>",
        f"<h1>Monitor: <span style='color:{VERDICT_COLOR[v]}'>{e(v)}</span></h1>",
        f"<p>{result['n_requests']} requests from <code>{e(result['log'])}</code>, {e(result['unit'])} windows; "
        f"compared with dataset <code>{e(result['dataset'])}</code>. Predictions: {e(result['predictions'])}. "
        f"A window alarms when a test is significant after a Benjamini-Hochberg correction across that "
        f"window's tests (q &lt; {result['thresholds']['alpha']}, per window, so sensitivity does not fall as "
        f"the log grows) and its effect reaches its size. {e(result['correction']['kernel_note'])}.</p>",
        "<h2>Why</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in result["why"][:30]) + "</ul>",
    ]
    if result.get("labelled"):
        lab = result["labelled"]
        lo, hi = lab["accuracy_ci"]
        parts.append(f"<h2>Labelled requests</h2><p>Accuracy on {lab['n']} labelled requests: "
                     f"{100 * lab['accuracy']:.1f}% (95% CI {100 * lo:.1f}–{100 * hi:.1f}) against the ladder's "
                     f"{100 * lab['ladder_accuracy']:.1f}% on {lab['ladder_n_test']} test rows; {e(lab['test'])}: "
                     f"p={lab['p_value']:.3g}. {e(result['reference']['ladder'].get('note', ''))}"
                     + (f" {lab['ranked_left_out']} labelled row(s) picked for being far or unsure were left out: "
                        "their accuracy is biased low." if lab.get("ranked_left_out") else "") + "</p>")
    parts.append("<h2>Trends per window</h2>")
    for title, get, alarm, key in SIGNALS:
        svg = trend(result, title, get, alarm, result["thresholds"].get(key) if key else None)
        if svg:
            parts.append(svg)
    parts.append("<h2>Windows</h2><table><tr><th>window</th><th>requests</th><th>alarms</th></tr>")
    for w in result["windows"]:
        cls = " class='alarm'" if w["alarms"] else ""
        reasons = e("; ".join(w["reasons"]) or "none")
        parts.append(f"<tr><td>{e(w['window'])}</td><td>{w['n']}</td><td{cls}>{reasons}</td></tr>")
    far = result["reference"]["nn_threshold"]
    parts.append("</table><h2>Most drifted inputs</h2><p>Farthest from any training row (cosine distance; "
                 f"'far' beyond the training data's own 99th percentile, {far:.3f}).</p>"
                 "<table><tr><th>window</th><th>distance</th><th>predicted</th><th>input (PII redacted)</th></tr>")
    for t in result["top_drifted"]:
        pred = f"{t.get('predicted', '')} ({t['confidence']})" if "predicted" in t else ""
        parts.append(f"<tr><td>{e(t['window'])}</td><td>{t['distance']}{' far' if t['far'] else ''}</td>"
                     f"<td>{e(pred)}</td><td>{e(t['input'])}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write_monitor_html(result: dict, path: Path) -> Path:
    return ws.write_text(path, render(result))

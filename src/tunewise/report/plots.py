"""The report's charts as inline SVG strings (matplotlib, Agg): the HTML needs no files or network."""

from __future__ import annotations

import io

RECOMMENDED = "#1b7f3b"
OTHER = "#4a6fa5"


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    # No RDF metadata block: it names web addresses (matplotlib.org, purl.org) a reader may take for links.
    fig.savefig(buf, format="svg", bbox_inches="tight",
                metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _ci(r: dict) -> tuple[float, float]:
    m = r["metrics"]
    lo, hi = m.get(f"{r['primary']}_ci", (m[r["primary"]], m[r["primary"]]))
    return lo, hi


def _scale(metric: str) -> tuple[int, str]:
    """How a metric is drawn: a share in percent, perplexity as it is."""
    from tunewise.evaluate.score import PLAIN

    return (1, "") if metric in PLAIN else (100, " %")


def ladder_chart(ladder: dict) -> str:
    """One bar per rung: the primary metric with its 95% CI as a whisker; the recommended rung in green."""
    from tunewise.report.decide import measured

    rungs = [r for r in ladder["rungs"] if measured(r["metrics"].get(r["primary"]))]  # not measured: no bar
    rec = ladder["recommendation"]["rung"]
    fig, ax = _figure(7, 0.5 + 0.55 * len(rungs))
    scale, unit = _scale(ladder["primary"])
    names = [r["name"] for r in rungs][::-1]
    vals = [scale * r["metrics"][r["primary"]] for r in rungs][::-1]
    cis = [_ci(r) for r in rungs][::-1]
    err = [[v - scale * lo for v, (lo, _) in zip(vals, cis, strict=True)],
           [scale * hi - v for v, (_, hi) in zip(vals, cis, strict=True)]]
    colors = [RECOMMENDED if n == rec else OTHER for n in names]
    ax.barh(names, vals, xerr=err, color=colors, capsize=4, ecolor="#222")
    for y, v in enumerate(vals):
        ax.text(1 if unit else 0.01 * max(vals), y, f"{v:.1f}", va="center", color="white", fontsize=9)
    if unit:  # a share: the whole 0-100 scale; perplexity: from 0 to the largest
        ax.set_xlim(0, 100)
    ax.set_xlabel(f"{ladder['primary']}{unit} on {ladder['n_test']} test examples (95% CI)")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def quality_vs_cost(ladder: dict) -> str:
    """Quality against first-month cost (training + a month of requests), log scale."""
    fig, ax = _figure(7, 4)
    from tunewise.report.decide import measured

    rec = ladder["recommendation"]["rung"]
    for r in (r for r in ladder["rungs"] if measured(r["metrics"].get(r["primary"]))):
        x = max(r["cost"]["usd_first_month"], 1e-6)
        scale = _scale(r["primary"])[0]
        y = scale * r["metrics"][r["primary"]]
        lo, hi = _ci(r)
        ax.errorbar([x], [y], yerr=[[y - scale * lo], [scale * hi - y]], fmt="o", capsize=4,
                    color=RECOMMENDED if r["name"] == rec else OTHER)
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xscale("log")
    months = ladder["prices"]["requests_per_month"]
    ax.set_xlabel(f"USD, training + {months:,} requests (log scale)")
    ax.set_ylabel(f"{ladder['primary']}{_scale(ladder['primary'])[1]}")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def training_curve(r: dict) -> str | None:
    """Train (and val) loss against step, when the rung trained with a loss."""
    rows = r.get("train_history") or []
    train = [(h["step"], h["loss"]) for h in rows if "loss" in h]
    val = [(h["step"], h["eval_loss"]) for h in rows if "eval_loss" in h]
    if not train and not val:
        return None
    fig, ax = _figure(6, 3)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color=OTHER)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="val loss", color="#c0392b")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title(r["name"])
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


PALETTE = ("#4a6fa5", "#c0392b", "#1b7f3b", "#8e44ad", "#d68910", "#17808a")


def learning_curves(curve: dict) -> str:
    """Quality against train rows (log scale): measured points with CIs, each fitted curve with its
    95% bootstrap band out to the projected size, prompting rungs as dashed flat lines."""
    fig, ax = _figure(7, 4)
    for i, r in enumerate(curve["rungs"]):
        color = PALETTE[i % len(PALETTE)]
        pts = r["points"]
        if not r["trains"]:
            p = pts[0]
            ax.axhline(100 * p["value"], ls="--", color=color, label=f"{r['name']} (no training)")
            if p.get("ci"):
                ax.axhspan(100 * p["ci"][0], 100 * p["ci"][1], color=color, alpha=0.08)
            continue
        ns = [p["n"] for p in pts]
        vals = [100 * p["value"] for p in pts]
        cis = [p.get("ci") or (p["value"], p["value"]) for p in pts]
        err = [[v - 100 * lo for v, (lo, _) in zip(vals, cis, strict=True)],
               [100 * hi - v for v, (_, hi) in zip(vals, cis, strict=True)]]
        ax.errorbar(ns, vals, yerr=err, fmt="o", capsize=3, color=color, label=r["name"])
        if r.get("band"):
            band = r["band"]
            xs = [b["n"] for b in band]
            ax.plot(xs, [100 * b["value"] for b in band], color=color)
            ax.fill_between(xs, [100 * b["lo"] for b in band], [100 * b["hi"] for b in band], color=color, alpha=0.18)
    ax.axvline(curve["n_train"], color="#888", lw=0.8, ls=":")
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    # Ticks at the measured sizes and the projected one; log-scale minor labels would overprint them.
    ax.xaxis.set_major_locator(FixedLocator(sorted({*curve["sizes"], curve["n_train"], curve["n_train"] + curve["more"]})))
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:,.0f}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("labelled train rows (log scale; dotted: today)")
    ax.set_ylabel(f"{curve['primary']} % on {curve['n_test']} test rows")
    ax.legend(fontsize=8, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)

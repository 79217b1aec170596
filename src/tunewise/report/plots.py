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


def ladder_chart(ladder: dict) -> str:
    """One bar per rung: the primary metric with its 95% CI as a whisker; the recommended rung in green."""
    rungs = ladder["rungs"]
    rec = ladder["recommendation"]["rung"]
    fig, ax = _figure(7, 0.5 + 0.55 * len(rungs))
    names = [r["name"] for r in rungs][::-1]
    vals = [100 * r["metrics"][r["primary"]] for r in rungs][::-1]
    cis = [_ci(r) for r in rungs][::-1]
    err = [[v - 100 * lo for v, (lo, _) in zip(vals, cis, strict=True)],
           [100 * hi - v for v, (_, hi) in zip(vals, cis, strict=True)]]
    colors = [RECOMMENDED if n == rec else OTHER for n in names]
    ax.barh(names, vals, xerr=err, color=colors, capsize=4, ecolor="#222")
    for y, v in enumerate(vals):
        ax.text(1, y, f"{v:.1f}", va="center", color="white", fontsize=9)
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"{ladder['primary']} % on {ladder['n_test']} test examples (95% CI)")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def quality_vs_cost(ladder: dict) -> str:
    """Quality against first-month cost (training + a month of requests), log scale."""
    fig, ax = _figure(7, 4)
    rec = ladder["recommendation"]["rung"]
    for r in ladder["rungs"]:
        x = max(r["cost"]["usd_first_month"], 1e-6)
        y = 100 * r["metrics"][r["primary"]]
        lo, hi = _ci(r)
        ax.errorbar([x], [y], yerr=[[y - 100 * lo], [100 * hi - y]], fmt="o", capsize=4,
                    color=RECOMMENDED if r["name"] == rec else OTHER)
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xscale("log")
    months = ladder["prices"]["requests_per_month"]
    ax.set_xlabel(f"USD, training + {months:,} requests (log scale)")
    ax.set_ylabel(f"{ladder['primary']} %")
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

"""The fine-tune break-even: the monthly request volume at which a fine-tuned model pays for itself.

A prompting rung (zero-shot, few-shot, RAG) costs nothing up front but sends long prompts on every
request; a fine-tuned rung pays once for training and then serves short prompts. From a ladder's
measured prompt tokens and latencies:

    cost per request   = prompt tokens × token price / 1000 + latency × serving GPU price / 3600 s
    one-off            = training seconds × training GPU price / 3600 s
    break-even / month = one-off / (amortisation months × (cost_prompting − cost_finetuned))

If the fine-tuned rung is not cheaper per request it never breaks even on cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PROMPTING = ("zero-shot", "few-shot", "rag")


@dataclass(frozen=True)
class Prices:
    """Defaults: one A10G (the catalogue's on-demand price) for training and serving, and a hosted
    small-model input price of $0.10 per million tokens. Change them in tunewise.yaml (`plan:`)."""

    gpu_hourly_usd: float = 1.01
    """Serving GPU, $ per hour: latency × this is the compute share of each request."""
    train_gpu_hourly_usd: float = 1.01
    """Training GPU, $ per hour: training seconds × this is the one-off cost of fine-tuning."""
    usd_per_1k_prompt_tokens: float = 0.0001
    """Price of 1,000 prompt tokens (a hosted endpoint's input price; 0 if you self-host)."""
    amortise_months: float = 1.0
    """Months over which the one-off training cost is recovered."""


def is_prompting(name: str) -> bool:
    return any(name == p or name.startswith(p + "-") for p in PROMPTING)


def cost_per_request(rung: dict, prices: Prices) -> float:
    tokens = float(rung.get("prompt_tokens_per_request") or 0.0)
    seconds = float(rung.get("ms_per_example") or 0.0) / 1000
    return tokens * prices.usd_per_1k_prompt_tokens / 1000 + seconds * prices.gpu_hourly_usd / 3600


def break_even(ladder: dict, prices: Prices | dict | None = None) -> dict:
    """Compare every fine-tuned rung of ``ladder`` (a ladder.json dict) with every prompting rung."""
    if prices is None:
        prices = Prices()
    elif isinstance(prices, dict):
        prices = Prices(**prices)
    rungs = ladder.get("rungs", [])
    prompting = [r for r in rungs if is_prompting(r["name"])]
    tuned = [r for r in rungs if not is_prompting(r["name"]) and float(r.get("train_seconds") or 0) > 0]

    def summary(r: dict) -> dict:
        return {"name": r["name"], "accuracy": r.get("metrics", {}).get("accuracy"),
                "prompt_tokens": r.get("prompt_tokens_per_request"), "ms_per_example": r.get("ms_per_example"),
                "usd_per_1k_requests": round(1000 * cost_per_request(r, prices), 6)}

    pairs = []
    for ft in tuned:
        one_off = float(ft["train_seconds"]) * prices.train_gpu_hourly_usd / 3600
        for pr in prompting:
            saving = cost_per_request(pr, prices) - cost_per_request(ft, prices)
            monthly = one_off / (prices.amortise_months * saving) if saving > 0 else None
            pairs.append({"finetuned": ft["name"], "prompting": pr["name"], "one_off_usd": round(one_off, 6),
                          "saving_per_1k_requests_usd": round(1000 * saving, 6),
                          "break_even_requests_per_month": None if monthly is None else round(monthly)})
    return {"prices": asdict(prices), "rungs": [summary(r) for r in prompting + tuned], "comparisons": pairs}


def render_break_even_md(result: dict) -> list[str]:
    """The break-even as a Markdown section (lines), for report.md."""
    p = result["prices"]
    lines = ["## Break-even: when does fine-tuning pay for itself?", ""]
    if not result["comparisons"]:
        return lines + ["No pair of a fine-tuned and a prompting rung in this ladder, so no break-even to show.", ""]
    lines += ["| rung | accuracy % | prompt tokens | ms / request | $ per 1,000 requests |", "|---|---|---|---|---|"]
    for r in result["rungs"]:
        acc = "–" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}"
        lines.append(f"| {r['name']} | {acc} | {r['prompt_tokens'] or 0:.0f} | {r['ms_per_example'] or 0:.1f} | "
                     f"{r['usd_per_1k_requests']:.4f} |")
    lines += ["", "| fine-tuned | vs prompting | one-off training $ | saving per 1,000 requests $ | "
              "break-even requests / month |", "|---|---|---|---|---|"]
    for c in result["comparisons"]:
        volume = "never (not cheaper per request)" if c["break_even_requests_per_month"] is None else (
            f"{c['break_even_requests_per_month']:,}")
        lines.append(f"| {c['finetuned']} | {c['prompting']} | {c['one_off_usd']:.4f} | "
                     f"{c['saving_per_1k_requests_usd']:.4f} | {volume} |")
    lines += ["", f"Prices: ${p['usd_per_1k_prompt_tokens']:g} per 1,000 prompt tokens, serving GPU "
              f"${p['gpu_hourly_usd']:g}/h × measured latency, training GPU ${p['train_gpu_hourly_usd']:g}/h × "
              f"measured training time, recovered over {p['amortise_months']:g} month(s). Latencies and "
              "training time were measured on this machine; on a GPU both shrink, and so does the one-off.", ""]
    return lines


def prices_from_plan(plan, gpus_path=None) -> Prices:
    """Prices from a tunewise.yaml `plan:` section (config.PlanConfig): the GPU's catalogue price unless overridden."""
    from tunewise.plan.estimate import find_gpu, load_gpus

    hourly = plan.gpu_hourly_usd
    if hourly is None:
        hourly = find_gpu(plan.gpu, load_gpus(gpus_path)).hourly_usd
    return Prices(gpu_hourly_usd=hourly, train_gpu_hourly_usd=hourly,
                  usd_per_1k_prompt_tokens=plan.usd_per_1k_prompt_tokens, amortise_months=plan.amortise_months)


def latest_ladder(project) -> dict:
    """The newest saved ladder.json of a project; PlanError when there is none."""
    import json
    from pathlib import Path

    from tunewise import workspace as ws
    from tunewise.plan.estimate import PlanError

    folder = ws.latest_dir(Path(project), "reports")
    if folder is None or not (folder / "ladder.json").exists():
        raise PlanError(f"{project}: no saved ladder to compute a break-even from "
                        f"(run `tunewise ladder {project}` first)")
    return json.loads((folder / "ladder.json").read_text(encoding="utf-8"))


def project_break_even(project, gpu: str | None = None) -> dict:
    """Break-even of a project's latest ladder, priced by its tunewise.yaml `plan:` section (or defaults)."""
    from pathlib import Path

    from tunewise.config import PlanConfig, config_path, load_config

    ladder = latest_ladder(project)
    plan = load_config(project).plan if config_path(Path(project)).exists() else PlanConfig()
    if gpu:
        plan = plan.model_copy(update={"gpu": gpu, "gpu_hourly_usd": None})
    return {"project": ladder.get("project"), **break_even(ladder, prices_from_plan(plan))}

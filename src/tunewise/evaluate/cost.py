"""Money from FLOPs and tokens: the one cost model behind the ladder report, its recommendation
and `tunewise estimate --break-even`.

The model is deliberately simple, so a reader can check it by hand. With the prices of the config's
``cost:`` section:

- a request costs its forward FLOPs on the serving machine, plus its prompt tokens at
  ``usd_per_1m_prompt_tokens`` (non-zero only for a hosted model billed per token). Forward FLOPs per
  token are 2 × the model's weights (embedding lookups excluded) + 4 × layers × width × the tokens it
  attends to (QKᵀ and AV), the standard transformer approximation (Kaplan et al. 2020). A request runs
  its own prompt tokens and then its answer tokens (each label's answer when scoring labels, the
  generated tokens otherwise); the prefix every request shares (system prompt, instruction, fixed
  few-shot examples) is computed once and served from the KV cache, as the ladder's scorer and any
  prefix-caching server do, so a request pays only for attending to it. Few-shot and RAG pay for
  their longer context and own prompt on every call; a fine-tuned model pays for its training once;
- a rung's training costs its training FLOPs once: FORWARD_BACKWARD (6) × weights × tokens trained on
  for full-weight training, FORWARD_BACKWARD_FROZEN (4) when the base is frozen (adapters: the
  backward pass still runs through every layer but computes no weight gradients), FORWARD (2) for a
  forward-only fit (frozen embeddings + logistic regression);
- FLOPs become seconds at one throughput per machine (``tunewise.evaluate.throughput``: measured once
  and cached, or ``cost.gflops``), and seconds become money at ``usd_per_hour``;
- the break-even is the number of requests after which a trained rung's cheaper requests have
  repaid its training, against a rung that needs no training; at ``requests_per_month`` it is
  reached after break-even / requests_per_month months.

Why FLOPs and not the seconds measured while scoring: measured seconds move with whatever else the
machine runs, so two rungs running the same model on the same tokens were priced 7x apart, and the
recommendation flipped between runs. With FLOPs, equal work costs exactly the same. The seconds are
still measured and reported beside the cost (training wall time; latency from a dedicated timing
pass, median and IQR), and the throughput's own spread is reported as the cost's spread.

What FLOPs leave out, and so the direction of the error: framework overheads, the lower efficiency of
the backward pass on a CPU, checkpointing, tokenization (the val evaluations during training are
counted). For a request of a 135M model on a CPU the FLOP figure is close to an idle machine's
latency; for a short training run it is a lower bound, well below the measured wall time, which the
report shows beside it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tunewise.config import CostConfig


def resolve_prices(prices: CostConfig | dict | None, gpus_path: Path | None = None) -> CostConfig:
    """Prices with every hourly figure explicit: ``gpu`` looked up in the catalogue unless
    ``usd_per_hour`` was set too, ``train_usd_per_hour`` defaulting to the serving price.

    A PlanError names an unknown GPU. Resolving resolved prices changes nothing."""
    from tunewise.plan.estimate import find_gpu, load_gpus

    if prices is None:
        prices = CostConfig()
    elif isinstance(prices, dict):
        prices = CostConfig.model_validate(prices)
    data = prices.model_dump()
    if prices.gpu and "usd_per_hour" not in prices.model_fields_set:
        data["usd_per_hour"] = find_gpu(prices.gpu, load_gpus(gpus_path)).hourly_usd
    if data["train_usd_per_hour"] is None:
        data["train_usd_per_hour"] = data["usd_per_hour"]
    return CostConfig.model_validate(data)


def rung_cost(train_seconds: float, ms_per_example: float, prompt_tokens_per_request: float,
              prices: CostConfig) -> dict:
    """Training, per-1,000-request and first-month cost of one rung; ``prices`` as resolve_prices gives."""
    train_hourly = prices.usd_per_hour if prices.train_usd_per_hour is None else prices.train_usd_per_hour
    train_usd = train_seconds * train_hourly / 3600
    per_1k = 1000 * (ms_per_example / 1000 * prices.usd_per_hour / 3600
                     + prompt_tokens_per_request * prices.usd_per_1m_prompt_tokens / 1e6)
    return {
        "train_usd": round(train_usd, 6),
        "usd_per_1k_requests": round(per_1k, 6),
        "usd_first_month": round(train_usd + per_1k * prices.requests_per_month / 1000, 6),
        "requests_per_month": prices.requests_per_month,
    }


FORWARD = 2
FORWARD_BACKWARD_FROZEN = 4
FORWARD_BACKWARD = 6


def forward_params(model) -> int:
    """Weights a token's forward pass multiplies by: every parameter except embedding lookups (an
    input embedding costs no FLOPs; a tied output head reusing it does, so that one counts)."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_weight = getattr(head, "weight", None)
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    lookups = {id(m.weight): m.weight.numel() for m in model.modules()
               if isinstance(m, torch.nn.Embedding) and m.weight is not head_weight}
    return total - sum(lookups.values())


def model_shape(model) -> tuple[int, int, int]:
    """(forward params, layers, width) of a transformers model: what ``forward_flops`` needs."""
    return forward_params(model), int(model.config.num_hidden_layers), int(model.config.hidden_size)


def forward_flops(shape: tuple[int, int, int], tokens: int, context: int = 0, causal: bool = True) -> float:
    """FLOPs of running ``tokens`` new tokens after ``context`` tokens already in the KV cache.

    Each token costs 2 × params, plus 4 × layers × width per position it attends to: the context, and
    the new tokens up to itself (causal) or all of them (an encoder)."""
    params, layers, width = shape
    attended = tokens * context + (tokens * (tokens + 1) / 2 if causal else tokens * tokens)
    return FORWARD * params * tokens + 4 * layers * width * attended


def rung_compute(cost, throughput: dict) -> dict:
    """FLOPs of a rung (a ``core.Cost``) and the seconds they take at ``throughput`` (machine_throughput's
    dict): what the rung is priced by."""
    per_request = cost.predict_flops / max(cost.predict_examples, 1)
    flops_per_second = throughput["gflops"] * 1e9
    return {
        "flops_per_request": per_request,
        "train_flops": cost.train_flops,
        "ms_per_request": round(1000 * per_request / flops_per_second, 6),
        "train_seconds": round(cost.train_flops / flops_per_second, 6),
    }


def cost_spread(compute: dict, prompt_tokens: float, prices: CostConfig, throughput: dict) -> list[float]:
    """$ per 1,000 requests at the throughput's upper and lower quartile: the spread of the priced figure."""
    def at(gflops: float) -> float:
        ms = 1000 * compute["flops_per_request"] / (gflops * 1e9)
        return rung_cost(0, ms, prompt_tokens, prices)["usd_per_1k_requests"]

    return [at(throughput["gflops_q3"]), at(throughput["gflops_q1"])]


def break_even_requests(trained: dict, reference: dict) -> int | None:
    """Requests after which ``trained`` (training + cheaper requests) costs less than ``reference``.

    Both dicts come from ``rung_cost``. None when the trained rung's requests are not cheaper, so
    its training never pays back; 0 when it costs nothing more to train than the reference.
    """
    extra_train = trained["train_usd"] - reference["train_usd"]
    saving_per_request = (reference["usd_per_1k_requests"] - trained["usd_per_1k_requests"]) / 1000
    if extra_train <= 0:
        return 0
    if saving_per_request <= 0:
        return None
    return math.ceil(extra_train / saving_per_request)


def _primary(r: dict) -> float | None:
    return r.get("metrics", {}).get(r.get("primary", "accuracy"))


def _priced(r: dict, gflops: float | None = None) -> tuple[float, float]:
    """(training seconds, ms per request) a rung is priced by: its FLOPs at the throughput the ladder
    ran with, or at ``gflops`` (``cost.gflops``) when set; ladders saved before FLOPs were counted
    carry only measured seconds."""
    c = r.get("compute")
    if c and gflops:
        return c["train_flops"] / (gflops * 1e9), 1000 * c["flops_per_request"] / (gflops * 1e9)
    if c:
        return float(c["train_seconds"]), float(c["ms_per_request"])
    return float(r.get("train_seconds") or 0), float(r.get("ms_per_example") or 0)


def break_even(ladder: dict, prices: CostConfig | dict | None = None) -> dict:
    """Every trained rung of ``ladder`` (a ladder.json dict) against every rung that needs no training,
    priced from the rungs' training and per-request compute and prompt tokens.

    ``prices`` None: the prices the ladder ran with (``ladder["prices"]``), so this reproduces the
    report. ``reference`` is the best untrained rung by the primary metric, the one the report's rung
    table and its recommendation compare against.
    """
    prices = resolve_prices(ladder.get("prices") if prices is None else prices)
    rungs = ladder.get("rungs", [])
    priced = {r["name"]: _priced(r, prices.gflops) for r in rungs}
    costs = {r["name"]: rung_cost(*priced[r["name"]], float(r.get("prompt_tokens_per_request") or 0), prices)
             for r in rungs}
    untrained = [r for r in rungs if not float(r.get("train_seconds") or 0) > 0]
    trained = [r for r in rungs if float(r.get("train_seconds") or 0) > 0]
    reference = max(untrained, key=lambda r: _primary(r) or 0.0)["name"] if untrained else None
    pairs = []
    for t in trained:
        for u in untrained:
            requests = break_even_requests(costs[t["name"]], costs[u["name"]])
            pairs.append({
                "trained": t["name"], "vs": u["name"],
                "one_off_usd": round(costs[t["name"]]["train_usd"] - costs[u["name"]]["train_usd"], 6),
                "saving_per_1k_requests_usd": round(costs[u["name"]]["usd_per_1k_requests"]
                                                    - costs[t["name"]]["usd_per_1k_requests"], 6),
                "break_even_requests": requests,
                "break_even_months": None if requests is None else round(requests / prices.requests_per_month, 4),
            })
    summary = [{"name": r["name"], "primary": r.get("primary", ladder.get("primary", "accuracy")),
                "value": _primary(r), "train_seconds": priced[r["name"]][0], "ms_per_example": priced[r["name"]][1],
                "prompt_tokens": float(r.get("prompt_tokens_per_request") or 0), **costs[r["name"]]}
               for r in untrained + trained]
    throughput = ({"gflops": prices.gflops, "gflops_q1": prices.gflops, "gflops_q3": prices.gflops,
                   "source": "cost.gflops"} if prices.gflops else ladder.get("throughput"))
    return {"prices": prices.model_dump(), "throughput": throughput, "reference": reference,
            "rungs": summary, "comparisons": pairs}


def add_break_even(results: list[dict], prices: CostConfig, throughput: dict | None = None) -> dict:
    """Price every rung and set each trained rung's ``break_even`` against the best untrained rung;
    return the full break-even (every trained × every untrained pair) for ladder.json."""
    result = break_even({"rungs": results, "throughput": throughput}, prices)
    costs = {r["name"]: r for r in result["rungs"]}
    for r in results:
        c = costs[r["name"]]
        r["cost"] = {k: c[k] for k in ("train_usd", "usd_per_1k_requests", "usd_first_month", "requests_per_month")}
        pair = next((p for p in result["comparisons"]
                     if p["trained"] == r["name"] and p["vs"] == result["reference"]), None)
        if pair:
            r["break_even"] = {"vs": pair["vs"], "requests": pair["break_even_requests"]}
    return result


def _money(x: float) -> str:
    return f"${x:,.2f}" if abs(x) >= 1 else f"${x:.4f}"


def _when(c: dict, per_month: int) -> str:
    if c["break_even_requests"] is None:
        return "never: its requests are not cheaper"
    if c["break_even_requests"] == 0:
        return "at once: it costs nothing more to train"
    months = c["break_even_months"]
    span = f"{months * 30.4:.1f} days" if months < 1 else f"{months:.1f} months"
    return f"after {c['break_even_requests']:,} requests ({span} at {per_month:,} requests a month)"


def break_even_sentences(result: dict) -> list[str]:
    """One plain sentence per trained rung, against the reference (the best untrained rung)."""
    per_month = result["prices"]["requests_per_month"]
    out = []
    for c in result["comparisons"]:
        if c["vs"] != result["reference"]:
            continue
        out.append(f"{c['trained']} repays its {_money(c['one_off_usd'])} of training against {c['vs']} "
                   f"{_when(c, per_month)}.")
    return out


def throughput_line(t: dict | None) -> str:
    """How FLOPs became seconds, with the measurement's spread; '' for ladders priced by measured seconds."""
    if not t:
        return ("Training time and latency were measured on the machine the ladder ran on, while it ran "
                "(a ladder saved before FLOPs were counted).")
    if t.get("source") == "cost.gflops":
        return f"FLOPs are priced at {t['gflops']:g} GFLOP/s (`cost.gflops`)."
    m = t.get("machine", {})
    return (f"FLOPs are priced at {t['gflops']:g} GFLOP/s (IQR {t['gflops_q1']:g}–{t['gflops_q3']:g} over "
            f"{t.get('samples', '?')} interleaved matmul rounds, timed in CPU time so that other processes "
            f"do not slow it), measured once on this machine ({m.get('cpu', '?')}, {m.get('threads', '?')} torch "
            f"threads) at {t.get('measured_at', '?')} and cached; on a faster machine both the requests and the "
            "training cost less.")


def prices_line(prices: dict, throughput: dict | None = None) -> str:
    p = prices
    train = "" if p["train_usd_per_hour"] == p["usd_per_hour"] else f", training machine ${p['train_usd_per_hour']:g}/h"
    gpu = f" ({p['gpu']}, catalogue price)" if p.get("gpu") else ""
    tokens = f", ${p['usd_per_1m_prompt_tokens']:g} per 1M prompt tokens" if p["usd_per_1m_prompt_tokens"] else ""
    return (f"Prices (`cost:` section): machine ${p['usd_per_hour']:g}/h{gpu}{train}{tokens}; "
            f"{p['requests_per_month']:,} requests a month. {throughput_line(throughput)}")


def render_break_even_md(result: dict) -> list[str]:
    """The break-even as a Markdown section (lines), for report.md and `tunewise estimate --break-even`."""
    lines = ["## Break-even: when does training pay for itself?", ""]
    if not result["comparisons"]:
        return lines + ["No trained rung and no untrained rung in the same ladder, so no break-even to show.", ""]
    lines += [f"- {s}" for s in break_even_sentences(result)] + [""]
    lines += ["| rung | quality % | prompt tokens | compute ms / request | train $ | $ per 1,000 requests |",
              "|---|---|---|---|---|---|"]
    for r in result["rungs"]:
        value = "–" if r["value"] is None else f"{100 * r['value']:.1f}"
        lines.append(f"| {r['name']} | {value} | {r['prompt_tokens']:.0f} | {r['ms_per_example']:.1f} | "
                     f"{r['train_usd']:.4f} | {r['usd_per_1k_requests']:.4f} |")
    lines += ["", "| trained | vs | one-off $ | saving per 1,000 requests $ | break-even requests | months |",
              "|---|---|---|---|---|---|"]
    for c in result["comparisons"]:
        volume = "never" if c["break_even_requests"] is None else f"{c['break_even_requests']:,}"
        months = "–" if c["break_even_months"] is None else f"{c['break_even_months']:.3g}"
        lines.append(f"| {c['trained']} | {c['vs']} | {c['one_off_usd']:.4f} | "
                     f"{c['saving_per_1k_requests_usd']:.4f} | {volume} | {months} |")
    return lines + ["", prices_line(result["prices"], result.get("throughput")), ""]


def latest_ladder(project: Path) -> dict:
    """The newest saved ladder.json of a project; ConfigError (exit 2, as `tunewise report`) when there is none."""
    from tunewise import workspace as ws
    from tunewise.config import ConfigError

    folder = ws.latest_dir(Path(project), "reports")
    if folder is None or not (folder / "ladder.json").exists():
        raise ConfigError(f"{project}: no saved ladder to compute a break-even from "
                          f"(run `tunewise ladder {project}` first)")
    return json.loads((folder / "ladder.json").read_text(encoding="utf-8"))


def project_break_even(project: Path, gpu: str | None = None) -> dict:
    """Break-even of a project's latest ladder, priced by its tunewise.yaml `cost:` section (the
    ladder's own prices when the project has no config). ``gpu``: price both machines as that
    catalogue GPU instead."""
    from tunewise.config import config_path, load_config

    ladder = latest_ladder(project)
    prices = (load_config(project).cost.model_dump(exclude_unset=True) if config_path(Path(project)).exists()
              else dict(ladder.get("prices") or {}))
    if gpu:
        prices = {k: v for k, v in prices.items() if k not in ("usd_per_hour", "train_usd_per_hour")} | {"gpu": gpu}
    return {"project": ladder.get("project"), **break_even(ladder, prices)}

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
- work becomes seconds on the machine priced (``priced_machine``). This CPU: every FLOP at its
  measured throughput (``tunewise.evaluate.throughput``: measured once and cached), or at
  ``cost.gflops``. A catalogue GPU (``cost.gpu``, tunewise/gpus.yaml) by the roofline: prefill, label
  scoring and training FLOPs at the stated utilisation (``mfu``) of its dense 16-bit peak, and each
  generated token at the slower of its FLOPs and the bytes it must read (every weight once, in 16-bit,
  plus the KV cache of the tokens before it: 2 × layers × KV width × 2 bytes per position) at the
  stated share of the memory bandwidth: one request decoding alone, as a low-traffic deployment
  serves it. The figures and their sources are in gpus.yaml and travel with every priced result;
- seconds become money at ``usd_per_hour`` (the GPU's catalogue price unless set);
- the break-even is the number of requests after which a trained rung's cheaper requests have
  repaid its training, against a rung that needs no training; at ``requests_per_month`` it is
  reached after break-even / requests_per_month months.

Why FLOPs and not the seconds measured while scoring: measured seconds move with whatever else the
machine runs, so two rungs running the same model on the same tokens were priced 7x apart, and the
recommendation flipped between runs. With FLOPs, equal work costs exactly the same. The seconds are
still measured and reported beside the cost (training wall time; latency from a dedicated timing
pass, median and IQR), and the throughput's own spread is reported as the cost's spread.

What FLOPs leave out, and so the direction of the error: framework overheads, the lower efficiency of
the backward pass on a CPU, checkpointing, tokenization, and attention during training (the ladder
does not keep each training sequence's length; under 10% of a 7-8B model's training FLOPs at 2k
tokens); the val evaluations during training are counted. For a request of a 135M model on a CPU the
FLOP figure is close to an idle machine's latency; for a short training run it is a lower bound, well
below the measured wall time, which the report shows beside it.

Re-pricing is free: a rung records its work (``rung_work``: FLOPs, decoded tokens, bytes read), never
its price, and every price is computed from that record when a ladder or a report is written, so a
change under ``cost:`` reuses every rung and ``tunewise report --set cost.gpu=…`` re-prices a saved
ladder. ``tunewise estimate`` turns a planned run's FLOPs into seconds on the same machines here.
"""

from __future__ import annotations

import math
from pathlib import Path

from tunewise.config import CostConfig
from tunewise.gpus import catalogue_path, find_gpu, load_gpus, load_utilisation


def resolve_prices(prices: CostConfig | dict | None, gpus_path: Path | None = None) -> CostConfig:
    """Prices with every hourly figure explicit: ``gpu`` looked up in the catalogue unless
    ``usd_per_hour`` was set too, ``train_usd_per_hour`` defaulting to the serving price.

    A PlanError names an unknown GPU. Resolving resolved prices changes nothing."""
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


def training_flops(params: float, tokens: float, passes: int) -> float:
    """FLOPs of training ``tokens`` through ``params`` weights at ``passes`` FLOPs per weight per token
    (FORWARD_BACKWARD, FORWARD_BACKWARD_FROZEN, FORWARD, +FORWARD for a recomputed or reference pass):
    the one formula the ladder records and `tunewise estimate` plans with."""
    return passes * params * tokens


def kv_bytes_per_position(model) -> int:
    """Bytes of KV cache one position holds in 16-bit: K and V for every layer, at the KV width (GQA
    models keep fewer KV heads than query heads)."""
    c = model.config
    heads = int(c.num_attention_heads)
    head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // heads)
    kv_heads = int(getattr(c, "num_key_value_heads", None) or heads)
    return 2 * int(c.num_hidden_layers) * kv_heads * head_dim * BYTES_16BIT


BYTES_16BIT = 2  # a GPU serves weights and KV cache in bf16/fp16: the bytes decoding reads are counted so


def decode_bytes(params: int, kv_per_position: int, tokens: int, context: int) -> float:
    """Bytes ``tokens`` generated one at a time after ``context`` prompt tokens read: every weight once per
    token in 16-bit, plus the KV cache of every position before it."""
    attended = tokens * context + tokens * (tokens - 1) / 2
    return BYTES_16BIT * params * tokens + kv_per_position * attended


def rung_work(cost) -> dict:
    """What a rung's price is computed from (a ``core.Cost``): FLOPs per request and of training, and per
    request the generated tokens with their FLOPs and the bytes they read. Recorded, never priced."""
    n = max(cost.predict_examples, 1)
    return {
        "flops_per_request": cost.predict_flops / n,
        "train_flops": cost.train_flops,
        "train_tokens": cost.train_tokens,
        "train_eval_tokens": cost.train_eval_tokens,
        "decode_tokens_per_request": cost.decode_tokens / n,
        "decode_flops_per_request": cost.decode_flops / n,
        "decode_bytes_per_request": cost.decode_bytes / n,
    }


def rung_compute(cost, throughput: dict) -> dict:
    """A rung's work (rung_work) with its seconds on this CPU at ``throughput`` (machine_throughput's
    dict): for callers that price on the spot instead of at report time (`tunewise curve`)."""
    work = rung_work(cost)
    train, request = work_seconds(work, {"kind": "cpu", "flops_per_second": throughput["gflops"] * 1e9})
    return {**work, "train_seconds": round(train, 6), "ms_per_request": round(1000 * request, 6)}


def gpu_machine(gpu, gpus_path: Path | None = None) -> dict:
    """A catalogue GPU (tunewise.gpus.Gpu) as the roofline prices it: sustained FLOP/s and bytes/s at the
    catalogue's stated utilisation, with the sources of every figure. `tunewise estimate` uses it too."""
    u = load_utilisation(gpus_path)
    return {"kind": "gpu", "name": gpu.name, "peak_tflops": gpu.tflops, "mfu": u.mfu,
            "flops_per_second": gpu.tflops * 1e12 * u.mfu, "memory_gbps": gpu.memory_gbps,
            "bandwidth_share": u.bandwidth_share, "bytes_per_second": gpu.memory_gbps * 1e9 * u.bandwidth_share,
            "figures_source": gpu.source, "mfu_source": u.mfu_source, "bandwidth_share_source": u.bandwidth_share_source,
            "catalogue": str(gpus_path or catalogue_path() or "tunewise/gpus.yaml")}


def priced_machine(prices: CostConfig, throughput: dict | None = None, gpus_path: Path | None = None) -> dict:
    """The machine ``prices`` (as resolve_prices gives) price work on: how its FLOP/s and bytes/s are
    obtained, its hourly price, and where each figure comes from.

    ``cost.gpu``: the catalogue GPU by the roofline; else ``cost.gflops``; else this CPU's measured
    ``throughput``; with neither, the seconds measured while the ladder ran (old ladders)."""
    hourly = {"usd_per_hour": prices.usd_per_hour, "train_usd_per_hour": prices.train_usd_per_hour}
    if prices.gpu:
        gpu = find_gpu(prices.gpu, load_gpus(gpus_path))
        source = ("catalogue price" if prices.usd_per_hour == gpu.hourly_usd
                  else f"cost.usd_per_hour (the catalogue's is ${gpu.hourly_usd:g}/h)")
        return {**gpu_machine(gpu, gpus_path), **hourly, "hourly_source": source}
    if prices.gflops:
        return {"kind": "cpu", "name": f"a machine of {prices.gflops:g} GFLOP/s", "gflops": prices.gflops,
                "flops_per_second": prices.gflops * 1e9, **hourly, "hourly_source": "cost.usd_per_hour",
                "figures_source": "cost.gflops"}
    if throughput:
        m = throughput.get("machine", {})
        return {"kind": "cpu", "name": f"this CPU ({m.get('cpu', '?')}, {m.get('threads', '?')} torch threads)",
                "gflops": throughput["gflops"], "gflops_q1": throughput["gflops_q1"],
                "gflops_q3": throughput["gflops_q3"], "flops_per_second": throughput["gflops"] * 1e9, **hourly,
                "hourly_source": "cost.usd_per_hour",
                "figures_source": f"measured {throughput.get('measured_at', '?')}, cached in {throughput.get('source')}"}
    return {"kind": "measured", "name": "the machine the ladder ran on (seconds measured while it ran)", **hourly,
            "hourly_source": "cost.usd_per_hour", "figures_source": "wall time measured while scoring and training"}


def work_seconds(work: dict, machine: dict, flops_per_second: float | None = None) -> tuple[float, float]:
    """(training seconds, seconds per request) of recorded ``work`` (rung_work's dict) on ``machine``
    (priced_machine's dict); ``flops_per_second`` overrides the machine's (the spread of a CPU's)."""
    fps = flops_per_second or machine["flops_per_second"]
    decode = work.get("decode_flops_per_request", 0.0)
    per_request = (work["flops_per_request"] - decode) / fps
    if machine.get("bytes_per_second"):  # a GPU: decoding waits for memory unless its FLOPs take longer
        per_request += max(decode / fps, work.get("decode_bytes_per_request", 0.0) / machine["bytes_per_second"])
    else:
        per_request += decode / fps
    return work["train_flops"] / fps, per_request


def priced_seconds(r: dict, machine: dict) -> tuple[float, float]:
    """(training seconds, ms per request) a rung result is priced by: its recorded work on ``machine``.
    With no machine figures (a ladder dict without throughput), the seconds its FLOPs were priced at
    when it ran; ladders saved before FLOPs were counted carry only measured seconds, used as such."""
    work = r.get("compute")
    if work and machine["kind"] != "measured":
        train, request = work_seconds(work, machine)
        return train, 1000 * request
    if work and "ms_per_request" in work:
        return float(work["train_seconds"]), float(work["ms_per_request"])
    return float(r.get("train_seconds") or 0), float(r.get("ms_per_example") or 0)


def cost_spread(r: dict, machine: dict, prices: CostConfig) -> list[float] | None:
    """$ per 1,000 requests at this CPU's measured throughput's upper and lower quartile: the spread of
    the priced figure. None where no spread was measured (a catalogue GPU, cost.gflops)."""
    work = r.get("compute")
    if not work or "gflops_q1" not in machine:
        return None
    prompt = float(r.get("prompt_tokens_per_request") or 0)

    def at(gflops: float) -> float:
        return rung_cost(0, 1000 * work_seconds(work, machine, gflops * 1e9)[1], prompt, prices)["usd_per_1k_requests"]

    return [at(machine["gflops_q3"]), at(machine["gflops_q1"])]


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


def break_even(ladder: dict, prices: CostConfig | dict | None = None) -> dict:
    """Every trained rung of ``ladder`` (a ladder.json dict) against every rung that needs no training,
    priced from the rungs' recorded work and prompt tokens on the machine ``prices`` name.

    ``prices`` None: the prices the ladder ran with (``ladder["prices"]``), so this reproduces the
    report. ``reference`` is the best untrained rung by the primary metric, the one the report's rung
    table and its recommendation compare against.
    """
    prices = resolve_prices(ladder.get("prices") if prices is None else prices)
    machine = priced_machine(prices, ladder.get("throughput"))
    rungs = ladder.get("rungs", [])
    priced = {r["name"]: priced_seconds(r, machine) for r in rungs}
    costs = {r["name"]: rung_cost(*priced[r["name"]], float(r.get("prompt_tokens_per_request") or 0), prices)
             for r in rungs}
    untrained = [r for r in rungs if not float(r.get("train_seconds") or 0) > 0]
    trained = [r for r in rungs if float(r.get("train_seconds") or 0) > 0]
    from tunewise.evaluate.score import orientation

    sign = orientation(ladder.get("primary") or (rungs[0].get("primary", "accuracy") if rungs else "accuracy"))
    # The best untrained rung (higher or, for perplexity, lower); one not measured never is it.
    reference = max(untrained, key=lambda r: sign * _primary(r) if _primary(r) is not None else -math.inf
                    )["name"] if untrained else None
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
                "prompt_tokens": float(r.get("prompt_tokens_per_request") or 0), **costs[r["name"]],
                "spread_per_1k": cost_spread(r, machine, prices)}
               for r in untrained + trained]
    return {"prices": prices.model_dump(), "machine": machine, "throughput": ladder.get("throughput"),
            "reference": reference, "rungs": summary, "comparisons": pairs}


def add_break_even(results: list[dict], prices: CostConfig, throughput: dict | None = None) -> dict:
    """Price every rung from its recorded work (``cost``, ``cost_spread_per_1k``, ``priced``) and set each
    trained rung's ``break_even`` against the best untrained rung; return the full break-even (every
    trained × every untrained pair, and the machine priced) for ladder.json."""
    result = break_even({"rungs": results, "throughput": throughput}, prices)
    costs = {r["name"]: r for r in result["rungs"]}
    for r in results:
        c = costs[r["name"]]
        r["cost"] = {k: c[k] for k in ("train_usd", "usd_per_1k_requests", "usd_first_month", "requests_per_month")}
        r["cost_spread_per_1k"] = c["spread_per_1k"]
        r["priced"] = {"machine": result["machine"]["name"], "train_seconds": round(c["train_seconds"], 6),
                       "ms_per_request": round(c["ms_per_example"], 6)}
        r.pop("break_even", None)  # a reused rung's old one was priced at other prices
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


def machine_line(m: dict) -> str:
    """What the work was priced on, its figures and where they come from, in one or two sentences."""
    if m["kind"] == "gpu":
        return (f"Work is priced on one {m['name']} (GPU catalogue {m['catalogue']}): prefill, scoring and training "
                f"FLOPs at {m['mfu']:.0%} of its {m['peak_tflops']:g} TFLOP/s dense 16-bit peak, each generated "
                f"token at the slower of its FLOPs and the bytes it reads (16-bit weights + KV cache) at "
                f"{m['bandwidth_share']:.0%} of its {m['memory_gbps']:g} GB/s; peaks and bandwidth from "
                f"{m['figures_source']}; utilisation: {m['mfu_source']} Bandwidth share: {m['bandwidth_share_source']}")
    if m["kind"] == "measured":
        return ("Training time and latency were measured on the machine the ladder ran on, while it ran "
                "(a ladder saved before FLOPs were counted).")
    if m["figures_source"] == "cost.gflops":
        return f"FLOPs are priced at {m['gflops']:g} GFLOP/s (`cost.gflops`)."
    return (f"FLOPs are priced on {m['name']} at {m['gflops']:g} GFLOP/s (IQR {m['gflops_q1']:g}–{m['gflops_q3']:g} "
            f"over interleaved matmul rounds, timed in CPU time so that other processes do not slow it), "
            f"{m['figures_source']}; on a faster machine both the requests and the training cost less "
            "(`cost.gpu` prices a GPU).")


def prices_line(result: dict) -> str:
    """The prices and the machine of a break-even result (break_even's dict), with their sources."""
    p = result["prices"]
    m = result.get("machine") or priced_machine(resolve_prices(p), result.get("throughput"))
    train = "" if p["train_usd_per_hour"] == p["usd_per_hour"] else f", training machine ${p['train_usd_per_hour']:g}/h"
    tokens = f", ${p['usd_per_1m_prompt_tokens']:g} per 1M prompt tokens" if p["usd_per_1m_prompt_tokens"] else ""
    return (f"Prices (`cost:` section): {m['name']} at ${p['usd_per_hour']:g}/h ({m['hourly_source']}){train}{tokens}; "
            f"{p['requests_per_month']:,} requests a month. {machine_line(m)}")


def render_break_even_md(result: dict) -> list[str]:
    """The break-even as a Markdown section (lines), for report.md and `tunewise estimate --break-even`."""
    lines = ["## Break-even: when does training pay for itself?", ""]
    if not result["comparisons"]:
        return lines + ["No trained rung and no untrained rung in the same ladder, so no break-even to show.", "",
                        prices_line(result), ""]
    lines += [f"- {s}" for s in break_even_sentences(result)] + [""]
    from tunewise.evaluate.score import PLAIN

    plain = bool(result["rungs"]) and result["rungs"][0].get("primary") in PLAIN  # perplexity: as it is
    quality = result["rungs"][0]["primary"] if plain else "quality %"
    lines += [f"| rung | {quality} | prompt tokens | compute ms / request | train $ | $ per 1,000 requests |",
              "|---|---|---|---|---|---|"]
    for r in result["rungs"]:
        value = "–" if r["value"] is None else f"{r['value']:.2f}" if plain else f"{100 * r['value']:.1f}"
        lines.append(f"| {r['name']} | {value} | {r['prompt_tokens']:.0f} | {r['ms_per_example']:.1f} | "
                     f"{r['train_usd']:.4f} | {r['usd_per_1k_requests']:.4f} |")
    lines += ["", "| trained | vs | one-off $ | saving per 1,000 requests $ | break-even requests | months |",
              "|---|---|---|---|---|---|"]
    for c in result["comparisons"]:
        volume = "never" if c["break_even_requests"] is None else f"{c['break_even_requests']:,}"
        months = "–" if c["break_even_months"] is None else f"{c['break_even_months']:.3g}"
        lines.append(f"| {c['trained']} | {c['vs']} | {c['one_off_usd']:.4f} | "
                     f"{c['saving_per_1k_requests_usd']:.4f} | {volume} | {months} |")
    return lines + ["", prices_line(result), ""]


def project_break_even(project: Path, ladder: dict, gpu: str | None = None) -> dict:
    """Break-even of a project's ``ladder`` (the one tunewise.locate picks), priced by its tunewise.yaml
    `cost:` section (the ladder's own prices when the project has no config). ``gpu``: price both
    machines as that catalogue GPU instead."""
    from tunewise.config import config_path, load_config

    prices = (load_config(project).cost.model_dump(exclude_unset=True) if config_path(Path(project)).exists()
              else dict(ladder.get("prices") or {}))
    if gpu:
        prices = {k: v for k, v in prices.items() if k not in ("usd_per_hour", "train_usd_per_hour")} | {"gpu": gpu}
    return {"project": ladder.get("project"), **break_even(ladder, prices)}

"""The cost model's GPU seconds against published throughput measurements of well-known setups.

Each prediction runs through the functions the ladder, the report and `tunewise estimate` price with
(tunewise.evaluate.cost: training FLOPs, forward FLOPs, decode bytes, the catalogue GPU's roofline;
tunewise.plan.estimate.flops_per_token), with the setup each source states. Nothing here is fitted:
the utilisation figures are the catalogue's (tunewise/gpus.yaml).

    PYTHONPATH=src python bench/cost_vs_published.py --out bench/results/cost_vs_published.json
"""

from __future__ import annotations

import argparse
import json

from tunewise.evaluate.cost import (
    FORWARD,
    FORWARD_BACKWARD,
    decode_bytes,
    forward_flops,
    gpu_machine,
    training_flops,
    work_seconds,
)
from tunewise.families import family
from tunewise.gpus import load_gpus
from tunewise.plan.estimate import Setup, flops_per_token

TORCHTUNE = ("torchtune README, 'Memory and training speed' (pytorch/torchtune README.md at commit 0031bfb0): "
             "batch 2, packed to 2048 tokens, torch.compile on, bf16; single-device configs with activation "
             "checkpointing on; tokens/s measured over one epoch")
GPT_FAST = ("gpt-fast README, 'Benchmarks' (pytorch-labs/gpt-fast README.md at commit 0f925b5d): A100-80GB "
            "power-limited to 330 W, batch 1, 5-token prompt, bf16 'Base'")
LLM_FOUNDRY = ("llm-foundry scripts/train/benchmarking/README.md (mosaicml/llm-foundry at commit 061f2c7c): MPT-7B "
               "(6,658,859,008 parameters, tied embeddings) pre-training at 2,048 tokens on 8 GPUs (FSDP), "
               "throughput per GPU")
TRT_LLM = ("TensorRT-LLM docs/source/performance.md (NVIDIA/TensorRT-LLM at commit 138f96d4), 'Low Latency', "
           "TensorRT-LLM v0.5: A100 FP16, batch 1, first-token latency")

# (model, method, gpu, published tokens/s)
TRAINING = [("llama-3.1-8b", "lora", "RTX-4090", 3083), ("llama-3.1-8b", "lora", "RTX-A6000", 4699),
            ("llama-3.1-8b", "full", "RTX-4090", 1650), ("llama-3.1-8b", "full", "RTX-A6000", 2579)]
# (gpu, activation checkpointing, published tokens/s per GPU) for MPT-7B full training.
MPT_7B = 6_658_859_008
FOUNDRY = [("H100-80GB", False, 10643), ("A100-80GB", False, 4641), ("A100-40GB", True, 3679)]
# (model, gpu, published generated tokens/s at batch 1, prompt tokens)
DECODE = [("llama-2-7b", "A100-80GB", 104.9, 5)]
# (model, gpu, prompt tokens, published first-token ms); LLaMA 7B has Llama-2-7B's shape.
PREFILL = [("llama-2-7b", "A100-80GB", 128, 16), ("llama-2-7b", "A100-80GB", 2048, 133)]


def shape(name: str) -> tuple[int, int, int]:
    """(weights a token multiplies by, layers, width), as tunewise.evaluate.cost.model_shape counts them."""
    a = family(name)
    return a.layer_linear_params() + a.vocab * a.hidden, a.layers, a.hidden


def kv_per_position(name: str) -> int:
    a = family(name)
    return 2 * a.layers * a.kv_width * 2


def training_rows(gpus: dict) -> list[dict]:
    rows = []
    for model, method, gpu, published in TRAINING:
        machine = gpu_machine(gpus[gpu])
        per_token = flops_per_token(family(model), Setup(method, 2048, 2), checkpointing=True)
        seconds, _ = work_seconds({"flops_per_request": 0.0, "train_flops": per_token}, machine)
        rows.append({"kind": "training (checkpointing)", "model": model, "method": method, "gpu": gpu,
                     "source": TORCHTUNE, "published_tokens_per_s": published,
                     "predicted_tokens_per_s": round(1 / seconds, 1),
                     # The share of the dense 16-bit peak the published rate implies at these FLOPs per token.
                     "published_share_of_peak": round(published * per_token / (gpus[gpu].tflops * 1e12), 2)})
    for gpu, checkpointing, published in FOUNDRY:
        passes = FORWARD_BACKWARD + (FORWARD if checkpointing else 0)
        seconds, _ = work_seconds({"flops_per_request": 0.0, "train_flops": training_flops(MPT_7B, 1, passes)},
                                  gpu_machine(gpus[gpu]))
        rows.append({"kind": "training" + (" (checkpointing)" if checkpointing else ""), "model": "mpt-7b",
                     "method": "full", "gpu": gpu, "source": LLM_FOUNDRY, "published_tokens_per_s": published,
                     "predicted_tokens_per_s": round(1 / seconds, 1)})
    return rows


def decode_rows(gpus: dict) -> list[dict]:
    rows = []
    for model, gpu, published, prompt in DECODE:
        s, tokens = shape(model), 256  # a steady-state rate: the prompt is tiny, the KV cache grows slowly
        work = {"flops_per_request": forward_flops(s, tokens, prompt), "train_flops": 0.0,
                "decode_flops_per_request": forward_flops(s, tokens, prompt),
                "decode_bytes_per_request": decode_bytes(s[0], kv_per_position(model), tokens, prompt)}
        _, seconds = work_seconds(work, gpu_machine(gpus[gpu]))
        rows.append({"kind": "decode, batch 1", "model": model, "gpu": gpu, "source": GPT_FAST,
                     "published_tokens_per_s": published, "predicted_tokens_per_s": round(tokens / seconds, 1)})
    return rows


def prefill_rows(gpus: dict) -> list[dict]:
    rows = []
    for model, gpu, prompt, published_ms in PREFILL:
        work = {"flops_per_request": forward_flops(shape(model), prompt), "train_flops": 0.0}
        _, seconds = work_seconds(work, gpu_machine(gpus[gpu]))
        rows.append({"kind": f"prefill {prompt} tokens, batch 1", "model": model, "gpu": gpu, "source": TRT_LLM,
                     "published_ms": published_ms, "predicted_ms": round(1000 * seconds, 1)})
    return rows


def demo_rows(gpus: dict) -> list[dict]:
    """The demo's zero-shot request (SmolLM2-135M, 122 prompt tokens, labels scored: no decoding) and a
    generated answer of 64 tokens, priced on this CPU at its cached calibration and on two GPUs."""
    from tunewise.config import CostConfig
    from tunewise.evaluate.cost import priced_machine, resolve_prices, rung_cost
    from tunewise.evaluate.throughput import machine_throughput

    s, kv = shape("smollm2-135m"), kv_per_position("smollm2-135m")
    rows = []
    for label, generated in (("zero-shot, 122 prompt tokens", 0), ("122 prompt + 64 generated tokens", 64)):
        decode = forward_flops(s, generated, 122)
        work = {"flops_per_request": forward_flops(s, 122) + decode, "train_flops": 0.0,
                "decode_flops_per_request": decode, "decode_bytes_per_request": decode_bytes(s[0], kv, generated, 122)}
        for gpu in (None, "L4", "H100-80GB"):
            prices = resolve_prices(CostConfig(gpu=gpu) if gpu else CostConfig(usd_per_hour=0.10))
            machine = priced_machine(prices, None if gpu else machine_throughput())
            ms = 1000 * work_seconds(work, machine)[1]
            rows.append({"request": label, "machine": machine["name"], "ms": round(ms, 3),
                         "usd_per_1k": rung_cost(0, ms, 0, prices)["usd_per_1k_requests"],
                         "usd_per_hour": prices.usd_per_hour})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    gpus = load_gpus()
    rows = training_rows(gpus) + decode_rows(gpus) + prefill_rows(gpus)
    for r in rows:
        if "published_ms" in r:
            r["predicted_over_published"] = round(r["predicted_ms"] / r["published_ms"], 2)  # >1: model slower
        else:
            r["predicted_over_published"] = round(r["published_tokens_per_s"] / r["predicted_tokens_per_s"], 2)
        r["within_2x"] = 0.5 <= r["predicted_over_published"] <= 2.0
        print(f"{r['kind']:<32} {r['model']:<13} {r.get('method', ''):<5} {r['gpu']:<10} "
              f"published {r.get('published_tokens_per_s', r.get('published_ms'))!s:>7} "
              f"predicted {r.get('predicted_tokens_per_s', r.get('predicted_ms'))!s:>7} "
              f"time ratio {r['predicted_over_published']:.2f} {'ok' if r['within_2x'] else 'OUTSIDE 2x'}")
    demo = demo_rows(gpus)
    for d in demo:
        print(f"demo {d['request']:<34} {d['machine']:<45} {d['ms']:>9.3f} ms  ${d['usd_per_1k']:.6f} / 1k requests")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "demo": demo}, f, indent=2)


if __name__ == "__main__":
    main()

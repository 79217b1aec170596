"""Training throughput: a plain TRL SFTTrainer vs tunewise, same model, data, batch, steps and threads.

Both sides LoRA-train the bundled SmolLM2-135M-Instruct on the same BBC News examples, rendered with
the same chat-template prompt and the same answer (label + EOS), loss on the answer only. Inputs are
cut to a seeded, varying number of words so lengths vary (variable-length data). Each side runs in
its own process (peak RSS is that process's), one after the other, with the same torch threads.

Reported per side: real (non-pad) training tokens per second over the optimizer steps, peak RSS,
and the val loss after training (answer tokens, the same function for every side).

    PYTHONPATH=src python bench/train_vs_trl.py --examples 64 --steps 8 --batch 8 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIDES = ("trl", "trl-packed", "tunewise-equal", "tunewise-sorted", "tunewise-packed")
EXTRA_SIDES = ("tunewise-dense", "trl-random", "tunewise-bf16")  # attribution, noise floor, bf16: run with --sides
DESCRIBE = {
    "trl": "TRL SFTTrainer: padded batches in a fixed (pre-shuffled) order, completion-only loss",
    "trl-random": "TRL SFTTrainer with its default shuffled order: how far example order alone moves val loss",
    "trl-packed": "TRL SFTTrainer with its own padding_free packing, TRL's order, completion-only loss",
    "tunewise-bf16": "tunewise-sorted with train.precision: bf16 (autocast; fp32 master weights)",
    "tunewise-equal": "tunewise: the same padded batches in the same order as TRL, sparse LM head",
    "tunewise-dense": "tunewise-equal with train.sparse_logits off: every position's logits, as a plain Trainer",
    "tunewise-sorted": "tunewise default: length-grouped batches, sparse LM head",
    "tunewise-packed": "tunewise padding_free: TRL's batches in TRL's order, each packed into one row, sparse LM head",
}
TASK = {
    "type": "classification", "input_field": "text", "target_field": "label",
    "labels": ["business", "entertainment", "politics", "sports", "tech"],
    "instruction": "Classify this BBC news article by its topic. Answer with one word: business, "
                   "entertainment, politics, sports or tech.",
}


def records(n: int, seed: int, n_val: int = 16):
    """``n`` train and ``n_val`` val BBC articles in a seeded order, each cut to a seeded 8–96 words."""
    from tunewise.core import Record
    from tunewise.examples import bbc_rows

    rng = random.Random(seed)
    rows = rng.sample(bbc_rows(), n + n_val)
    out = []
    for i, r in enumerate(rows):
        words = r["text"].split()[: rng.randint(8, 96)]
        out.append(Record(id=f"bbc-{i}", input=" ".join(words), target=r["label"]))
    return out[:n], out[n:]


def project_config(args, side: str):
    from tunewise.config import ProjectConfig

    return ProjectConfig.model_validate({
        "name": "bench", "task": TASK, "data": {"files": ["-"]}, "model": {"base": "smollm2-135m-instruct"},
        "train": {
            "method": "lora", "max_steps": args.steps, "batch_size": args.batch, "learning_rate": 5e-4,
            "lr_scheduler": "linear", "max_length": 512, "eval_steps": args.steps, "seed": args.seed,
            "max_val_examples": args.val, "tensorboard": False,
            # equal and packed: the very batches TRL sees (sequential over the same pre-shuffled rows).
            "sampling": "group_by_length" if side in ("tunewise-sorted", "tunewise-bf16") else "sequential",
            "precision": "bf16" if side == "tunewise-bf16" else "fp32",
            "padding_free": side == "tunewise-packed", "sparse_logits": side != "tunewise-dense",
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
        },
    })


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Time inside optimizer steps only (forward, backward, update): the same window for every side."""

        seconds = 0.0

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.seconds += time.perf_counter() - self.t0

    return StepTimer()


def val_loss(model, tokenizer, config, val) -> float:
    """Mean answer-token cross-entropy on val, the same function for every side."""
    import torch

    from tunewise.models.chat import PromptBuilder
    from tunewise.train.sft import PadCollator, tokenize_examples

    rows = tokenize_examples(val, PromptBuilder(config.task, tokenizer), 512)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), 8):
            batch = PadCollator(tokenizer.pad_token_id)(rows[i:i + 8])
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * n
            count += n
    return total / count


def run_trl(args, side, model, tokenizer, train, timer):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tunewise.models.chat import PromptBuilder

    config = project_config(args, "trl")
    b = PromptBuilder(config.task, tokenizer)
    data = Dataset.from_list([{"prompt": b.prompt(r.input), "completion": b.answer(r.target)} for r in train])
    sft = SFTConfig(
        output_dir=str(Path(args.work) / side), per_device_train_batch_size=args.batch, max_steps=args.steps,
        learning_rate=5e-4, lr_scheduler_type="linear", warmup_steps=0, seed=args.seed,
        # TRL refuses max_length with padding_free unless it packs; the inputs (<= 96 words) never reach 512.
        max_length=None if side == "trl-packed" else 512,
        packing=False, padding_free=side == "trl-packed", completion_only_loss=True, bf16=False, fp16=False,
        gradient_checkpointing=False, activation_checkpointing=False, use_cpu=True, report_to=[],
        save_strategy="no", eval_strategy="no", logging_steps=args.steps, disable_tqdm=True,
        dataloader_num_workers=0, train_sampling_strategy="random" if side == "trl-random" else "sequential",
    )
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=sft, train_dataset=data, processing_class=tokenizer, peft_config=lora,
                         callbacks=[timer])
    seen = {"tokens": 0}
    collate = trainer.data_collator

    def counting(rows):
        batch = collate(rows)
        mask = batch.get("attention_mask")
        seen["tokens"] += int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        return batch

    trainer.data_collator = counting
    trainer.train()
    return trainer.model, seen["tokens"], config


def run_tunewise(args, side, model, tokenizer, train, val, timer):
    import tunewise.train.callbacks as cb
    from tunewise.train.sft import train_adapter

    config = project_config(args, side)
    real = cb.tracking_callbacks
    cb.tracking_callbacks = lambda *a, **k: (lambda cbs, h: ([*cbs, timer], h))(*real(*a, **k))
    result = train_adapter(model, tokenizer, config, train, val, Path(args.work) / side)
    cb.tracking_callbacks = real
    # Tokens actually run: a batch's shared prefix is computed once (train.shared_prefix).
    return result.model, result.tokens, config, result.tokens - result.shared_tokens


def probe(args) -> dict:
    """The cost model's matmul probe (tunewise.evaluate.throughput.calibrate) in fp32 and bf16, at the
    bench's thread count, in its own process like every side: what a share of the machine is taken of."""
    import torch

    from tunewise.evaluate.throughput import calibrate

    torch.set_num_threads(args.threads)
    return {"side": "probe", **{f"{d}_gflops": calibrate(dtype=d)["gflops"] for d in ("float32", "bfloat16")}}


def one_side(args) -> dict:
    import torch

    if args.side == "probe":
        return probe(args)

    from tunewise.assets import offline
    from tunewise.models.load import load

    offline()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, val = records(args.examples, args.seed, args.val)
    model, tokenizer, _ = load("smollm2-135m-instruct")
    from tunewise.evaluate.cost import FORWARD_BACKWARD_FROZEN, model_shape

    params = model_shape(model)[0]  # counted before LoRA wraps the model, as the ladder counts it
    timer = step_timer()
    start = time.perf_counter()
    if args.side.startswith("trl"):
        model, tokens, config = run_trl(args, args.side, model, tokenizer, train, timer)
        computed = tokens
    else:
        model, tokens, config, computed = run_tunewise(args, args.side, model, tokenizer, train, val, timer)
    wall = time.perf_counter() - start
    # Work done as the cost model counts it (4 x params per token run: LoRA's frozen base), over the
    # tokens actually computed, so a shared prefix run once is not counted as work done per row.
    gflops = FORWARD_BACKWARD_FROZEN * params * computed / timer.seconds / 1e9
    return {
        "side": args.side, "what": DESCRIBE[args.side], "tokens": tokens, "step_seconds": round(timer.seconds, 2),
        "tokens_per_second": round(tokens / timer.seconds, 1), "wall_seconds": round(wall, 1),
        "computed_tokens": computed,
        "train_gflops_per_second": round(gflops, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "val_loss": round(val_loss(model, tokenizer, config, val), 4),
    }


def run_side(args, side: str, seed: int) -> dict:
    """One side in a fresh process, with the thread count pinned for torch and OpenMP alike."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, __file__, *sys.argv[1:], "--side", side, "--seed", str(seed)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(results: list[dict], sides: list[str]) -> list[dict]:
    """Per side: median tokens/s over every run and its range; the median of the per-round ratios to
    TRL; the val loss per seed and its mean paired difference to TRL's on the same seed.

    Ratios are taken within a round (the sides of one round run back to back on the same data), so
    slow drift of the machine's speed between rounds cancels out of them."""
    def same_round(a: dict, b: dict) -> bool:
        return a["seed"] == b["seed"] and a["repeat"] == b["repeat"]

    def ratios_to(peer: str, mine: list[dict], key: str = "tokens_per_second") -> list[float]:
        found = [next((t for t in results if t["side"] == peer and same_round(t, r)), None) for r in mine]
        return [r[key] / t[key] for r, t in zip(mine, found, strict=True) if t]

    def median_or_none(xs: list[float]) -> float | None:
        return round(statistics.median(xs), 3) if xs else None

    probes = [r for r in results if r["side"] == "probe"]
    rows = []
    for side in [s for s in sides if s != "probe"]:
        mine = [r for r in results if r["side"] == side]
        ratios = ratios_to("trl", mine)
        # The share of the machine: useful training GFLOP/s over the same round's matmul probe, in the
        # precision the side computes in.
        dtype = "bfloat16" if side == "tunewise-bf16" else "float32"
        shares = [r["train_gflops_per_second"] / p[f"{dtype}_gflops"] for r in mine for p in probes
                  if same_round(p, r)]
        loss = {r["seed"]: r["val_loss"] for r in mine}
        trl_loss = {r["seed"]: r["val_loss"] for r in results if r["side"] == "trl"}
        diffs = [loss[k] - trl_loss[k] for k in loss if k in trl_loss]
        rate = [r["tokens_per_second"] for r in mine]
        rows.append({
            "side": side, "runs": len(mine), "tokens": sorted({r["tokens"] for r in mine}),
            "tokens_per_second_median": round(statistics.median(rate), 1),
            "tokens_per_second_min": min(rate), "tokens_per_second_max": max(rate),
            "x_trl_packed_median": median_or_none(ratios_to("trl-packed", mine)),
            "rss_x_trl_median": median_or_none(ratios_to("trl", mine, "peak_rss_mib")),
            "rss_x_trl_packed_median": median_or_none(ratios_to("trl-packed", mine, "peak_rss_mib")),
            "train_gflops_per_second_median": round(statistics.median(r["train_gflops_per_second"] for r in mine), 1),
            "share_of_matmul_probe_median": median_or_none(shares),
            "probe_dtype": dtype,
            "x_trl_median": round(statistics.median(ratios), 3) if ratios else None,
            "x_trl_min": round(min(ratios), 3) if ratios else None,
            "x_trl_max": round(max(ratios), 3) if ratios else None,
            "peak_rss_mib_median": round(statistics.median(r["peak_rss_mib"] for r in mine)),
            "val_loss_by_seed": loss,
            "val_loss_mean": round(statistics.mean(loss.values()), 4),
            "val_loss_minus_trl_mean": round(statistics.mean(diffs), 4) if diffs else None,
            "val_loss_minus_trl_sd": round(statistics.stdev(diffs), 4) if len(diffs) > 1 else None,
        })
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=32)
    p.add_argument("--steps", type=int, default=4, help="steps x batch = examples: every side sees every row once")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val", type=int, default=16, help="held-out examples for the val loss")
    p.add_argument("--repeats", type=int, default=1, help="rounds over the sides per seed, interleaved")
    p.add_argument("--seeds", help="comma-separated seeds (data sample, lengths, order), one round each: "
                                   "the spread of val loss across them says what a difference between sides means")
    p.add_argument("--sides", default=",".join(("probe", *SIDES)))
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--work", default="/tmp/tunewise-bench-train")
    p.add_argument("--out", default="bench/results/train_vs_trl.json")
    args = p.parse_args()
    if args.side:
        print(json.dumps(one_side(args)))
        return
    sides = args.sides.split(",")
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    results = []
    rounds = [(seed, repeat) for seed in seeds for repeat in range(args.repeats)]
    for n, (seed, repeat) in enumerate(rounds):
        # Rotate the order each round so no side always runs first (warm page cache) or last.
        for side in sides[n % len(sides):] + sides[:n % len(sides)]:
            results.append({"seed": seed, "repeat": repeat, **run_side(args, side, seed)})
            print(json.dumps(results[-1]), flush=True)
    summary = summarise(results, sides)
    print(f"\n{'side':18} {'tokens/s (median, range)':>26} {'x TRL (median, range)':>24} {'RSS MiB':>8} "
          f"{'val loss (mean)':>15} {'- TRL (mean, sd)':>17}")
    for r in summary:
        print(f"{r['side']:18} x trl-packed {r['x_trl_packed_median']}  RSS x trl {r['rss_x_trl_median']}  RSS x "
              f"trl-packed {r['rss_x_trl_packed_median']}  {r['train_gflops_per_second_median']} GFLOP/s = "
              f"{r['share_of_matmul_probe_median']} of the {r['probe_dtype']} matmul probe")
        rate = f"{r['tokens_per_second_median']:.1f} ({r['tokens_per_second_min']:.1f}-{r['tokens_per_second_max']:.1f})"
        ratio = (f"{r['x_trl_median']:.2f} ({r['x_trl_min']:.2f}-{r['x_trl_max']:.2f})"
                 if r["x_trl_median"] is not None else "-")
        diff = "-" if r["val_loss_minus_trl_mean"] is None else (
            f"{r['val_loss_minus_trl_mean']:+.4f}" + (f" ({r['val_loss_minus_trl_sd']:.4f})"
                                                       if r["val_loss_minus_trl_sd"] is not None else ""))
        print(f"{r['side']:18} {rate:>26} {ratio:>24} {r['peak_rss_mib_median']:8d} {r['val_loss_mean']:15.4f} {diff:>17}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "side"}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": settings, "summary": summary, "results": results}, indent=2) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()

"""Benchmark: `tunewise serve` (dynamic batching) against a naive one-request-at-a-time transformers
server, same model, same prompts, same run, at concurrency 1, 8 and 32, for a classification rung
(BBC topics, lora adapter on SmolLM2-135M) and a generation rung (zero-shot headlines, SmolLM2-135M).

    PYTHONPATH=src python bench/serve_vs_naive.py [--threads 2] [--out bench/results/serve_vs_naive.json]

Both servers are FastAPI + uvicorn on 127.0.0.1 in this process, driven by the same httpx client
threads. The naive server is what one writes first: each request, in turn, is tokenized with the
rung's own prompt, then one forward scoring every label (classification, no cache, like the rung's
own prefix/prompt-tuning path) or ``model.generate`` (greedy, batch of one). `tunewise serve` is the
real app (`tunewise.serve.app.create_app`) with its default serve settings.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch

LEVELS = (1, 8, 32)


def cli(*args):
    r = subprocess.run([sys.executable, "-c", "from tunewise.cli import main; main()", *args],
                       check=False, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])


def make_projects(root: Path, classification: bool = True, precision: str = "fp32") -> tuple[Path, Path]:
    """The BBC example's lora rung (briefly trained by the ladder) and a zero-shot headline-generation
    run on the same articles (zero-shot learns nothing: its run folder is its config and rung.json)."""
    cls = root / "bbc"
    example = Path(__file__).resolve().parent.parent / "examples" / "bbc-news" / "tunewise.yaml"
    if (cls / "tunewise.yaml").exists() and (cls / "tunewise.yaml").read_text() != example.read_text():
        print(f"{cls}: built from an older bbc-news example; built again", flush=True)
        shutil.rmtree(cls)
    if not (cls / "tunewise.yaml").exists():
        cli("init", str(cls), "--example", "bbc-news")
    if classification and not (cls / ".tunewise" / "reports").exists():
        cli("ladder", str(cls), "-q", "--rungs", "lora", "--set", "eval.max_test_examples=8",
            "--set", "train.max_train_examples=16", "--set", "train.max_val_examples=4", "--set", "train.max_steps=2",
            "--set", "train.eval_steps=2")
    gen = root / ("headlines" if precision == "fp32" else f"headlines-{precision}")
    run_dir = gen / ".tunewise" / "runs" / "zero-shot-bench"
    if not (run_dir / "rung.json").exists():
        from tunewise.config import dump_config, load_config
        from tunewise.rungs.state import write_manifest

        (gen / "data").mkdir(parents=True, exist_ok=True)
        rows = [json.loads(x) for x in (cls / "data" / "articles.jsonl").read_text().splitlines()]
        out = []
        for r in rows:
            title, _, body = r["text"].strip().partition("\n")
            out.append({"id": r["id"], "input": body.strip(), "target": title.strip()})
        (gen / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
        (gen / "tunewise.yaml").write_text(f"""name: headlines
task: {{type: generation, instruction: Write a one-line headline for this BBC news article., max_input_tokens: 64}}
data: {{files: [data/rows.jsonl], split: {{train: 0.8, val: 0.1, test: 0.1}}, seed: 13}}
model: {{base: smollm2-135m-instruct}}
rungs: [zero-shot]
eval: {{batch_size: 16, max_new_tokens: 16, precision: {precision}}}
""")
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(dump_config(load_config(gen)))
        write_manifest(run_dir, "zero-shot")
    return cls, run_dir


def naive_app(served, max_tokens: int):
    """One request at a time (a lock), plain transformers calls on the served rung's own model object
    (the same weights, as stored for serving) and prompt, in the rung's precision (eval.precision)."""
    from fastapi import FastAPI

    from tunewise.evaluate.decode import inference_precision
    from tunewise.rungs.finetuned import score_sequences

    rung = served.rung

    app, lock = FastAPI(), threading.Lock()
    model, tok = rung.model, rung.tokenizer
    builder = rung.builder()
    labels = rung.config.task.labels
    label_ids = [builder.encode("", lab)[1] for lab in labels]
    model.eval()

    @app.post("/v1/classify")
    def classify(body: dict):
        with lock, torch.inference_mode(), served.context(), inference_precision(rung.config.eval.precision):
            scores = score_sequences(model, builder.encode(body["input"], None)[0], label_ids, tok.pad_token_id)
        return {"label": labels[int(scores.argmax())]}

    @app.post("/v1/completions")
    def complete(body: dict):
        with lock, torch.inference_mode(), served.context(), inference_precision(rung.config.eval.precision):
            ids = torch.tensor([builder.encode(body["prompt"], None)[0]])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=builder.stop_ids)
        new = out[0, ids.shape[1]:].tolist()
        new = new[:next((i for i, t in enumerate(new) if t in builder.stop_ids), len(new))]
        return {"choices": [{"text": tok.decode(new, skip_special_tokens=True)}],
                "usage": {"completion_tokens": len(new)}}

    return app


def drive(url: str, path: str, bodies: list[dict], concurrency: int) -> dict:
    client = httpx.Client(timeout=600)

    def one(body):
        start = time.perf_counter()
        r = client.post(url + path, json=body)
        tokens = r.json().get("usage", {}).get("completion_tokens", 0) if r.status_code == 200 else 0
        return time.perf_counter() - start, r.status_code, tokens

    warm = client.post(url + path, json=bodies[0])  # warm-up
    if warm.status_code != 200:  # a refused request measures nothing: stop, saying why
        raise SystemExit(f"{url}{path} answered {warm.status_code}: {warm.text[:300]}")
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(one, bodies))
    wall = time.perf_counter() - start
    lat = sorted(t for t, _, _ in done)
    errors = sum(code != 200 for _, code, _ in done)
    return {"requests": len(bodies), "errors": errors, "rps": len(bodies) / wall,
            "completion_tokens_per_s": sum(n for _, _, n in done) / wall,
            "p50_ms": 1000 * statistics.median(lat), "p95_ms": 1000 * lat[max(0, round(0.95 * len(lat)) - 1)]}


def first_token(url: str, model: str, prompt: str, max_tokens: int) -> dict:
    """One streamed chat request alone: seconds to the first content chunk and to the last."""
    body = {"model": model, "stream": True, "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}]}
    start, first, chunks = time.perf_counter(), None, 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content": "' in line and '"content": ""' not in line:
                chunks += 1
                first = first or time.perf_counter() - start
    whole = time.perf_counter() - start
    return {"first_chunk_s": first, "whole_s": whole, "content_chunks": chunks,
            "first_share": first / whole if first else None}


def summarize(rows: list[dict]) -> list[dict]:
    """Per rung and concurrency: the median over repeats of each server's throughput and p95, with
    their ranges, and the median of the per-repeat ratio (tunewise / naive, same repeat)."""
    out = []
    for mid in dict.fromkeys(r["rung"] for r in rows if "concurrency" in r):
        per = "completion_tokens_per_s" if mid.startswith("headlines") else "rps"
        for c in LEVELS:
            mine = [r for r in rows if r.get("rung") == mid and r.get("concurrency") == c and r["server"] == "tunewise serve"]
            peer = [r for r in rows if r.get("rung") == mid and r.get("concurrency") == c and r["server"] == "naive loop"]
            if not mine or not peer:
                continue
            ratios = sorted(a[per] / b[per] for a, b in zip(mine, peer, strict=True))
            line = {"rung": mid, "concurrency": c, "measure": per, "repeats": len(mine),
                    "tunewise": statistics.median(r[per] for r in mine), "naive": statistics.median(r[per] for r in peer),
                    "ratio_median": statistics.median(ratios), "ratio_range": [ratios[0], ratios[-1]],
                    "tunewise_p95_ms": statistics.median(r["p95_ms"] for r in mine),
                    "naive_p95_ms": statistics.median(r["p95_ms"] for r in peer),
                    "errors": sum(r["errors"] for r in mine + peer)}
            line["text"] = (f"{mid} c={c}: {per} {line['tunewise']:.2f} vs {line['naive']:.2f} -> "
                            f"{line['ratio_median']:.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}, {len(mine)} repeats); "
                            f"p95 {line['tunewise_p95_ms']:.0f} vs {line['naive_p95_ms']:.0f} ms; errors {line['errors']}")
            out.append(line)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0, help="Multiply the number of requests per level.")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tunewise-serve-bench",
                    help="Projects are built here once and reused by later runs.")
    ap.add_argument("--out", type=Path, default=Path("bench/results/serve_vs_naive.json"))
    ap.add_argument("--levels", type=int, nargs="+", default=list(LEVELS), choices=LEVELS,
                    help="Concurrency levels to run (default: all).")
    ap.add_argument("--repeats", type=int, default=3, help="Interleaved repeats of each level (both servers each time).")
    ap.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                    help="The generation rung's eval.precision (the BBC demo's is auto); both servers use it.")
    ap.add_argument("--task", choices=["both", "generation", "classification"], default="both",
                    help="Which rung(s) to measure (generation alone needs no training run).")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from loopback import Server  # the tests' uvicorn-in-a-thread helper

    from tunewise.config import ServeConfig
    from tunewise.serve.app import create_app
    from tunewise.serve.registry import load_served

    results = {"machine": f"{platform.processor() or platform.machine()}, torch threads {args.threads}",
               "precision": args.precision,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": []}
    args.workdir.mkdir(parents=True, exist_ok=True)
    tmp = args.workdir
    cls, gen = make_projects(tmp, args.task != "generation", args.precision)
    articles = [json.loads(x)["text"] for x in (cls / "data" / "articles.jsonl").read_text().splitlines()]
    texts = [articles[i] for i in range(0, len(articles), len(articles) // 64)][:64]
    # Each rung on a model of its own: a rung that shares its base with another project's rungs runs as
    # they all allow (e.g. bf16 weights only when every rung on the base computes in bf16).
    served = {**load_served([gen]), **(load_served([cls]) if args.task != "generation" else {})}
    rungs = [r for r in (("bbc-news/lora", "/v1/classify", "input"), ("headlines/zero-shot", "/v1/completions", "prompt"))
             if args.task == "both" or (args.task == "generation") == (r[1] == "/v1/completions")]
    if args.task != "classification":
        with Server(create_app(served, ServeConfig(), tmp / "log.sqlite")) as s:
            first_token(s.root, "headlines/zero-shot", texts[0], 16)  # warm-up
            alone = [first_token(s.root, "headlines/zero-shot", t, 16) for t in texts[1:1 + 3 * args.repeats]]
        share = sorted(a["first_share"] for a in alone)
        row = {"rung": "headlines/zero-shot", "server": "tunewise serve", "streamed_alone": alone,
               "first_share_median": statistics.median(share), "first_share_range": [share[0], share[-1]]}
        results["rows"].append(row)
        print(f"streamed alone ({len(alone)} requests): first chunk at {row['first_share_median']:.0%} of the whole "
              f"answer's time (median; {share[0]:.0%}-{share[-1]:.0%})", flush=True)
    for mid, path, key in rungs:
        # A fresh app per level: an app's batcher and request log close when its server stops.
        apps = {"tunewise serve": lambda: create_app(served, ServeConfig(), tmp / "log.sqlite"),
                "naive loop": lambda m=mid: naive_app(served[m], 16)}
        for c in args.levels:
            n = {1: 8, 8: 32, 32: 64}[c] if path == "/v1/classify" else {1: 4, 8: 16, 32: 32}[c]
            n = max(c, round(n * args.scale))
            extra = {"max_tokens": 16} if path == "/v1/completions" else {}  # /v1/classify refuses it (400)
            bodies = [{"model": mid, key: t, **extra} for t in texts[:n]]
            for rep in range(args.repeats):  # interleaved: each repeat runs both servers back to back
                for name, make_app in apps.items():
                    with Server(make_app()) as s:
                        row = {"rung": mid, "server": name, "concurrency": c, "repeat": rep,
                               **drive(s.root, path, bodies, c)}
                    results["rows"].append(row)
                    print(f"{mid:22} {name:15} c={c:<3} {row['rps']:7.2f} req/s  {row['completion_tokens_per_s']:7.2f} tok/s  "
                          f"p50 {row['p50_ms']:8.0f} ms  p95 {row['p95_ms']:8.0f} ms  errors {row['errors']}", flush=True)
    results["summary"] = summarize(results["rows"])
    for line in results["summary"]:
        print(line["text"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""bf16 vs fp32 scoring on the BBC demo's frozen test split: accuracy, agreement and time, one run.

The same zero-shot and few-shot rungs (the bundled SmolLM2-135M-Instruct) score every test row in fp32
and under bf16 autocast, passes interleaved (fp32, bf16, fp32, bf16, …) so a change in the machine's
load hits both alike. Reported: accuracy of each, the share of rows whose answer changes, McNemar's
exact p on the paired right/wrong, and the median CPU and wall seconds per pass.

    PYTHONPATH=src python bench/precision_bbc.py --project demo-project --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", default="demo-project", help="a project made by `tunewise init --example bbc-news`")
    p.add_argument("--rungs", default="zero-shot,few-shot")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default="bench/results/precision_bbc.json")
    args = p.parse_args()

    import numpy as np

    from tunewise.assets import offline
    from tunewise.config import load_config
    from tunewise.data.resolve import resolve_splits
    from tunewise.evaluate.stats import mcnemar
    from tunewise.ladder import make_rung

    offline()
    project = Path(args.project)
    base = load_config(project)
    splits = resolve_splits(base, project, "bench")
    test = splits.test
    out = {"project": str(project), "test_rows": len(test), "test_hash": splits.test_hash, "rungs": {}}
    for name in args.rungs.split(","):
        runs: dict[str, list] = {"fp32": [], "bf16": []}
        for _ in range(args.repeats):
            for precision in ("fp32", "bf16"):
                config = base.model_copy(update={"eval": base.eval.model_copy(update={"precision": precision})})
                rung = make_rung(name, config, project, Path("/tmp/tunewise-precision-bench"), lambda *a: lambda *b, **c: None)
                rung.fit(splits.train, splits.val)
                wall, cpu = time.perf_counter(), time.process_time()
                preds = rung.predict(test)
                runs[precision].append({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                                        "right": [p.output == r.target for p, r in zip(preds, test, strict=True)],
                                        "answers": [p.output for p in preds]})
        a, b = runs["fp32"][0], runs["bf16"][0]
        right_a, right_b = np.array(a["right"]), np.array(b["right"])
        row = {
            "accuracy_fp32": round(100 * right_a.mean(), 2), "accuracy_bf16": round(100 * right_b.mean(), 2),
            "answers_changed_pct": round(100 * np.mean([x != y for x, y in zip(a["answers"], b["answers"], strict=True)]), 2),
            "mcnemar": mcnemar(right_a, right_b),
            **{f"{k}_{prec}_median": round(statistics.median(r[k] for r in runs[prec]), 1)
               for prec in ("fp32", "bf16") for k in ("wall_s", "cpu_s")},
            "repeats": args.repeats,
        }
        row["cpu_speedup"] = round(row["cpu_s_fp32_median"] / row["cpu_s_bf16_median"], 2)
        out["rungs"][name] = row
        print(name, json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

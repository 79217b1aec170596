"""Few-shot accuracy across example draws, with and without contextual calibration (issue 32).

On a public corpus we did not write: the TREC question-classification training set (Li & Roth 2002,
5,452 questions, 6 coarse answer types; `train_5500.label`, one "LABEL:fine question" per line).
A seeded, stratified test set of ``--test`` questions is held out; the rest is the example pool.
For every k in ``--k`` the few-shot rung (tunewise's own: `FewShot`, the balanced example sets of
`few_shot.sets`, the bundled SmolLM2-135M-Instruct, label log-likelihood scoring) is fitted once and
scored on each of ``--sets`` example sets. Each set is scored once: calibrated label scores are
log p(label|x) - log prior, so the raw (uncalibrated) argmax is recovered exactly as
argmax(calibrated + log prior). Zero-shot is scored the same way.

    TUNEWISE_HOME=~/.cache/tunewise PYTHONPATH=src .venv/bin/python bench/few_shot_draws.py \\
        --trec /path/to/train_5500.label --out bench/results/few_shot_draws_trec.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COARSE = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "person",
          "LOC": "location", "NUM": "number"}
INSTRUCTION = ("Classify the question by the kind of answer it asks for. Answer with one word: abbreviation, "
               "description, entity, person, location or number.")


def read_trec(path: Path):
    from tunewise.core import Record

    rows = []
    for n, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        tag, _, question = line.partition(" ")
        coarse = tag.split(":", 1)[0]
        if coarse not in COARSE:
            sys.exit(f"{path}:{n}: unknown label '{tag}'")
        rows.append(Record(id=f"trec-{n}", input=question.strip(), target=COARSE[coarse], meta={}))
    return rows


def stratified_split(rows, n_test: int, seed: int):
    rng = random.Random(seed)
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(r.target, []).append(r)
    test = []
    for label in sorted(by):
        group = by[label]
        rng.shuffle(group)
        test += group[: round(n_test * len(group) / len(rows))]
    ids = {r.id for r in test}
    return [r for r in rows if r.id not in ids], test


def accuracies(preds, test, labels, prior):
    gold = np.array([labels.index(r.target) for r in test])
    cal = np.array([[p.scores[lab] for lab in labels] for p in preds])
    raw = cal + np.log(np.asarray(prior)) if prior else cal
    return float((cal.argmax(1) == gold).mean()), float((raw.argmax(1) == gold).mean())


def summary(values):
    return {"mean": round(100 * statistics.mean(values), 2), "sd": round(100 * statistics.stdev(values), 2)
            if len(values) > 1 else 0.0, "min": round(100 * min(values), 2), "max": round(100 * max(values), 2),
            "values": [round(100 * v, 2) for v in values]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--trec", type=Path, help="train_5500.label")
    src.add_argument("--project", type=Path, help="a prepared tunewise project (its config, train and test parts)")
    ap.add_argument("--test", type=int, default=360)
    ap.add_argument("--k", default="2,3,4,5,6,7,8")
    ap.add_argument("--sets", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="TREC test split seed (example sets use seeds 0..sets-1; a project's use few_shot.seed onwards)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64, help="eval.batch_size (short prompts: larger batches use the cores better)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    from tunewise.config import ProjectConfig
    from tunewise.models.load import load
    from tunewise.rungs.table import build_rung
    from tunewise.rungspec import FEW_SHOT, ZERO_SHOT

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="fsdraws-"))
    if args.trec:
        rows = read_trec(args.trec)
        pool, test = stratified_split(rows, args.test, args.seed)
        labels = list(COARSE.values())
        base_cfg = {
            "name": "trec", "task": {"type": "classification", "input_field": "text", "target_field": "label",
                                     "labels": labels, "instruction": INSTRUCTION},
            "data": {"files": ["unused.jsonl"]}, "model": {"base": "smollm2-135m-instruct"},
            "rungs": ["zero-shot", "few-shot"], "eval": {"batch_size": args.batch, "precision": args.precision},
            "train": {"max_train_examples": len(pool)},
        }
        corpus, project = "TREC question classification, train_5500.label (Li & Roth 2002)", work
    else:  # the project's own prepared split and settings; only k, sets and calibration vary
        from tunewise.config import load_config
        from tunewise.data.prepare import load_prepared

        config = load_config(args.project)
        prepared = load_prepared(config, args.project)
        if prepared is None:
            sys.exit(f"{args.project}: no prepared dataset matches its config; run `tunewise prepare` first")
        pool, _, test = prepared[0], prepared[1], prepared[2]
        rows, labels, project = pool + test, list(config.task.labels), args.project
        base_cfg = config.model_dump(by_alias=True, exclude_none=True)
        base_cfg["eval"] = {**base_cfg.get("eval", {}), "precision": args.precision, "batch_size": args.batch}
        base_cfg["few_shot"] = {**base_cfg.get("few_shot", {})}
        corpus = f"{config.name} (prepared test split of {args.project})"
    base = load(base_cfg["model"]["base"], project)
    out = {"corpus": corpus, "rows": len(rows),
           "pool": len(pool), "test": len(test), "test_labels": {lab: sum(r.target == lab for r in test) for lab in labels},
           "sets": args.sets, "precision": args.precision, "k": {}}
    t0 = time.perf_counter()
    first_seed = base_cfg.get("few_shot", {}).get("seed", 0)  # the project's own draws; TREC: 0, 1, ...
    fs_cfg = {key: v for key, v in base_cfg.get("few_shot", {}).items() if key not in ("k", "sets", "calibrate", "seed")}
    cfg = ProjectConfig.model_validate({**base_cfg, "few_shot": {**fs_cfg, "calibrate": True}})
    zs = build_rung(ZERO_SHOT, cfg, project, work / "zs", base=base).fit(pool, [])
    cal, raw = accuracies(zs.predict(test), test, labels, zs.prior)
    out["zero_shot"] = {"calibrated": round(100 * cal, 2), "raw": round(100 * raw, 2)}
    print(f"zero-shot: raw {100 * raw:.1f}  calibrated {100 * cal:.1f}", flush=True)
    for k in [int(x) for x in args.k.split(",")]:
        cfg = ProjectConfig.model_validate({**base_cfg, "few_shot": {**fs_cfg, "k": k, "sets": args.sets,
                                                                     "calibrate": True, "seed": first_seed}})
        rung = build_rung(FEW_SHOT, cfg, project, work / f"k{k}", base=base).fit(pool, [])
        cals, raws = [], []
        for shots in rung.sets:
            rung.fixed = shots
            rung.measure_prior()
            c, r = accuracies(rung.predict(test), test, labels, rung.prior)
            cals.append(c)
            raws.append(r)
        out["k"][k] = {"raw": summary(raws), "calibrated": summary(cals),
                       "last_labels": [rung.pool[s[-1]].target for s in rung.sets]}
        print(f"k={k}: raw {summary(raws)}  calibrated {summary(cals)}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print("\n| k | raw mean | raw SD | raw min–max | calibrated mean | calibrated SD | calibrated min–max |")
    print("|---|---|---|---|---|---|---|")
    for k, v in out["k"].items():
        r, c = v["raw"], v["calibrated"]
        print(f"| {k} | {r['mean']:.1f} | {r['sd']:.1f} | {r['min']:.1f}–{r['max']:.1f} | {c['mean']:.1f} | "
              f"{c['sd']:.1f} | {c['min']:.1f}–{c['max']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""`tunewise curve`: how much data is enough, measured on the ladder's own frozen test split.

Each trained rung is fitted on nested, seeded, stratified subsets of the train split (the first n
rows of one stratified ordering, so every size holds the smaller ones) and scored on the test
split the ladder uses; `curve.seeds` times per size (seed, seed+1, …: another ordering and the
rung's own seed), so the band holds the training variance too. Sizes never exceed
`train.max_train_examples`: a rung never trains on more rows than that cap. Rungs that do not train
(the prompting rungs of the table of rungs: zero-shot, few-shot, RAG) learn nothing from more rows, so
they are measured once on the whole train split (few-shot's example pool) and drawn as flat lines.
A saturating curve per trained rung (evaluate/learning_curve.py) turns the points into a projected
gain from more labels, the size at which the rung overtakes the best prompting rung, and, priced
with `labeling.usd_per_row` and the `cost:` section, whether labels or a bigger rung is the
cheaper way to the next point of quality.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tunewise import workspace as ws
from tunewise.config import ConfigError, ProjectConfig, dump_config
from tunewise.data.load import DataError
from tunewise.data.resolve import Splits, resolve_splits
from tunewise.data.split import by_target, no_strata, stratified_order
from tunewise.evaluate.cost import resolve_prices, rung_compute, rung_cost
from tunewise.evaluate.learning_curve import Fit, fit_curve
from tunewise.evaluate.throughput import machine_throughput
from tunewise.rungs.base import ProgressFn, no_progress
from tunewise.rungspec import EMBEDDING_CLASSIFIER, RUNGS, TEXT

log = logging.getLogger(__name__)

POINT = 0.01  # "the next point of quality": one percentage point of the primary metric


def trains(name: str) -> bool:
    """Whether the rung learns from more rows (else it is measured once, on the whole train split)."""
    return RUNGS[name].trains


def parse_sizes(text: str | None) -> list[int] | None:
    """``"50,100,200"`` → [50, 100, 200]; a ConfigError names the bad value."""
    if not text:
        return None
    try:
        sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise ConfigError(f"--sizes {text!r}: expected comma-separated whole numbers, e.g. 50,100,200,400") from None
    if not sizes or sizes[0] < 1:
        raise ConfigError(f"--sizes {text!r}: sizes must be whole numbers of at least 1")
    return sizes


def default_sizes(n_train: int) -> list[int]:
    """50, 100, 200, … below the train size, then the whole train split (where the team is now)."""
    sizes, n = [], 50
    while n < n_train:
        sizes.append(n)
        n *= 2
    return [*sizes, n_train]


def size_limit(config: ProjectConfig, n_train: int) -> int:
    """The most rows a rung trains on: the train split, or `train.max_train_examples` when smaller."""
    cap = config.train.max_train_examples
    return n_train if cap is None else min(cap, n_train)


def check_sizes(sizes: list[int], splits: Splits, config: ProjectConfig) -> None:
    n_train = len(splits.train)
    too_big = [n for n in sizes if n > n_train]
    if too_big:
        raise ConfigError(f"--sizes: {too_big[0]:,} is larger than the train split ({n_train:,} rows in "
                          f"{splits.dataset_dir}); the largest size possible is {n_train:,}")
    cap = config.train.max_train_examples
    over = [n for n in sizes if cap is not None and n > cap]
    if over:
        raise ConfigError(f"--sizes: {over[0]:,} is larger than train.max_train_examples ({cap:,}): a rung never "
                          f"trains on more rows than that; raise the cap or use sizes up to {cap:,}")
    labels = config.task.labels if config.task.type == "classification" else []
    if labels and sizes[0] < 2:
        raise ConfigError(f"--sizes: {sizes[0]} row cannot train a classifier; use at least 2")


def measure(name: str, config: ProjectConfig, project: Path, train: list, splits: Splits, run_dir: Path,
            progress: ProgressFn) -> tuple[dict, np.ndarray]:
    """Fit one rung on ``train``, score it on the frozen test split; (the point, per-item scores)."""
    from tunewise.evaluate.score import score_predictions
    from tunewise.ladder import task_schema
    from tunewise.rungs.table import build_rung  # as the ladder builds it; every rung's module: torch

    rung = build_rung(name, config, project, run_dir, progress)
    rung.fit(train, splits.val)
    preds = rung.predict(splits.test)
    scored = score_predictions(config, splits.test, preds, getattr(rung, "passages", None),
                               task_schema(config, project))
    cost = rung.cost
    prompt_tokens = cost.prompt_tokens / max(cost.predict_examples, 1)
    metrics = scored.metrics
    # Priced like the ladder: FLOPs at this machine's calibrated throughput, so load cannot move it.
    compute = rung_compute(cost, machine_throughput(config.cost.gflops))
    point = {
        "n": len(train), "primary": scored.primary, "value": round(float(metrics[scored.primary]), 5),
        "ci": metrics.get(f"{scored.primary}_ci"), "train_seconds": round(cost.train_seconds, 3),
        "ms_per_example": round(cost.ms_per_example, 3), "prompt_tokens_per_request": round(prompt_tokens, 1),
        "compute": compute,
        "cost": rung_cost(compute["train_seconds"], compute["ms_per_request"], prompt_tokens, config.cost),
    }
    return point, scored.item_scores


def seeded(config: ProjectConfig, k: int) -> ProjectConfig:
    """The config of training run k of a size: the rung's own seeds moved by k."""
    if k == 0:
        return config
    return config.model_copy(update={"train": config.train.model_copy(update={"seed": config.train.seed + k}),
                                     "encoder": config.encoder.model_copy(update={"seed": config.encoder.seed + k})})


def measure_size(name: str, config: ProjectConfig, project: Path, splits: Splits, n: int, runs: int, out_dir: Path,
                 progress: ProgressFn) -> tuple[dict, np.ndarray]:
    """``runs`` training runs of one rung at size n (run k: ordering seed data.seed + k, rung seed + k);
    the point (its value the mean over runs, each run's value kept) and the (runs, items) scores."""
    key = by_target if config.task.type == "classification" else no_strata
    points, items = [], []
    for k in range(runs):
        order = stratified_order(splits.train, config.data.seed + k, key)
        log.info("curve: %s on %d train rows (run %d of %d)", name, n, k + 1, runs)
        suffix = f"-seed{k}" if runs > 1 else ""
        point, scores = measure(name, seeded(config, k), project, order[:n], splits,
                                out_dir / "runs" / f"{name}-{n}{suffix}", progress)
        points.append(point)
        items.append(scores)
    point = dict(points[0])
    if runs > 1:
        point.update(value=round(float(np.mean([p["value"] for p in points])), 5), ci=None,
                     runs=[{"seed": k, "value": p["value"]} for k, p in enumerate(points)],
                     run_sd=round(float(np.std([p["value"] for p in points], ddof=1)), 5))
    return point, np.array(items)


def run_curve(config: ProjectConfig, project: Path, rungs: list[str] | None = None, sizes: list[int] | None = None,
              more: int | None = None, progress: ProgressFn = no_progress,
              say: Callable[[str], None] | None = None) -> Path:
    """Measure, fit and price the learning curves; write curve.json and curve.md; return their folder."""
    from tunewise.ladder import check_rungs

    project, say = Path(project), say or log.warning
    if config.task.type == TEXT:  # its fits and advice are in points of a share; perplexity is not one
        raise ConfigError("tunewise curve: task.type text is not supported (learning curves are fitted to a share "
                          "such as accuracy, and a text corpus has no labels to buy); compare rungs with `tunewise "
                          "ladder`, which scores perplexity")
    names = rungs or list(config.rungs)
    check_rungs(names, config, project)
    if more is not None and more < 1:
        raise ConfigError("--more: the number of extra labelled rows must be at least 1")
    config = config.model_copy(update={"cost": resolve_prices(config.cost)})
    splits = resolve_splits(config, project, "tunewise curve", say)
    sizes = sizes or default_sizes(size_limit(config, len(splits.train)))
    check_sizes(sizes, splits, config)
    notes = [splits.note] if splits.note else []
    runs = config.curve.seeds
    out_dir = ws.new_dir(project, "curves")
    ws.write_text(out_dir / "config.yaml", dump_config(config))
    results = []
    advance = progress("curve: fits (rungs × sizes)", sum(len(sizes) if trains(n) else 1 for n in names))
    for name in names:
        at = sizes if trains(name) else [size_limit(config, len(splits.train))]
        points, items = [], []
        for n in at:
            point, scores = measure_size(name, config, project, splits, n, runs if trains(name) else 1,
                                         out_dir, progress)
            points.append(point)
            items.append(scores)
            advance(1)
        fit = None if not trains(name) else fit_curve(at, np.array(items), config.eval.bootstrap, config.data.seed)
        if fit is not None:
            if runs > 1:  # the interval of each point: test items and training runs together
                for point, ci in zip(points, fit.value_ci, strict=True):
                    point["ci"] = ci
            if not fit.ok:
                say(f"{name}: no learning curve and no band: {fit.reason}")
        results.append((name, points, fit))
    curve = analyse(config, splits, results, sizes, more or len(splits.train), notes)
    ws.write_json(out_dir / "curve.json", curve)
    from tunewise.report.curve_view import curve_markdown, render_curve_html

    ws.write_text(out_dir / "curve.md", "\n".join(curve_markdown(curve)) + "\n")
    ws.write_text(out_dir / "curve.html", render_curve_html(curve))
    report_dir = attach_curve(project, curve, say)
    curve["report_dir"] = ws.stored(project, report_dir) if report_dir else None
    ws.write_json(out_dir / "curve.json", curve)
    return out_dir


def attach_curve(project: Path, curve: dict, say=log.warning) -> Path | None:
    """Add ``curve`` to the ladder in use (tunewise.locate) when it was measured on the same test split
    and re-render it; its folder, or None (said)."""
    from tunewise import locate

    found = locate.find_ladder(Path(project))
    if found is None or found.test_hash != curve["test_hash"]:
        why = "no finished ladder yet" if found is None else (
            f"the ladder in use, {ws.stored(project, found.folder)}/, was measured on test split sha256 "
            f"{(found.test_hash or '?')[:8]}…, this curve on {curve['test_hash'][:8]}…")
        say(f"{why}: the curve is not added to a report; the next `tunewise ladder` on this test split includes it")
        return None
    from tunewise.report.build import write_report

    folder = found.folder
    ladder = dict(found.data)
    ladder["curve"] = curve
    ws.write_json(folder / "ladder.json", ladder)
    write_report(ladder, folder)
    return folder


def analyse(config: ProjectConfig, splits: Splits, results: list[tuple[str, list[dict], Fit | None]],
            sizes: list[int], more: int, notes: list[str]) -> dict:
    """The curve.json dict: points, fits, projections, crossings, the price of a point, and the advice."""
    n_now = size_limit(config, len(splits.train))
    prompting = [(name, pts[0]) for name, pts, fit in results if fit is None]
    best_prompt = max(prompting, key=lambda p: p[1]["value"]) if prompting else None
    rungs = []
    for name, points, fit in results:
        entry = {"name": name, "trains": fit is not None, "points": points}
        if fit is not None:
            entry["fit"] = {**fit.to_json(), "seeds": fit.seeds}
            entry["now"] = now_value(points, fit, n_now)
            if not fit.ok:
                entry["band"], entry["no_band"] = None, fit.reason
            else:
                entry["band"] = fit.band(n_now + more)
                gain = fit.gain(n_now, n_now + more)
                entry["projection"] = {"from_n": n_now, "more": more, "to_n": n_now + more,
                                       "gain": round(gain[0], 5), "gain_ci": [round(gain[1], 5), round(gain[2], 5)]}
                # One point above where the curve puts today's size, so labels and curve agree on the start.
                start = fit.at(n_now)[0]
                entry["next_point"] = {"from": round(start, 5), "target": round(start + POINT, 5),
                                       **fit.size_to_reach(start + POINT)}
                if best_prompt:
                    entry["overtakes"] = {"vs": best_prompt[0], "value": best_prompt[1]["value"],
                                          **fit.size_to_reach(best_prompt[1]["value"])}
        rungs.append(entry)
    labeling = config.labeling.usd_per_row
    options = [price_next_point(r, rungs, labeling, config, n_now) for r in rungs if r["trains"]]
    curve = {
        "project": config.name, "task": config.task.type,
        "primary": next((p["primary"] for _, pts, _ in results for p in pts if "primary" in p), primary_name(config)),
        "test_hash": splits.test_hash, "n_test": len(splits.test), "n_train": n_now, "sizes": sizes,
        "seed": config.data.seed, "seeds": config.curve.seeds, "size_cap": config.train.max_train_examples,
        "more": more, "bootstrap": config.eval.bootstrap,
        "labeling": {"usd_per_row": labeling}, "prices": config.cost.model_dump(),
        "dataset": splits.record(), "notes": notes,
        "best_prompting": best_prompt[0] if best_prompt else None, "rungs": rungs, "options": options,
    }
    curve["advice"] = advice(curve)
    return curve


def primary_name(config: ProjectConfig) -> str:
    """The task's default primary metric, for a curve with no measured point to say which was scored."""
    from tunewise.evaluate.score import PRIMARY

    return PRIMARY[config.task.type]


def now_value(points: list[dict], fit: Fit, n_now: int) -> float:
    """Quality with every train row: measured when that size was run, else read off the curve."""
    measured = [p["value"] for p in points if p["n"] == n_now]
    if measured:
        return measured[0]
    return round(fit.at(n_now)[0], 5) if fit.ok else points[-1]["value"]


def price_next_point(rung: dict, rungs: list[dict], usd_per_row: float | None, config: ProjectConfig,
                     n_now: int) -> dict:
    """Two ways to one more point over ``rung`` today: label more rows for it, or switch to a rung that
    is already a point better (priced as training + a month of requests, the ladder's rule)."""
    last = rung["points"][-1]
    out: dict = {"rung": rung["name"], "now": rung["now"]}
    nxt = rung.get("next_point")
    if nxt and nxt["n"] is not None:
        rows = max(0, int(np.ceil(nxt["n"] - n_now)))
        # Training time grows about linearly with rows at a fixed number of epochs.
        priced_s = last.get("compute", {}).get("train_seconds", last["train_seconds"])
        retrain_s = priced_s / max(last["n"], 1) * (last["n"] + rows)
        retrain = rung_cost(retrain_s, 0.0, 0.0, config.cost)["train_usd"]
        lo, hi = nxt["ci"]
        rows_ci = [None if x is None else max(0, int(np.ceil(x - n_now))) for x in (lo, hi)]
        out["labels"] = {"rows": rows, "rows_ci": rows_ci, "retrain_usd": round(retrain, 6),
                         "usd": None if usd_per_row is None else round(rows * usd_per_row + retrain, 4)}
    else:
        why = ("the curve could not be fitted, so the rows it needs cannot be told" if not rung["fit"]["ok"] else
               "the fitted curve levels off within a point of today's quality")
        out["labels"] = {"rows": None, "usd": None, "why": why}
    better = [r for r in rungs if r["name"] != rung["name"] and value_now(r) >= rung["now"] + POINT]
    if better:
        mine = last["cost"]["usd_first_month"]
        best = min(better, key=lambda r: r["points"][-1]["cost"]["usd_first_month"])
        out["switch"] = {"rung": best["name"], "value": value_now(best),
                         "extra_usd_first_month": round(best["points"][-1]["cost"]["usd_first_month"] - mine, 4)}
    return out


def value_now(r: dict) -> float:
    return r["now"] if r["trains"] else r["points"][-1]["value"]


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def advice(curve: dict) -> list[str]:
    """The curve's findings in plain words, one sentence per finding."""
    out, more = [], curve["more"]
    if not any(r["trains"] for r in curve["rungs"]):
        return [("No trained rung was chosen: prompting rungs learn nothing from more labelled rows, so there is "
                 "no curve to fit (add e.g. --rungs embedding-classifier).")]
    for r in curve["rungs"]:
        if not r["trains"]:
            continue
        if not r["fit"]["ok"]:
            out.append(f"{r['name']}: no projection — {r['fit']['reason']}.")
            continue
        p = r["projection"]
        lo, hi = p["gain_ci"]
        largest = max(q["n"] for q in r["points"])
        beyond = f", extrapolated from sizes up to {largest:,}" if p["from_n"] > largest else ""
        out.append(f"{r['name']}: with {more:,} more labelled rows ({p['from_n']:,} → {p['to_n']:,}), "
                   f"{_pts(p['gain'])} points (95% CI {_pts(lo)} to {_pts(hi)}{beyond}); the curve levels off at "
                   f"{100 * r['fit']['a']:.1f}%.")
        o = r.get("overtakes")
        if o:
            out.append(overtake_sentence(r["name"], o, r["points"]))
    for o in curve["options"]:
        out.append(option_sentence(o, curve["labeling"]["usd_per_row"]))
    return out


def overtake_sentence(name: str, o: dict, points: list[dict]) -> str:
    if o["n"] is None:
        return (f"{name} is not projected to reach {o['vs']} ({100 * o['value']:.1f}%) at any size "
                f"({100 * o['never_share']:.0f}% of bootstrap refits agree).")
    lo, hi = o["ci"]
    span = f"{lo:,.0f}–{'∞' if hi is None else f'{hi:,.0f}'}"
    where = " (below the smallest size measured)" if o["n"] < points[0]["n"] else ""
    return f"{name} overtakes {o['vs']} ({100 * o['value']:.1f}%) at about {o['n']:,.0f} train rows{where} (95% CI {span})."


def option_sentence(o: dict, usd_per_row: float | None) -> str:
    lab, sw = o["labels"], o.get("switch")
    head = f"Next point over {o['rung']} ({100 * o['now']:.1f}%):"
    if lab["rows"] is None:
        labels = f"no estimate from more labels ({lab['why']})"
    else:
        lo, hi = lab["rows_ci"]
        span = f" (95% CI {'?' if lo is None else f'{lo:,}'}–{'∞' if hi is None else f'{hi:,}'})"
        price = (" (set labeling.usd_per_row to price them)" if lab["usd"] is None
                 else f", ${lab['usd']:,.2f} with retraining")
        labels = f"about {lab['rows']:,} more labelled rows{span}{price}"
    if not sw:
        return f"{head} {labels}; no rung measured here is a point better today."
    switch = (f"{sw['rung']} is already {100 * (sw['value'] - o['now']):.1f} points better for "
              f"${sw['extra_usd_first_month']:+,.2f} in its first month")
    if sw["extra_usd_first_month"] <= 0:
        verdict = f"switching to {sw['rung']} is better and cheaper"
    elif lab["usd"] is None:
        verdict = "price the labels to compare" if lab["rows"] is not None else f"switching to {sw['rung']} is the way"
    else:
        verdict = "more labels are cheaper" if lab["usd"] < sw["extra_usd_first_month"] else f"switching to {sw['rung']} is cheaper"
    return f"{head} {labels}; {switch}: {verdict}."


# ---------------------------------------------------------------- which rows to label next

def export_pool_review(config: ProjectConfig, project: Path, pool_path: Path, n: int | None, strategy: str,
                       output: Path | None = None, progress: ProgressFn = no_progress,
                       say: Callable[[str], None] | None = None) -> tuple[Path, dict]:
    """Pick ``n`` rows of an unlabelled pool to label next; write them as a review CSV.

    Returns the CSV's path and what was done (also saved as selection.json beside the CSV).
    """
    from tunewise.data.select import STRATEGIES, drop_near_duplicates, read_pool, redact_rows, write_review_csv

    project, say = Path(project), say or log.warning
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if n is None or n < 1:
        raise ConfigError("-n: how many pool rows to pick (at least 1) is required with --pool")
    if config.task.type == TEXT:
        raise ConfigError("--pool: task.type text has no targets, so there is nothing to label; add the pool's "
                          "text to data.files instead")
    if strategy == "uncertainty" and config.task.type != "classification":
        raise ConfigError(f"--strategy uncertainty needs label probabilities, so task.type: classification "
                          f"(got {config.task.type}); use --strategy diverse or random")
    pool = read_pool(pool_path, config.task.input_field, config.data.id_field, config.task.target_field)
    if pool.skipped_labelled:
        say(f"{pool_path}: {len(pool.skipped_labelled)} rows already hold a '{config.task.target_field}' "
            f"(task.target_field), e.g. line {pool.skipped_labelled[0].rpartition(':')[2]}: left out of the picks "
            "(they are labelled; add them to data.files to train on them)")
    splits = resolve_splits(config, project, "tunewise review export", say)
    redacted = redact_rows(pool.rows)
    labelled = [r.input for r in (*splits.train, *splits.val, *splits.test)]
    rows, dropped = drop_near_duplicates(pool.rows, labelled, config.audit.near_duplicate_threshold)
    if not rows:
        raise DataError(f"{pool_path}: every pool row is a near-duplicate of a row already labelled; nothing to pick")
    if n > len(rows):
        say(f"-n {n}: the pool holds {len(rows)} distinct new rows; all of them are picked")
    warning = ""
    per_label = len(splits.train) / max(len(config.task.labels), 1)
    if strategy == "uncertainty" and per_label < 10:
        # Measured on BBC (BENCHMARKS.md): below ~10 rows a label, least-confident picks trail random ones.
        warning = (f"the train split holds {per_label:.0f} rows per label: so early, uncertainty picks did worse than "
                   "random ones on BBC News (BENCHMARKS.md); --strategy diverse or random may serve better")
        say(warning)
    picks, flags, guesses, model = _pick(strategy, config, project, splits, rows, min(n, len(rows)), progress)
    flags = [f"{f};pii_redacted" if rows[i].id in redacted else f for i, f in zip(picks, flags, strict=True)]
    path = Path(output or ws.workspace(project) / "reviews" / "label-next.csv")
    write_review_csv(path, [rows[i] for i in picks], flags, guesses)
    summary = {"pool": str(pool_path), "strategy": strategy, "asked": n, "picked": len(picks),
               "pool_rows": len(pool.rows) + len(pool.skipped_empty) + len(pool.skipped_labelled),
               "skipped_empty": pool.skipped_empty, "skipped_labelled": pool.skipped_labelled,
               **dropped, "pii_redacted": len(redacted), "model": model, "seed": config.data.seed, "warning": warning,
               "dataset": splits.record(), "ids": [rows[i].id for i in picks], "csv": str(path)}
    ws.write_json(path.with_suffix(".selection.json"), summary)
    return path, summary


def _pick(strategy: str, config: ProjectConfig, project: Path, splits: Splits, rows: list, n: int,
          progress: ProgressFn) -> tuple[list[int], list[str], list[str], str]:
    """(picked indices into rows, flags, suggested labels, what scored them) for one strategy."""
    from tunewise.data.select import k_center_greedy, least_confident, random_pick

    if strategy == "random":
        picks = random_pick(len(rows), n, config.data.seed)
        return picks, ["random"] * len(picks), [""] * len(picks), "none (seeded random sample)"
    if strategy == "diverse":
        from tunewise.rungs.encoder import Embedder, encoder_dir

        enc = config.encoder
        embed = Embedder(encoder_dir(config, project), enc.max_seq_length, enc.batch_size)
        picks = k_center_greedy(embed([r.input for r in rows]), embed([r.input for r in splits.train]), n,
                                config.data.seed)
        return picks, [f"diverse;rank={k + 1}" for k in range(len(picks))], [""] * len(picks), f"{enc.model} embeddings"
    from tunewise.rungs.table import build_rung

    # The cheap classifier stands in for the best rung: its probabilities are calibrated enough to rank
    # rows by doubt, and it scores a pool of thousands in seconds on a CPU.
    rung = build_rung(EMBEDDING_CLASSIFIER, config, project, ws.workspace(project) / "reviews", progress)
    rung.fit(splits.train, splits.val)
    preds = rung.predict(rows)
    labels = config.task.labels
    from scipy.special import softmax

    proba = softmax(np.array([[p.scores[lab] for lab in labels] for p in preds]), axis=1)
    picks = least_confident(proba, n)
    flags = [f"uncertainty;top_p={proba[i].max():.3f}" for i in picks]
    n_fit = rung.history[0]["n_train"] if getattr(rung, "history", None) else len(splits.train)
    return picks, flags, [preds[i].output for i in picks], f"embedding-classifier fitted on {n_fit} train rows"

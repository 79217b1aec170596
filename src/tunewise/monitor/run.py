"""`tunewise monitor`: served inputs against the prepared training data, window by window.

Per window: embedding drift, predicted-label shift, confidence drop, out-of-distribution rate,
input-length shift, new-vocabulary rate and the label-free accuracy estimate (CBPE); with labelled
rows, the measured accuracy and the estimate's error. The verdict and exit code (0 stable, 3
retrain, 4 watch) follow the `monitor:` thresholds of tunewise.yaml (see config.MonitorConfig).
Writes ``.tunewise/monitor/<time>/monitor.json`` and ``monitor.html``.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from tunewise.config import MonitorConfig, ProjectConfig
from tunewise.data.dedup import normalise
from tunewise.data.load import DataError
from tunewise.monitor import drift
from tunewise.monitor.reference import Reference, ood_reference
from tunewise.monitor.requestlog import Served

EXIT = {"stable": 0, "retrain": 3, "watch": 4}
UNITS = {"hour": "%Y-%m-%dT%H:00Z", "day": "%Y-%m-%d", "week": "%G-W%V"}


def window_keys(rows: list[Served], timed: bool, mcfg: MonitorConfig) -> tuple[list[str], str]:
    """Each row's window, and the unit: the finest whose median window holds min_window requests."""
    if not timed:
        size, n = mcfg.min_window, len(rows)
        return [f"requests {i // size * size + 1}-{min(n, i // size * size + size)}" for i in range(n)], "arrival order"
    units = [mcfg.window] if mcfg.window != "auto" else list(UNITS)
    for unit in units:
        keys = [r.ts.strftime(UNITS[unit]) for r in rows]
        if np.median(list(Counter(keys).values())) >= mcfg.min_window or unit == units[-1]:
            return keys, unit
    raise AssertionError("unreachable")


def served_probs(ref: Reference, rows: list[Served], emb: np.ndarray) -> tuple[np.ndarray | None, str]:
    if ref.rung is None:
        return None, ref.source
    if ref.predict is None:  # the reference was calibrated on the logged model's own predictions
        for r in rows:
            unknown = set(r.probs or {}) - set(ref.labels)
            if r.probs is None or unknown:
                raise DataError(f"request {r.id}: 'probs' {'missing' if r.probs is None else 'has unknown labels'}"
                                f" {sorted(unknown) if unknown else ''}".rstrip())
        return np.array([[r.probs.get(lab, 0.0) for lab in ref.labels] for r in rows]), ref.source
    return ref.predict(emb), ref.source


TESTED = ("embedding", "ood", "length", "labels", "confidence", "cbpe")  # the signals with a p-value


def _tests(ref: Reference, mcfg: MonitorConfig, emb, probs, dist, lengths, texts, resamples: int) -> dict:
    out: dict = {"embedding": drift.mmd_test(ref.sample, emb, ref.bandwidth, resamples, mcfg.seed, mcfg.kernel_rows)}
    far, held, against = ood_reference(ref)
    out["ood"] = {**drift.ood_rate(dist, ref.nn_threshold, far, held), "against": against}
    out["length"] = drift.length_shift(ref.train_len, lengths)
    rate = drift.new_vocab_rate(texts, ref.vocab)
    out["new_vocab"] = {"rate": rate, "excess": rate - ref.test_new_vocab}
    if probs is not None:
        out["labels"] = drift.label_shift(ref.test_counts, np.bincount(probs.argmax(1), minlength=len(ref.labels)),
                                          resamples, mcfg.seed)
        out["confidence"] = drift.confidence_drop(ref.test_conf, probs.max(1))
        est = drift.cbpe_drop(ref.calibrator, ref.test_conf, probs.max(1))
        out["cbpe"] = {**est, "drop": ref.ladder["accuracy"] - est["accuracy"]}
    # One family per window: Benjamini-Hochberg over this window's tests (see drift.py for why not the log).
    adjusted = drift.window_significant({k: out[k]["p_value"] for k in TESTED if k in out}, mcfg.alpha)
    for k, q in adjusted.items():
        out[k]["q_value"] = q
    return out


def alarms(t: dict, mcfg: MonitorConfig) -> list[tuple[str, str]]:
    """(signal, why in words) for every threshold this window crossed: the test significant after the
    window's Benjamini-Hochberg correction (q < alpha) and the effect at least its size."""
    found = []
    level = mcfg.alpha
    e = t["embedding"]
    if e["q_value"] < level and e["excess"] >= mcfg.min_mmd:
        found.append(("embedding", f"inputs moved away from the training data "
                                   f"(MMD² excess {e['excess']:.3f}, q={e['q_value']:.2g})"))
    o = t["ood"]
    if o["q_value"] < level and o["rate"] >= mcfg.max_ood_rate:
        found.append(("ood", f"{100 * o['rate']:.0f}% of inputs are unlike any training row (q={o['q_value']:.2g})"))
    length = t["length"]
    if length["q_value"] < level and length["ks"] >= mcfg.max_length_ks:
        found.append(("length", f"input length changed (KS {length['ks']:.2f}, "
                                f"median {length['median_words']:.0f} words)"))
    if t["new_vocab"]["excess"] >= mcfg.max_new_vocab:
        found.append(("new_vocab", f"{100 * t['new_vocab']['rate']:.0f}% of words never seen in training"))
    if "labels" in t:
        lab = t["labels"]
        if lab["q_value"] < level and lab["psi"] >= mcfg.max_psi:
            found.append(("labels", f"predicted-label mix changed (PSI {lab['psi']:.2f}, q={lab['q_value']:.2g})"))
        c = t["confidence"]
        if c["q_value"] < level and c["drop"] >= mcfg.max_confidence_drop:
            found.append(("confidence", f"confidence fell by {c['drop']:.2f} (q={c['q_value']:.2g})"))
        q = t["cbpe"]
        if q["q_value"] < level and q["drop"] >= mcfg.max_accuracy_drop:
            found.append(("quality", f"estimated accuracy {100 * q['accuracy']:.1f}% is {100 * q['drop']:.1f} "
                                     f"points under the ladder's figure (q={q['q_value']:.2g})"))
    return found


def assess(ref: Reference, rows: list[Served], timed: bool, mcfg: MonitorConfig) -> dict:
    """Every window's statistics and alarms, plus per-row features (for examples and the review export)."""
    texts = [drift.user_text(r.input) for r in rows]
    emb = ref.embed(texts)
    probs, source = served_probs(ref, rows, emb)
    dist = drift.nearest_distance(emb, ref.train_emb)
    lengths = np.array([len(drift.words(t)) for t in texts])
    keys, unit = window_keys(rows, timed, mcfg)
    order = list(dict.fromkeys(keys))
    members = {k: [i for i, key in enumerate(keys) if key == k] for k in order}
    tested = [k for k in order if len(members[k]) >= mcfg.min_window]
    n_tests = 6 if probs is not None else 3
    # BH's strictest step is alpha / n_tests: enough permutations that the embedding test can reach it.
    resamples = max(mcfg.permutations, math.ceil(2 * n_tests / mcfg.alpha))
    windows = []
    for k in order:
        idx = np.array(members[k])
        w = {"window": k, "n": len(idx), "start": rows[idx[0]].ts.isoformat() if timed else None, "tested": k in tested}
        if k in tested:
            w.update(_tests(ref, mcfg, emb[idx], None if probs is None else probs[idx], dist[idx], lengths[idx],
                            [texts[i] for i in idx], resamples))
            found = alarms(w, mcfg)
            w["alarms"], w["reasons"] = [a for a, _ in found], [why for _, why in found]
        else:
            why = f"too few requests to test ({len(idx)} < monitor.min_window={mcfg.min_window})"
            w["alarms"], w["reasons"] = [], [why]
        windows.append(w)
    features = {"emb": emb, "probs": probs, "dist": dist, "keys": keys}
    correction = {"method": "Benjamini-Hochberg across the tests of each window, not across windows",
                  "alpha": mcfg.alpha, "tests_per_window": n_tests,
                  "meaning": f"an unchanged window alarms on its p-values with probability at most {mcfg.alpha}, "
                             "however long the log; each alarm also needs its effect size",
                  "kernel_rows": mcfg.kernel_rows, "kernel_seed": mcfg.seed,
                  "kernel_note": f"the embedding test uses at most {mcfg.kernel_rows} rows of a window "
                                 f"(a seeded sample, seed {mcfg.seed}) against {len(ref.sample)} reference rows"}
    return {"unit": unit, "correction": correction, "resamples": resamples, "predictions": source,
            "windows": windows, "features": features}


def attach_labels(ref: Reference, result: dict, rows: list[Served], labelled: dict[str, str], bootstrap: int,
                  seed: int) -> dict:
    """Measured accuracy on labelled requests, per window and overall, against the ladder's figure."""
    from scipy.stats import fisher_exact

    from tunewise.evaluate.stats import wilson_ci

    probs, keys = result["features"]["probs"], result["features"]["keys"]
    if probs is None:
        raise DataError("--labeled needs a classification task (accuracy of the monitored rung)")
    # Each labelled input is one item, scored where it was first served: a request repeated in the log
    # is not more evidence (its repeats would narrow the interval and the p-value); its first serving is
    # the one scored, so every labelled input is judged by the same rule.
    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        first.setdefault(normalise(r.input), i)
    hit = sorted((first[key], y) for key, y in labelled.items() if key in first)
    repeats = sum(1 for r in rows if normalise(r.input) in labelled) - len(hit)
    if not hit:
        raise DataError("--labeled: none of its inputs appear in the request log (matched by normalised input)")
    correct = np.array([ref.labels[int(probs[i].argmax())] == y for i, y in hit])
    for w in result["windows"]:
        mine = [c for (i, _), c in zip(hit, correct, strict=True) if keys[i] == w["window"]]
        if mine:
            w["labelled"] = {"n": len(mine), "accuracy": float(np.mean(mine))}
            if "cbpe" in w:
                w["labelled"]["cbpe_error"] = w["cbpe"]["accuracy"] - w["labelled"]["accuracy"]
    base = ref.ladder
    n_base = int(base["n_test"])
    k_base = round(base["accuracy"] * n_base)
    k, n = int(correct.sum()), len(correct)
    # Different items than the ladder's test split: an unpaired test of the two proportions.
    _, p = fisher_exact([[k, n - k], [k_base, n_base - k_base]], alternative="less")
    return {"n": n, "matched_of": len(labelled), "not_in_log": len(labelled) - n, "repeats_in_log": repeats,
            "accuracy": k / n,
            "accuracy_ci": wilson_ci(k, n), "ladder_accuracy": base["accuracy"],
            "ladder_n_test": n_base, "diff": k / n - base["accuracy"],
            "test": "Fisher's exact test, one-sided (fresh accuracy lower), unpaired: different items",
            "p_value": float(p)}


def verdict(result: dict, mcfg: MonitorConfig) -> tuple[str, list[str]]:
    tested = [w for w in result["windows"] if w["tested"]]
    why = [f"{w['window']}: {r}" for w in tested for r in w["reasons"]]
    fresh = result.get("labelled")
    quality = [w for w in tested if "quality" in w["alarms"]]
    measured = fresh and fresh["p_value"] < mcfg.alpha and -fresh["diff"] >= mcfg.max_accuracy_drop
    if measured:
        why.insert(0, f"measured accuracy on {fresh['n']} labelled requests is {100 * fresh['accuracy']:.1f}%, "
                      f"{-100 * fresh['diff']:.1f} points under the ladder's {100 * fresh['ladder_accuracy']:.1f}% "
                      f"(p={fresh['p_value']:.2g})")
    if measured or quality or (tested and "ood" in tested[-1]["alarms"]):
        return "retrain", why
    if why:
        return "watch", why
    if not tested:
        return "stable", [f"nothing was tested: no window holds monitor.min_window={mcfg.min_window} requests "
                          "(lower it, or choose a longer monitor.window)"]
    return "stable", [f"no threshold crossed in {len(tested)} tested window(s)"]


def summary_line(result: dict) -> str:
    tested = [w for w in result["windows"] if w["tested"]]
    alarmed = sum(bool(w["alarms"]) for w in tested)
    return (f"{result['verdict']}: {alarmed} of {len(tested)} tested {result['unit']} window(s) alarmed "
            f"({result['n_requests']} requests)")


def monitor_project(config: ProjectConfig, project: Path, log: Path, since: str | None = None,
                    labeled: Path | None = None, export_review: int | None = None, progress=print) -> tuple[Path, dict]:
    """Run the monitor and write monitor.json and monitor.html; return the folder and the result."""
    from tunewise import locate
    from tunewise import workspace as ws
    from tunewise.monitor.loop import export_served_review, read_labelled, top_drifted
    from tunewise.monitor.reference import build_reference
    from tunewise.monitor.report import write_monitor_html
    from tunewise.monitor.requestlog import read_log

    # One usable row is enough to report on: windows under monitor.min_window are shown, not tested.
    read = read_log(log, config.task.input_field, since, config.name, min_rows=1)
    rows, timed = read.rows, read.timed
    if read.skipped:
        progress(f"note: {log}: {read.skipped_line()}")
    labelled, left_out = read_labelled(config, labeled) if labeled else (None, 0)
    if left_out:
        progress(f"note: {left_out} row(s) of {labeled} were picked for being far or unsure (\"sample\": \"ranked\"); "
                 "left out of the accuracy check, their accuracy is biased low")
    models = sorted({r.model for r in rows if r.model})
    has_probs = all(r.probs for r in rows)
    if len(models) > 1:
        progress(f"note: the log mixes {len(models)} models ({', '.join(models)}); monitored as one stream")
    data = locate.dataset(config, project)
    if data is None:
        raise DataError(f"{project}: no prepared dataset for this config and data (run `tunewise prepare {project}`)")
    progress(data.line())
    ladder, why_ladder = locate.monitored_ladder(project, log, config.name, models)
    if ladder is not None:
        progress(ladder.line(why_ladder))
        locate.check_same_test(ladder, data)  # its calibration and figures describe this test split, or refuse
    else:
        progress("using no ladder: none has finished; the monitor measures its own figure on the test split")
    ref = build_reference(config, project, models[0] if has_probs and len(models) == 1 else None,
                          ladder=ladder, data=data)
    if not timed:
        progress(f"note: {log} has no times; windows of {config.monitor.min_window} requests in arrival order")
    progress(f"note: predictions: {ref.source}")
    result = assess(ref, rows, timed, config.monitor)
    if labelled is not None:
        result["labelled"] = attach_labels(ref, result, rows, labelled, config.eval.bootstrap, config.monitor.seed)
        result["labelled"]["ranked_left_out"] = left_out
        missed = result["labelled"]["not_in_log"]
        if result["labelled"]["repeats_in_log"]:
            progress(f"note: {result['labelled']['repeats_in_log']} repeated serving(s) of labelled inputs "
                     "counted once each (at the first serving)")
        if missed:
            progress(f"note: {missed} labelled row(s) of {labeled} are not in the request log; left out of the check")
    result["verdict"], result["why"] = verdict(result, config.monitor)
    result.update(log=ws.stored(project, log), since=since, n_requests=len(rows), timed=timed,
                  skipped={"counts": read.skipped, "first": read.examples}, models=models, rung=ref.rung,
                  dataset=ref.dataset, test_hash=data.test_hash,
                  ladder={**ladder.record(), "why": why_ladder} if ladder is not None else None, reference={
                      "nn_threshold": ref.nn_threshold, "test_accuracy": ref.test_accuracy, "ladder": ref.ladder,
                      "test_new_vocab": ref.test_new_vocab, "n_train": len(ref.train_emb)},
                  thresholds=config.monitor.model_dump(), exit_code=EXIT[result["verdict"]],
                  top_drifted=top_drifted(ref, rows, result["features"], 10))
    folder = ws.new_dir(project, "monitor")
    if export_review:
        result["review_export"] = export_served_review(ref, rows, result["features"], export_review,
                                                       folder / "review.csv", str(log), config.monitor.seed)
        result["review_export"]["path"] = ws.stored(project, Path(result["review_export"]["path"]))
    features = result.pop("features")
    ws.write_json(folder / "monitor.json", result)
    write_monitor_html(result, folder / "monitor.html")
    result["features"] = features
    return folder, result

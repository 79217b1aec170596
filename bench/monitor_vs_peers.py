"""tunewise's monitor beside NannyML's CBPE and Evidently's default data-drift preset, on the same windows.

Three seeded synthetic streams of a 3-class problem (class-conditional Gaussians in 4 dimensions, a
logistic-regression model fitted on the training rows): covariate shift (inputs move, P(y|x) fixed),
label-prior shift (class mix moves, P(x|y) fixed) and concept drift (P(y|x) changes, inputs fixed).
Each stream is 20 windows of 300 requests; the shift starts at window 10. Reported per stream:

- accuracy without labels: mean absolute error, per window, of tunewise's estimate (monitor/drift.py:
  the top-label probability calibrated on the reference split) and of NannyML's CBPE (fitted on the same
  reference split, one chunk per window), against the model's real accuracy on the window;
- drift alarms: tunewise's window tests (monitor/run.py, `monitor:` defaults, per-window
  Benjamini-Hochberg) and Evidently's DataDriftPreset (dataset drift: half the columns drifted) on the
  same windows: false alarms before the shift and the first alarmed window after it. The two are not
  brought to an equal false-alarm rate here.

The tunewise part runs in the project's environment; the peers run in their own (``--peers``, e.g.
/tmp/peers/bin/python), and the two exchange the streams as an .npz file.

    PYTHONPATH=src python bench/monitor_vs_peers.py --peers /tmp/peers/bin/python --out bench/results/monitor_vs_peers.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MU = np.array([[1.2, 0, 0, 0], [-0.6, 1.0, 0, 0], [-0.6, -1.0, 0, 0]])
WINDOWS, SIZE, SHIFT_AT = 20, 300, 10


def posterior(x, prior, mu=MU):
    logit = x @ mu.T - 0.5 * (mu ** 2).sum(1) + np.log(prior)
    p = np.exp(logit - logit.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def draw(rng, n, kind="none", strength=0.0):
    prior = np.full(3, 1 / 3)
    if kind == "prior":
        prior = np.array([1 / 3 + 0.5 * strength, 1 / 3 - 0.25 * strength, 1 / 3 - 0.25 * strength])
    y = rng.choice(3, n, p=prior)
    x = MU[y] + rng.normal(size=(n, 4))
    if kind == "covariate":  # move the inputs, then label them by the unchanged P(y|x)
        x = x + strength * np.array([-0.8, 0.0, 1.5, 0.0])
        y = np.array([rng.choice(3, p=p) for p in posterior(x, np.full(3, 1 / 3))])
    if kind == "concept":  # same inputs, classes 1 and 2 trade places with probability 0.5 * strength
        swap = rng.uniform(size=n) < 0.5 * strength
        y = np.where(swap & (y > 0), 3 - y, y)
    return x, y


def streams(seed):
    rng = np.random.default_rng(seed)
    out = {}
    for kind in ("covariate", "prior", "concept"):
        xs, ys = [], []
        for w in range(WINDOWS):
            strength = 0.0 if w < SHIFT_AT else min(1.0, (w - SHIFT_AT + 1) / 4)
            x, y = draw(rng, SIZE, kind, strength)
            xs.append(x)
            ys.append(y)
        out[kind] = (np.concatenate(xs), np.concatenate(ys))
    return out


def ours(data: dict) -> dict:
    from sklearn.linear_model import LogisticRegression

    from tunewise.config import MonitorConfig
    from tunewise.monitor import drift
    from tunewise.monitor.reference import Reference
    from tunewise.monitor.run import _tests, alarms

    rng = np.random.default_rng(0)
    xtr, ytr = draw(rng, 3000)
    xref, yref = draw(rng, 3000)
    clf = LogisticRegression(max_iter=1000).fit(xtr, ytr)
    pref = clf.predict_proba(xref)
    correct = pref.argmax(1) == yref
    mcfg = MonitorConfig(permutations=500)
    sample = xtr[rng.choice(len(xtr), mcfg.reference_size, replace=False)]
    own = drift.nearest_distance(xtr, xtr, exclude_self=True)
    thr = float(np.quantile(own, 0.99))
    ref = Reference(labels=["0", "1", "2"], embed=None, train_emb=xtr, sample=sample,
                    bandwidth=drift.rbf_bandwidth(sample), nn_threshold=thr, nn_far=int((own > thr).sum()),
                    train_len=np.full(len(xtr), 10), vocab=set(), test_new_vocab=0.0, dataset="synthetic",
                    rung="logistic-regression", predict=clf.predict_proba, test_conf=pref.max(1),
                    test_counts=np.bincount(pref.argmax(1), minlength=3), test_accuracy=float(correct.mean()),
                    n_test=len(yref), calibrator=drift.fit_calibrator(pref.max(1), correct),
                    ladder={"accuracy": float(correct.mean()), "n_test": len(yref)})
    result, exchange = {}, {"ref_x": xref, "ref_y": yref, "ref_p": pref}
    for kind, (x, y) in data.items():
        probs = clf.predict_proba(x)
        exchange[f"{kind}_x"], exchange[f"{kind}_y"], exchange[f"{kind}_p"] = x, y, probs
        real, est, alarmed = [], [], []
        for w in range(WINDOWS):
            sl = slice(w * SIZE, (w + 1) * SIZE)
            real.append(float((probs[sl].argmax(1) == y[sl]).mean()))
            est.append(drift.cbpe_accuracy(ref.calibrator, probs[sl].max(1)))
            t = _tests(ref, mcfg, x[sl], probs[sl], drift.nearest_distance(x[sl], xtr), np.full(SIZE, 10),
                       [], max(mcfg.permutations, 240))
            alarmed.append([a for a, _ in alarms(t, mcfg)])
        result[kind] = {"real_accuracy": real, "tunewise_estimate": est, "tunewise_alarms": alarmed}
    return result, exchange


def peers(npz: Path) -> dict:
    """Runs in the peers' environment: NannyML CBPE and Evidently's DataDriftPreset on every window."""
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
    import warnings

    import nannyml as nml
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    warnings.filterwarnings("ignore")
    z = np.load(npz)
    cols = ["f0", "f1", "f2", "f3"]

    def frame(x, y, p):
        df = pd.DataFrame(x, columns=cols)
        for k in range(3):
            df[f"p{k}"] = p[:, k]
        df["y_pred"] = p.argmax(1).astype(str)
        df["y_true"] = y.astype(str)
        return df

    ref = frame(z["ref_x"], z["ref_y"], z["ref_p"])
    out = {}
    for kind in ("covariate", "prior", "concept"):
        cur = frame(z[f"{kind}_x"], z[f"{kind}_y"], z[f"{kind}_p"])
        cbpe = nml.CBPE(y_pred_proba={str(k): f"p{k}" for k in range(3)}, y_pred="y_pred", y_true="y_true",
                        problem_type="classification_multiclass", metrics=["accuracy"], chunk_size=SIZE)
        cbpe.fit(ref)
        est = cbpe.estimate(cur.drop(columns=["y_true"])).filter(period="analysis").to_df()
        drifted = []
        for w in range(WINDOWS):
            snap = Report([DataDriftPreset()]).run(current_data=cur[cols].iloc[w * SIZE:(w + 1) * SIZE],
                                                   reference_data=ref[cols])
            share = next(m["value"]["share"] for m in snap.dict()["metrics"] if "DriftedColumnsCount" in m["metric_name"])
            drifted.append(bool(share >= 0.5))
        out[kind] = {"nannyml_estimate": [float(v) for v in est[("accuracy", "value")].values],
                     "evidently_dataset_drift": drifted}
    return out


def summarise(kind: str, a: dict, b: dict) -> dict:
    real = np.array(a["real_accuracy"])
    ours_alarm = [bool(x) for x in a["tunewise_alarms"]]
    theirs = b["evidently_dataset_drift"]

    def first(flags):
        return next((w for w in range(SHIFT_AT, WINDOWS) if flags[w]), None)

    return {"stream": kind,
            "mae_tunewise": float(np.mean(np.abs(np.array(a["tunewise_estimate"]) - real))),
            "mae_nannyml_cbpe": float(np.mean(np.abs(np.array(b["nannyml_estimate"]) - real))),
            "false_alarms_before_shift": {"tunewise": sum(ours_alarm[:SHIFT_AT]), "evidently": sum(theirs[:SHIFT_AT]),
                                          "of": SHIFT_AT},
            "first_alarm_window_after_shift": {"tunewise": first(ours_alarm), "evidently": first(theirs),
                                               "shift_at": SHIFT_AT},
            "accuracy_before_after": [float(real[:SHIFT_AT].mean()), float(real[SHIFT_AT:].mean())]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", help="python of an environment with nannyml and evidently")
    ap.add_argument("--peers-only", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="bench/results/monitor_vs_peers.json")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.peers_only:
        print(json.dumps(peers(Path(args.peers_only))))
        return
    mine, exchange = ours(streams(args.seed))
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "streams.npz"
        np.savez(npz, **exchange)
        run = subprocess.run([args.peers, __file__, "--peers-only", str(npz)], capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if run.returncode != 0:
        sys.exit(f"peers failed: {run.stderr[-2000:]}")
    theirs = json.loads(run.stdout.strip().splitlines()[-1])
    rows = [summarise(k, mine[k], theirs[k]) for k in mine]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seed": args.seed, "windows": WINDOWS, "size": SIZE, "shift_at": SHIFT_AT,
                                          "rows": rows, "raw": {"tunewise": mine, "peers": theirs}}, indent=1))
    for r in rows:
        print(json.dumps({k: v for k, v in r.items()}))


if __name__ == "__main__":
    main()

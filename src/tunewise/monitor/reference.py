"""What served traffic is compared with: the prepared dataset's train and frozen test splits, embedded
once with the project's encoder (MiniLM by default), and the monitored rung's behaviour on the test split.

Which ladder: the one tunewise.locate names for the log (the ladder the server recorded beside it,
else the newest finished one), and only when it was measured on this dataset's test split
(``locate.check_same_test``, checked by the caller). Which probabilities are monitored: when every
logged request carries ``probs`` and that ladder's run of the logged ``model`` left its test
predictions, those are used (calibrated on that run's test predictions). Otherwise the monitor runs the embedding-classifier rung itself (fitted exactly as
the ladder fits it: same encoder, train subset, C and seed) and says so. Embeddings are cached under
``.tunewise/monitor/cache/`` by dataset hash and encoder settings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tunewise import locate
from tunewise import workspace as ws
from tunewise.config import ProjectConfig
from tunewise.core import Record
from tunewise.data.load import DataError
from tunewise.locate import Dataset, Ladder
from tunewise.monitor import drift
from tunewise.rungspec import EMBEDDING_CLASSIFIER

MONITOR_RUNG = EMBEDDING_CLASSIFIER


def text(rec: Record) -> str:
    return drift.user_text(rec.input, rec.meta.get("messages"))


@dataclass
class Reference:
    labels: list[str]
    embed: Callable[[list[str]], np.ndarray]
    train_emb: np.ndarray
    sample: np.ndarray
    bandwidth: float
    nn_threshold: float
    nn_far: int  # training rows whose own nearest-neighbour distance exceeds nn_threshold
    train_len: np.ndarray
    vocab: set[str]
    test_new_vocab: float
    dataset: str
    rung: str | None = None
    source: str = ""
    predict: Callable[[np.ndarray], np.ndarray] | None = None
    test_conf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    test_counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    test_accuracy: float | None = None
    n_test: int = 0
    calibrator: object = None
    ladder: dict | None = None
    # Held-out rows (the frozen test split) whose nearest training row is farther than nn_threshold, of
    # held_n: what a window's out-of-distribution count is compared with (drift.ood_rate). held_n 0: no
    # test split, and the training rows' own share stands in (see ood_reference).
    held_far: int = 0
    held_n: int = 0


def _embeddings(config: ProjectConfig, project: Path, digest: str, parts: dict[str, list[Record]], embed) -> dict:
    enc = config.encoder
    key = ws.sha256_bytes(json.dumps([enc.model, enc.max_seq_length, digest, "user-text"]).encode())[:16]
    path = ws.workspace(project) / "monitor" / "cache" / f"embeddings-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            if all(n in z and len(z[n]) == len(rows) for n, rows in parts.items()):
                return {n: z[n] for n in parts}
    out = {n: embed([text(r) for r in rows]) for n, rows in parts.items()}
    with ws.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **out)
    return out


def softmax_rows(scores: list[dict], labels: list[str]) -> np.ndarray:
    """Probabilities from per-label log-scores (a rung's predictions.jsonl) or probabilities."""
    from scipy.special import softmax

    return softmax(np.array([[s.get(lab, -np.inf) for lab in labels] for s in scores], dtype=float), axis=1)


def ladder_rung(ladder: Ladder | None, rung: str) -> dict | None:
    """``ladder``'s result of this rung (its accuracy, n_test, run folder), or None."""
    r = ladder.rung(rung) if ladder is not None else None
    if r is None or "accuracy" not in r.get("metrics", {}):
        return None
    return {"report": ws.stored(ladder.project, ladder.folder), "accuracy": r["metrics"]["accuracy"],
            "n_test": ladder.data["n_test"], "run_dir": r.get("run_dir"), "test_hash": ladder.test_hash}


def _fit_classifier(config: ProjectConfig, train: list[Record], train_emb: np.ndarray):
    """The embedding-classifier rung's model, fitted as the ladder fits it, on cached embeddings."""
    from sklearn.linear_model import LogisticRegression

    from tunewise.rungs.encoder import train_subset

    labels, enc = config.task.labels, config.encoder
    keep = {r.id for r in train_subset(config, train)}
    idx = [i for i, r in enumerate(train) if r.id in keep]
    clf = LogisticRegression(C=enc.C, max_iter=2000, random_state=enc.seed)
    clf.fit(train_emb[idx], np.array([labels.index(train[i].target) for i in idx]))

    def predict(emb: np.ndarray) -> np.ndarray:
        out = np.zeros((len(emb), len(labels)))
        out[:, clf.classes_] = clf.predict_proba(emb)
        return out

    return predict


def _rung_probs(config, project, ladder, served_model, test, test_emb, train, train_emb) -> tuple:
    """(rung, source note, predict or None, test probabilities, test targets)."""
    labels = config.task.labels
    found = ladder_rung(ladder, served_model) if served_model else None
    preds_file = ws.resolve(project, found["run_dir"]) / "predictions.jsonl" if found and found.get("run_dir") else None
    if preds_file is not None and preds_file.exists():
        rows = [json.loads(line) for line in preds_file.read_text().splitlines() if line.strip()]
        if rows and all(r.get("scores") for r in rows):
            probs = softmax_rows([r["scores"] for r in rows], labels)
            note = (f"probabilities from the request log; calibrated on {served_model}'s test predictions "
                    f"({ws.stored(project, preds_file)})")
            return served_model, note, None, probs, [r.get("target") for r in rows]
    why = (f"no run of '{served_model}' with test predictions in the ladder to calibrate the log's probabilities on"
           if served_model else "the request log carries no probabilities")
    predict = _fit_classifier(config, train, train_emb)
    note = f"the monitor ran the {MONITOR_RUNG} rung itself ({why})"
    return MONITOR_RUNG, note, predict, predict(test_emb), [r.target for r in test]


def build_reference(config: ProjectConfig, project: Path, served_model: str | None = None,
                    embed: Callable | None = None, ladder: Ladder | None = None,
                    data: Dataset | None = None) -> Reference:
    """The reference of ``data`` (default: the dataset prepared for this config), its label checks
    calibrated on ``ladder`` (already checked to share its test split) when it measured the rung."""
    from tunewise.data.prepare import read_part

    data = data or locate.dataset(config, project)
    if data is None:
        raise DataError(f"{project}: no prepared dataset for this config and data (run `tunewise prepare {project}`)")
    train, test, digest, folder = read_part(data.folder, "train"), read_part(data.folder, "test"), data.hash, data.folder
    if embed is None:
        from tunewise.rungs.encoder import Embedder, encoder_dir

        embed = Embedder(encoder_dir(config, project), config.encoder.max_seq_length, config.encoder.batch_size)
    emb = _embeddings(config, project, digest, {"train": train, "test": test}, embed)
    mcfg = config.monitor
    rng = np.random.default_rng(mcfg.seed)
    sample = emb["train"][rng.choice(len(train), min(mcfg.reference_size, len(train)), replace=False)]
    # Each training row's distance to its nearest other training row: its 99th percentile is "far".
    own = drift.nearest_distance(emb["train"], emb["train"], exclude_self=True)
    threshold = float(np.quantile(own, 0.99))
    vocab = {w for r in train for w in drift.words(text(r))}
    ref = Reference(
        labels=config.task.labels, embed=embed, train_emb=emb["train"], sample=sample,
        bandwidth=drift.rbf_bandwidth(sample), nn_threshold=threshold, nn_far=int((own > threshold).sum()),
        train_len=np.array([len(drift.words(text(r))) for r in train]), vocab=vocab,
        test_new_vocab=drift.new_vocab_rate([text(r) for r in test], vocab), dataset=ws.stored(project, folder),
        held_far=int((drift.nearest_distance(emb["test"], emb["train"]) > threshold).sum()), held_n=len(test),
    )
    if config.task.type != "classification" or not test:
        ref.source = "no label checks: not a classification task" if test else "no label checks: empty test split"
        return ref
    rung, ref.source, ref.predict, probs, targets = _rung_probs(config, project, ladder, served_model, test,
                                                                emb["test"], train, emb["train"])
    pred = probs.argmax(1)
    correct = np.array([ref.labels[p] == t for p, t in zip(pred, targets, strict=True)])
    ref.rung, ref.test_conf, ref.n_test = rung, probs.max(1), len(targets)
    ref.test_counts = np.bincount(pred, minlength=len(ref.labels))
    ref.test_accuracy = float(correct.mean())
    ref.calibrator = drift.fit_calibrator(ref.test_conf, correct)
    ref.ladder = ladder_rung(ladder, rung)
    if ref.ladder is None or math.isnan(ref.ladder["accuracy"]):
        where = f"the ladder {ws.stored(project, ladder.folder)}/ has" if ladder is not None else "there is no finished ladder with"
        ref.ladder = {"report": None, "accuracy": ref.test_accuracy, "n_test": len(targets),
                      "note": f"{where} no run of {rung}: its accuracy measured by the monitor on the frozen test split"}
    return ref


def ood_reference(ref: Reference) -> tuple[int, int, str]:
    """(far rows, rows, which rows) a window's out-of-distribution count is compared with."""
    if ref.held_n:
        return ref.held_far, ref.held_n, "the frozen test split"
    # No held-out rows: the training rows' own share, 1% by construction; only approximately a fresh
    # row's chance of passing the threshold (see drift.ood_rate).
    return ref.nn_far, len(ref.train_emb), "the training rows themselves (no test split)"

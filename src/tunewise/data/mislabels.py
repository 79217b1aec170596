"""Suspected mislabels by confident learning on out-of-fold predictions of a cheap classifier.

Each row is embedded (MiniLM by default), a logistic regression predicts every row from the other
folds, and a row is suspected when another class clears that class's own threshold (the mean
predicted probability of the class over rows labelled with it) and beats the given label there
(Northcutt et al., "Confident Learning", 2021). Suspicion is ranked by how little probability the
given label received.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from tunewise.core import ProgressFn, no_progress

EmbedFn = Callable[[list[str]], np.ndarray]


EMBED_CHUNK = 128  # rows per progress step (two batches): the bar moves every few seconds on a CPU


def minilm_embedder(progress: ProgressFn = no_progress) -> EmbedFn:
    """The bundled all-MiniLM-L6-v2 encoder on CPU (offline); the bar advances by rows embedded."""
    from tunewise import assets

    assets.offline()
    path = assets.asset_path(assets.MINILM)
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the audit's own summary is the output, not loading bars
    model = SentenceTransformer(str(path), device="cpu")
    model.max_seq_length = 128  # a cheap classifier's view of each row: its first 128 tokens

    def embed(texts: list[str]) -> np.ndarray:
        advance = progress("audit: embedding rows for suspected_mislabels", len(texts))
        parts = []
        for i in range(0, len(texts), EMBED_CHUNK):
            chunk = texts[i:i + EMBED_CHUNK]
            parts.append(model.encode(chunk, batch_size=64, normalize_embeddings=True, show_progress_bar=False))
            advance(len(chunk))
        return np.concatenate(parts) if parts else np.zeros((0, 0))

    return embed


def tfidf_embedder(texts: list[str]) -> np.ndarray:
    """A cheap stand-in for tests and very large data: TF-IDF vectors of the texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(min_df=1).fit_transform(texts)


def suspected_mislabels(ids: list[str], texts: list[str], labels: list[str], embed: EmbedFn | None = None,
                        folds: int = 5, seed: int = 0, progress: ProgressFn = no_progress) -> dict:
    """The check's result: rows whose label disagrees confidently with out-of-fold predictions."""
    counts = Counter(labels)
    usable = [lab for lab, n in counts.items() if n >= folds]
    if len(usable) < 2:
        return {"count": 0, "items": [], "skipped": f"needs at least two labels with {folds}+ rows each"}
    keep = [i for i, lab in enumerate(labels) if lab in usable]
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = (embed or minilm_embedder(progress))([texts[i] for i in keep])
    y = np.array([labels[i] for i in keep])
    classes = sorted(usable)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probs = cross_val_predict(LogisticRegression(max_iter=1000), x, y, cv=cv, method="predict_proba")
    given = np.array([classes.index(lab) for lab in y])
    thresholds = np.array([probs[given == c, c].mean() for c in range(len(classes))])
    items = []
    for row, (p, g) in enumerate(zip(probs, given, strict=True)):
        above = np.flatnonzero(p >= thresholds)
        if not len(above):
            continue
        best = int(above[np.argmax(p[above])])
        if best != g:
            items.append({"id": ids[keep[row]], "given": classes[g], "suggested": classes[best],
                          "score": round(float(p[best]), 4), "given_prob": round(float(p[g]), 4)})
    items.sort(key=lambda it: (it["given_prob"], it["id"]))
    return {"count": len(items), "items": items, "method": f"confident learning, {folds}-fold logistic regression",
            "thresholds": {c: round(float(t), 4) for c, t in zip(classes, thresholds, strict=True)}}

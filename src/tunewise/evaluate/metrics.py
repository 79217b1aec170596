"""Classification metrics computed from label indices (numpy; no metric downloads)."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Rows are true labels, columns predicted labels."""
    return np.bincount(y_true * n_labels + y_pred, minlength=n_labels * n_labels).reshape(n_labels, n_labels)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(float)
    pred = cm.sum(0).astype(float)
    true = cm.sum(1).astype(float)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": true}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> float:
    """Macro-F1 over the labels present in ``y_true`` (absent labels would add a meaningless 0)."""
    cm = confusion(y_true, y_pred, n_labels)
    present = cm.sum(1) > 0
    return float(per_class(cm)["f1"][present].mean()) if present.any() else 0.0


def classification_report(y_true, y_pred, labels: list[str]) -> dict:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion(y_true, y_pred, len(labels))
    pc = per_class(cm)
    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": macro_f1(y_true, y_pred, len(labels)),
        "per_class": {
            lab: {k: float(pc[k][i]) for k in ("precision", "recall", "f1", "support")}
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
    }


def label_indices(values: list[str | None], labels: list[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    return np.array([index[v] for v in values], dtype=np.int64)


def evaluate_classification(targets: list[str], outputs: list[str], labels: list[str],
                            resamples: int = 1000, seed: int = 0) -> dict:
    """Accuracy (95% Wilson interval) and macro-F1 (95% bootstrap percentile interval), per-class scores
    and the confusion matrix."""
    from tunewise.evaluate.stats import bootstrap_ci, wilson_ci

    y_true, y_pred = label_indices(targets, labels), label_indices(outputs, labels)
    report = classification_report(y_true, y_pred, labels)
    correct = (y_true == y_pred).astype(float)
    report["accuracy_ci"] = list(wilson_ci(float(correct.sum()), len(correct)))
    report["macro_f1_ci"] = list(
        bootstrap_ci(lambda t, p: macro_f1(t, p, len(labels)), (y_true, y_pred), resamples, seed))
    report["n"] = len(y_true)
    return report

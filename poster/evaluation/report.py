"""One run's summary, with the checks a reproduction needs.

Accuracy with its Wilson 95 % interval beside the published figure (does the reproduction really
differ?), mean per-class accuracy, macro F1, the top confusions, suspected label errors
(confident learning) and the class-order diagnosis (would a relabeling explain the run?).
Accuracies are in percent, as in run.json.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..data import metrics
from ..data.label_errors import label_issue_mask
from ..data.label_order import diagnose

TOP_CONFUSIONS = 5
TOP_SUSPECTS = 10


def run_report(table: pd.DataFrame, class_names: Sequence[str], published_accuracy: float | None = None,
               *, top: int = TOP_CONFUSIONS, suspects: int = TOP_SUSPECTS) -> dict[str, Any]:
    """The report of one predictions table as a JSON-ready dict (percent)."""
    names = list(class_names)
    k = len(names)
    labels = table["label"].to_numpy(np.int64)
    preds = table["pred"].to_numpy(np.int64)
    n, right = len(labels), int((labels == preds).sum())
    matrix = metrics.confusion_matrix(labels, preds, k)
    low, high = metrics.wilson_interval(right, n)
    accuracy = 100 * right / n if n else 0.0
    report: dict[str, Any] = {
        "num_images": n,
        "metrics_unit": "percent",
        "accuracy": accuracy,
        "accuracy_ci": [100 * low, 100 * high],
        "published_accuracy": published_accuracy,
        "difference_to_published": None if published_accuracy is None else accuracy - published_accuracy,
        "published_within_ci": None if published_accuracy is None else bool(100 * low <= published_accuracy <= 100 * high),
        "mean_class_accuracy": 100 * metrics.mean_class_accuracy(labels, preds, k),
        "mean_class_accuracy_ci": [100 * v for v in metrics.mean_class_accuracy_interval(
            np.diag(matrix), matrix.sum(axis=1))],
        "macro_f1": 100 * metrics.macro_f1(labels, preds, k),
        "top_confusions": top_confusions(matrix, names, top),
        "suspected_label_errors": _suspects(table, names, labels, suspects),
        "label_order": _without_plain_accuracy(diagnose(matrix, names).to_dict(scale=100)),
    }
    return report


def top_confusions(matrix: np.ndarray, names: Sequence[str], top: int) -> list[dict[str, Any]]:
    """The largest off-diagonal cells: true class, predicted class, count, share of the true class."""
    totals = matrix.sum(axis=1)
    cells = [(int(matrix[i, j]), i, j) for i in range(len(names)) for j in range(len(names))
             if i != j and matrix[i, j] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"true": names[i], "predicted": names[j], "count": count, "share": count / int(totals[i])}
            for count, i, j in cells[:top]]


def _suspects(table: pd.DataFrame, names: list[str], labels: np.ndarray, top: int) -> dict[str, Any]:
    columns = [f"prob_{n}" for n in names]
    if not all(c in table for c in columns) or not len(table):
        return {"count": 0, "top": []}
    probs = table[columns].to_numpy(float)
    mask = label_issue_mask(labels, probs)
    quality = probs[np.arange(len(labels)), labels]
    order = [i for i in np.argsort(quality, kind="stable") if mask[i]]
    return {"count": int(mask.sum()), "top": [
        {"path": str(table["path"].iloc[i]), "label": names[labels[i]], "predicted": names[int(probs[i].argmax())],
         "label_probability": float(quality[i])} for i in order[:top]]}


def _without_plain_accuracy(order: dict[str, Any]) -> dict[str, Any]:
    order.pop("accuracy", None)  # the report's own accuracy says it already
    return order

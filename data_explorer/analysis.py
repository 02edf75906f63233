"""Questions about one run's predictions table, answered as plain pandas objects.

Every function takes the table written by `evaluate` (one row per image with ``label``, ``pred``,
``prob_<Class>`` columns, ``confidence``, ``margin``, ``loss``, ``correct``). Class names come
from the ``prob_`` columns, which are in the checkpoint's class order.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from poster.data import metrics

SortKey = Literal["loss", "confidence", "margin"]
SORT_KEYS = ("loss", "confidence", "margin")
PROB_PREFIX = "prob_"


def class_names_of(predictions: pd.DataFrame) -> list[str]:
    """The class names in checkpoint order, read from the ``prob_<Class>`` columns."""
    return [c[len(PROB_PREFIX):] for c in predictions.columns if c.startswith(PROB_PREFIX)]


def probabilities(predictions: pd.DataFrame) -> np.ndarray:
    """The (images, classes) probability matrix."""
    return predictions[[PROB_PREFIX + n for n in class_names_of(predictions)]].to_numpy(dtype=float)


def confusion(predictions: pd.DataFrame, *, normalize: bool = False) -> pd.DataFrame:
    """Confusion matrix, true classes as rows, predicted as columns; ``normalize`` divides each
    row by its total (rows of classes without images stay 0)."""
    names = class_names_of(predictions)
    matrix = metrics.confusion_matrix(predictions["label"], predictions["pred"], len(names))
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    return pd.DataFrame(matrix, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def class_report(predictions: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall, F1 (fractions) and support per class, indexed by class name."""
    names = class_names_of(predictions)
    scores = metrics.class_scores(predictions["label"], predictions["pred"], len(names))
    return pd.DataFrame({"precision": scores.precision, "recall": scores.recall, "f1": scores.f1,
                         "support": scores.support}, index=pd.Index(names, name="class"))


def confused_pairs(predictions: pd.DataFrame, top: int | None = 10) -> pd.DataFrame:
    """Off-diagonal cells by count: ``true``, ``predicted``, ``count`` and ``share`` of the true class."""
    counts = confusion(predictions)
    shares = confusion(predictions, normalize=True)
    rows = [(t, p, int(counts.loc[t, p]), float(shares.loc[t, p]))
            for t in counts.index for p in counts.columns if t != p and counts.loc[t, p] > 0]
    table = pd.DataFrame(rows, columns=["true", "predicted", "count", "share"])
    table = table.sort_values(["count", "share"], ascending=False, kind="stable").reset_index(drop=True)
    return table if top is None else table.head(top)


def summary(predictions: pd.DataFrame, published_accuracy: float | None = None) -> dict[str, Any]:
    """Headline numbers in percent, with the published accuracy and the difference to it."""
    names = class_names_of(predictions)
    labels, preds = predictions["label"], predictions["pred"]
    accuracy = 100 * metrics.accuracy(labels, preds)
    return {
        "images": len(predictions),
        "correct": int(predictions["correct"].sum()),
        "accuracy": accuracy,
        "published_accuracy": published_accuracy,
        "difference": None if published_accuracy is None else accuracy - published_accuracy,
        "mean_class_accuracy": 100 * metrics.mean_class_accuracy(labels, preds, len(names)),
        "macro_f1": 100 * metrics.macro_f1(labels, preds, len(names)),
    }


def select(predictions: pd.DataFrame, *, true: int | str | None = None, predicted: int | str | None = None,
           correct: bool | None = None, sort_by: SortKey | None = None, ascending: bool = False) -> pd.DataFrame:
    """The rows matching every given filter (class by index or name), optionally sorted.

    ``true=i, predicted=j`` is one confusion-matrix cell. Sorting is descending unless
    ``ascending``: highest loss or confidence first; pass ``ascending=True`` for the lowest margins.
    """
    names = class_names_of(predictions)
    mask = pd.Series(True, index=predictions.index)
    if true is not None:
        mask &= predictions["label"] == class_index(true, names)
    if predicted is not None:
        mask &= predictions["pred"] == class_index(predicted, names)
    if correct is not None:
        mask &= predictions["correct"] == correct
    rows = predictions[mask]
    if sort_by is not None:
        if sort_by not in SORT_KEYS:
            raise ValueError(f"cannot sort by {sort_by!r}; expected one of {', '.join(SORT_KEYS)}")
        rows = rows.sort_values(sort_by, ascending=ascending, kind="stable")
    return rows


def class_index(cls: int | str, names: list[str]) -> int:
    """The index of a class given by index or by name (any case)."""
    if isinstance(cls, (int, np.integer)):
        if not 0 <= cls < len(names):
            raise ValueError(f"class index {cls} outside 0..{len(names) - 1}")
        return int(cls)
    lowered = [n.lower() for n in names]
    if cls.lower() not in lowered:
        raise ValueError(f"unknown class {cls!r}; expected one of {', '.join(names)}")
    return lowered.index(cls.lower())

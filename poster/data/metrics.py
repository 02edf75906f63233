"""Classification metrics in plain numpy, shared by `evaluate` and the data explorer.

Each function gives the same numbers as its scikit-learn counterpart (the tests compare), without
making scikit-learn a runtime dependency. Labels and predictions are integer class indices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class ClassScores:
    """Per-class precision, recall, F1 and support, each an array of length num_classes."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray


def confusion_matrix(labels: ArrayLike, preds: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns (num_classes squared)."""
    labels, preds = _as_indices(labels, preds, num_classes)
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def accuracy(labels: ArrayLike, preds: ArrayLike) -> float:
    """Share of correct predictions, a fraction in [0, 1] (0 for no items)."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    return float(np.mean(labels == preds)) if labels.size else 0.0


def class_scores(labels: ArrayLike, preds: ArrayLike, num_classes: int) -> ClassScores:
    """Per-class scores; a class without predictions (or without items) scores 0, as sklearn does."""
    return scores_from_confusion(confusion_matrix(labels, preds, num_classes))


def scores_from_confusion(matrix: np.ndarray) -> ClassScores:
    """Per-class scores of a confusion matrix (true classes as rows)."""
    true_positive = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _divide(true_positive, predicted)
    recall = _divide(true_positive, support)
    # 2tp / (2tp + fp + fn) is sklearn's formula; it equals the harmonic mean without 0/0 cases.
    f1 = _divide(2 * true_positive, support + predicted)
    return ClassScores(precision=precision, recall=recall, f1=f1, support=support)


def mean_class_accuracy(labels: ArrayLike, preds: ArrayLike, num_classes: int) -> float:
    """Mean recall over the classes that have items (sklearn's balanced accuracy)."""
    scores = class_scores(labels, preds, num_classes)
    present = scores.support > 0
    return float(scores.recall[present].mean()) if present.any() else 0.0


def macro_f1(labels: ArrayLike, preds: ArrayLike, num_classes: int) -> float:
    """Mean F1 over the classes seen in labels or predictions (sklearn's default for macro F1)."""
    matrix = confusion_matrix(labels, preds, num_classes)
    scores = scores_from_confusion(matrix)
    seen = (scores.support > 0) | (matrix.sum(axis=0) > 0)
    return float(scores.f1[seen].mean()) if seen.any() else 0.0


Z_95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default), as fractions in [0, 1].

    Unlike the normal approximation it stays inside [0, 1] and is sensible near 0 %, 100 % and for
    few items; with no items it is the whole of [0, 1].
    """
    if total <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= total:
        raise ValueError(f"{successes} successes out of {total}")
    p = successes / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z / (1 + z2 / total) * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_class_accuracy_interval(hits: ArrayLike, support: ArrayLike, samples: int = 10_000,
                                 seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean per-class accuracy (fractions), by a class-stratified bootstrap.

    A mean of proportions has no Wilson interval; resampling each class's images on their own
    (a binomial draw of its hits) keeps every class's size, as a test set fixes them. Classes
    without images are left out, as ``mean_class_accuracy`` does.
    """
    hits, support = np.asarray(hits, dtype=np.int64), np.asarray(support, dtype=np.int64)
    present = support > 0
    if not present.any():
        return 0.0, 1.0
    hits, support = hits[present], support[present]
    rng = np.random.default_rng(seed)
    drawn = rng.binomial(support, hits / support, size=(samples, len(support))) / support
    low, high = np.percentile(drawn.mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the disagreements against 1/2."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)  # Python's int / int stays exact enough for any n


def _as_indices(labels: ArrayLike, preds: ArrayLike, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).ravel()
    preds = np.asarray(preds, dtype=np.int64).ravel()
    if labels.shape != preds.shape:
        raise ValueError(f"{labels.size} labels but {preds.size} predictions")
    for name, values in (("label", labels), ("prediction", preds)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} outside 0..{num_classes - 1}")
    return labels, preds


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    denominator = np.asarray(denominator, dtype=float)
    return np.divide(numerator, denominator, out=np.zeros_like(denominator), where=denominator > 0)

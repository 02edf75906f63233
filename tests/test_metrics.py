"""poster.data.metrics gives scikit-learn's numbers without importing it."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as sk

from poster.data import metrics

K = 7


def cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, 300)
    noisy = np.where(rng.random(300) < 0.7, labels, rng.integers(0, K, 300))
    return [
        (labels, noisy),                                  # typical
        (labels, labels.copy()),                          # all correct
        (np.array([0, 0, 1, 1, 2]), np.array([0, 3, 1, 3, 3])),  # classes never predicted / never true
        (np.array([4, 4, 4]), np.array([5, 5, 5])),       # nothing right
        (np.array([6]), np.array([6])),                   # one item
    ]


@pytest.mark.parametrize("labels, preds", cases())
def test_every_metric_equals_sklearn(labels: np.ndarray, preds: np.ndarray) -> None:
    every = list(range(K))
    matrix = metrics.confusion_matrix(labels, preds, K)
    np.testing.assert_array_equal(matrix, sk.confusion_matrix(labels, preds, labels=every))
    assert matrix.sum() == len(labels)
    assert metrics.accuracy(labels, preds) == pytest.approx(sk.accuracy_score(labels, preds))

    scores = metrics.class_scores(labels, preds, K)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        labels, preds, labels=every, zero_division=0)
    np.testing.assert_allclose(scores.precision, precision)
    np.testing.assert_allclose(scores.recall, recall)
    np.testing.assert_allclose(scores.f1, f1)
    np.testing.assert_array_equal(scores.support, support)

    assert metrics.macro_f1(labels, preds, K) == pytest.approx(
        sk.f1_score(labels, preds, average="macro", zero_division=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes predicted but never true
        balanced = sk.balanced_accuracy_score(labels, preds)
    assert metrics.mean_class_accuracy(labels, preds, K) == pytest.approx(balanced)


def test_no_items_gives_zeros() -> None:
    empty = np.array([], dtype=int)
    assert metrics.confusion_matrix(empty, empty, K).sum() == 0
    assert metrics.accuracy(empty, empty) == 0.0
    assert metrics.mean_class_accuracy(empty, empty, K) == 0.0
    assert metrics.macro_f1(empty, empty, K) == 0.0


def test_rejects_out_of_range_and_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix([0, 7], [0, 1], K)
    with pytest.raises(ValueError, match="labels but"):
        metrics.confusion_matrix([0, 1], [0], K)


def test_library_does_not_import_sklearn() -> None:
    source = Path(metrics.__file__).read_text()
    assert not re.search(r"^\s*(import|from)\s+sklearn", source, re.MULTILINE)

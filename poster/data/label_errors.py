"""Test images whose given label looks wrong, by confident learning (Northcutt et al., 2021).

An image is suspect when the model is confident of another class (its probability for that
class reaches the class's threshold: the mean probability the model gives the class on images
labeled with it) and does not predict the given label. cleanlab computes this when installed; the
numpy version below is the same rule (the tests check they agree), for installs without it.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

Engine = Literal["auto", "cleanlab", "numpy"]

# cleanlab's constants: thresholds never fall below this, and comparisons allow this slack.
_THRESHOLD_FLOOR = 2e-6
_TOLERANCE = 1e-6


def label_issue_mask(labels: np.ndarray, probs: np.ndarray, *, engine: Engine = "auto") -> np.ndarray:
    """Boolean mask of the suspected label errors among ``labels`` given model ``probs``."""
    labels = np.asarray(labels, dtype=np.int64)
    if engine == "auto":
        # cleanlab refuses a single labeled class; the rule itself still applies.
        engine = "cleanlab" if _has_cleanlab() and len(np.unique(labels)) >= 2 else "numpy"
    if engine == "cleanlab":
        from cleanlab.filter import find_label_issues

        return find_label_issues(labels, probs, filter_by="confident_learning", n_jobs=1)
    if engine == "numpy":
        return _confident_learning_mask(labels, probs)
    raise ValueError(f"unknown engine {engine!r}; expected auto, cleanlab or numpy")


def _confident_learning_mask(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    if not len(labels):
        return np.zeros(0, dtype=bool)
    rows = np.arange(len(labels))
    num_classes = probs.shape[1]
    # Threshold of class k: mean probability of k over images labeled k; classes without images
    # get an unreachable threshold, so no image is confidently counted as one of them.
    thresholds = np.array([probs[labels == k, k].mean() if (labels == k).any() else 2.0
                           for k in range(num_classes)]).clip(min=_THRESHOLD_FLOOR)
    confident = probs >= thresholds - _TOLERANCE
    count = confident.sum(axis=1)
    guess = np.where(count > 1, probs.argmax(axis=1), confident.argmax(axis=1))
    off_diagonal = (count > 0) & (guess != labels)
    # Never flag an image whose prediction is its label (ties broken toward the label).
    nudged = probs.copy()
    nudged[rows, labels] += _TOLERANCE
    return off_diagonal & (nudged.argmax(axis=1) != labels)


def _has_cleanlab() -> bool:
    try:
        import cleanlab.filter  # noqa: F401
    except ImportError:
        return False
    return True

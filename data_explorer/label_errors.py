"""Test images whose given label looks wrong, ranked for a person to look at.

The rule (confident learning, Northcutt et al., 2021) lives in ``poster.data.label_errors``; suspects
are ranked by self-confidence, the probability of the given label, lowest first.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from data_explorer.analysis import probabilities
from poster.data.label_errors import Engine, label_issue_mask

__all__ = ["suspected_label_errors", "label_issue_mask", "Engine"]


def suspected_label_errors(predictions: pd.DataFrame, *, engine: Engine = "auto") -> pd.DataFrame:
    """Rows of the suspects, lowest ``label_quality`` (probability of the given label) first."""
    probs = probabilities(predictions)
    labels = predictions["label"].to_numpy(dtype=np.int64)
    quality = probs[np.arange(len(labels)), labels] if len(labels) else np.zeros(0)
    mask = label_issue_mask(labels, probs, engine=engine)
    suspects = predictions.assign(label_quality=quality)[mask]
    return suspects.sort_values("label_quality", kind="stable")

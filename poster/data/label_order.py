"""Is a run's class order wrong? The best one-to-one relabeling of its confusion matrix.

The classic failure is class folders in another order than the checkpoint expects: the model is
fine, yet each labeled class is mostly predicted as one other class, and the accuracy collapses
(POSTER++ on AffectNet at 11 %). The relabeling that puts the most images on the diagonal is an
assignment problem on the confusion matrix; when it explains the run much better than the
labels as given, the order is suspect.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .metrics import mcnemar_exact

# Suspect only a relabeling that helps a lot: at least this many more images right, as a share of
# all images, and far beyond chance: the best of many permutations always gains a little on a weak
# run, so the images it gains must outnumber those it loses at this McNemar p-value.
MIN_GAIN = 0.10
MAX_P = 1e-3


@dataclass(frozen=True)
class LabelOrder:
    """The best relabeling of a run and whether it points to a wrong class order."""

    suspected: bool
    mapping: dict[str, str]  # each labeled class -> the class the model sees in its images
    accuracy: float  # as labeled, a fraction
    accuracy_if_remapped: float  # after the relabeling, a fraction

    def to_dict(self, scale: float = 1.0) -> dict:
        """JSON-ready; ``scale=100`` gives the accuracies in percent."""
        return {"suspected": self.suspected, "mapping": dict(self.mapping),
                "accuracy": scale * self.accuracy, "accuracy_if_remapped": scale * self.accuracy_if_remapped}


def best_assignment(matrix: np.ndarray) -> np.ndarray:
    """``column[i]`` for each row ``i`` so that the sum of ``matrix[i, column[i]]`` is largest.

    scipy's ``linear_sum_assignment`` when scipy is installed, else the Hungarian algorithm below.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {matrix.shape}")
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return hungarian_max(matrix)
    rows, columns = linear_sum_assignment(matrix, maximize=True)
    return columns[np.argsort(rows)]


def hungarian_max(matrix: np.ndarray) -> np.ndarray:
    """The maximum-weight assignment of a square matrix by the Hungarian algorithm, O(n^3).

    Shortest augmenting paths with row and column potentials (Kuhn-Munkres as Jonker and
    Volgenant state it), on the costs ``-matrix``.
    """
    cost = -np.asarray(matrix, dtype=float)
    n = cost.shape[0]
    row_potential = np.zeros(n + 1)
    column_potential = np.zeros(n + 1)
    owner = np.zeros(n + 1, dtype=int)  # owner[j]: the row (1-based) assigned to column j; 0 = free
    for row in range(1, n + 1):
        owner[0] = row
        column = 0
        slack = np.full(n + 1, np.inf)
        previous = np.zeros(n + 1, dtype=int)
        used = np.zeros(n + 1, dtype=bool)
        while True:  # grow the tree until it reaches a free column
            used[column] = True
            current = owner[column]
            delta, next_column = np.inf, 0
            for j in range(1, n + 1):
                if used[j]:
                    continue
                reduced = cost[current - 1, j - 1] - row_potential[current] - column_potential[j]
                if reduced < slack[j]:
                    slack[j], previous[j] = reduced, column
                if slack[j] < delta:
                    delta, next_column = slack[j], j
            for j in range(n + 1):
                if used[j]:
                    row_potential[owner[j]] += delta
                    column_potential[j] -= delta
                else:
                    slack[j] -= delta
            column = next_column
            if owner[column] == 0:
                break
        while column:  # flip the augmenting path
            owner[column] = owner[previous[column]]
            column = previous[column]
    assignment = np.zeros(n, dtype=int)
    for j in range(1, n + 1):
        assignment[owner[j] - 1] = j - 1
    return assignment


def diagnose(matrix: np.ndarray, class_names: Sequence[str]) -> LabelOrder:
    """The best relabeling of ``matrix`` (true classes as rows) and whether it is suspect."""
    matrix = np.asarray(matrix)
    total = int(matrix.sum())
    columns = best_assignment(matrix)
    names = list(class_names)
    if total == 0:
        return LabelOrder(False, {n: n for n in names}, 0.0, 0.0)
    accuracy = float(np.trace(matrix)) / total
    remapped = float(matrix[np.arange(len(names)), columns].sum()) / total
    # Another assignment may tie with the diagonal; then the labels as given are not worse.
    if remapped <= accuracy:
        columns, remapped = np.arange(len(names)), accuracy
    moved = [i for i in range(len(names)) if columns[i] != i]
    gained = int(sum(matrix[i, columns[i]] for i in moved))
    lost = int(sum(matrix[i, i] for i in moved))
    suspected = remapped - accuracy >= MIN_GAIN and mcnemar_exact(gained, lost) < MAX_P
    mapping = {names[i]: names[int(columns[i])] for i in range(len(names))}
    return LabelOrder(bool(suspected), mapping, accuracy, remapped)

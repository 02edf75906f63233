"""Two runs on the images they share, with the statistics.

Images are matched by their path in the dataset. Each accuracy gets its Wilson 95 % interval;
the difference gets a paired bootstrap interval (resampling images, so both models are judged
on the same resample) and McNemar's exact test, which looks only at the images on which the two
disagree. Accuracies are in percent, as in run.json.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data.metrics import mcnemar_exact, wilson_interval

BOOTSTRAP_SAMPLES = 10_000
CELLS = ("both_correct", "only_a", "only_b", "both_wrong")


@dataclass(frozen=True)
class Comparison:
    """Run A against run B on ``n`` shared images; accuracies and differences in percent."""

    n: int
    both_correct: int
    only_a: int
    only_b: int
    both_wrong: int
    accuracy_a: float
    accuracy_b: float
    accuracy_a_ci: tuple[float, float]
    accuracy_b_ci: tuple[float, float]
    difference: float  # accuracy_a - accuracy_b
    difference_ci: tuple[float, float]
    mcnemar_p: float
    only_in_a: int  # images of A that B did not evaluate
    only_in_b: int
    label_mismatches: int  # shared paths the two runs label differently (left out)
    per_class: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"metrics_unit": "percent"}


def paired_table(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, int, int, int]:
    """The images both tables hold, one row each: ``path``, ``label_name``, then ``pred_name``,
    ``confidence`` and ``correct`` of each run suffixed ``_a``/``_b``; and the counts of images
    only in A, only in B, and shared images whose labels differ (which are dropped)."""
    wanted = ["path", "label_name", "pred_name", "confidence", "correct"]
    left, right = _named(a)[wanted], _named(b)[wanted]
    left, right = left.drop_duplicates("path"), right.drop_duplicates("path")
    merged = left.merge(right, on="path", suffixes=("_a", "_b"), validate="one_to_one")
    same_label = merged["label_name_a"].str.lower() == merged["label_name_b"].str.lower()
    mismatches = int((~same_label).sum())
    merged = merged[same_label].rename(columns={"label_name_a": "label_name"}).drop(columns="label_name_b")
    only_in_a = len(left) - len(merged) - mismatches
    only_in_b = len(right) - len(merged) - mismatches
    return merged.sort_values("path", kind="stable").reset_index(drop=True), only_in_a, only_in_b, mismatches


def _named(table: pd.DataFrame) -> pd.DataFrame:
    """A predictions table with the columns a comparison reads (older tables may lack a few)."""
    table = table.copy()
    if "correct" not in table:
        table["correct"] = table["label"] == table["pred"]
    for column, source in (("label_name", "label"), ("pred_name", "pred")):
        if column not in table:
            table[column] = table[source].astype(str)
    if "confidence" not in table:
        table["confidence"] = np.nan
    table["correct"] = table["correct"].astype(bool)
    return table


def cell_of(row_correct_a: bool, row_correct_b: bool) -> str:
    """The name of the 2x2 cell an image falls in."""
    if row_correct_a:
        return "both_correct" if row_correct_b else "only_a"
    return "only_b" if row_correct_b else "both_wrong"


def paired_bootstrap(counts: tuple[int, int, int, int], samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of accuracy A minus accuracy B (fractions), resampling images.

    The difference depends only on how many resampled images fall in each 2x2 cell, so the
    resamples are drawn as multinomial cell counts: the same distribution as resampling rows.
    """
    n = sum(counts)
    if n == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(n, np.asarray(counts, dtype=float) / n, size=samples)
    differences = (drawn[:, 1] - drawn[:, 2]) / n
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(low), float(high)


def compare_tables(a: pd.DataFrame, b: pd.DataFrame, *, samples: int = BOOTSTRAP_SAMPLES,
                   seed: int = 0) -> Comparison:
    """Compare two predictions tables on the images they share."""
    shared, only_in_a, only_in_b, mismatches = paired_table(a, b)
    ca, cb = shared["correct_a"].to_numpy(bool), shared["correct_b"].to_numpy(bool)
    counts = (int((ca & cb).sum()), int((ca & ~cb).sum()), int((~ca & cb).sum()), int((~ca & ~cb).sum()))
    n = len(shared)
    low, high = paired_bootstrap(counts, samples, seed)
    per_class = []
    for name, rows in shared.groupby("label_name", sort=False):
        k = len(rows)
        right_a, right_b = int(rows["correct_a"].sum()), int(rows["correct_b"].sum())
        per_class.append({"class": name, "n": k, "accuracy_a": 100 * right_a / k, "accuracy_b": 100 * right_b / k,
                          "difference": 100 * (right_a - right_b) / k,
                          "accuracy_a_ci": _percent(wilson_interval(right_a, k)),
                          "accuracy_b_ci": _percent(wilson_interval(right_b, k))})
    per_class.sort(key=lambda c: str(c["class"]))
    right_a, right_b = counts[0] + counts[1], counts[0] + counts[2]
    return Comparison(
        n=n, both_correct=counts[0], only_a=counts[1], only_b=counts[2], both_wrong=counts[3],
        accuracy_a=100 * right_a / n if n else 0.0, accuracy_b=100 * right_b / n if n else 0.0,
        accuracy_a_ci=_percent(wilson_interval(right_a, n)), accuracy_b_ci=_percent(wilson_interval(right_b, n)),
        difference=100 * (right_a - right_b) / n if n else 0.0, difference_ci=(100 * low, 100 * high),
        mcnemar_p=mcnemar_exact(counts[1], counts[2]), only_in_a=only_in_a, only_in_b=only_in_b,
        label_mismatches=mismatches, per_class=per_class)


def _percent(interval: tuple[float, float]) -> tuple[float, float]:
    return 100 * interval[0], 100 * interval[1]

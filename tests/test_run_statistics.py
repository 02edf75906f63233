"""Intervals, run comparison, class-order diagnosis and the report/compare commands."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from poster.data import metrics
from poster.cli import main
from poster.evaluation.compare import compare_tables, paired_bootstrap
from poster.data.metrics import mcnemar_exact
from poster.evaluation.run import predictions_table, write_run
from poster.data.label_order import best_assignment, diagnose, hungarian_max
from poster.models.poster_v2 import PosterV2Weights
from poster.evaluation.report import run_report

NAMES = PosterV2Weights.RAF_DB.value.class_names


def table(labels, preds, paths=None, names=NAMES) -> pd.DataFrame:
    """A predictions table whose argmax is ``preds`` (confidence 0.6 on the predicted class)."""
    k = len(names)
    probs = np.full((len(preds), k), 0.4 / (k - 1))
    probs[np.arange(len(preds)), preds] = 0.6
    paths = paths or [f"test/{label + 1}/img_{i:04d}.jpg" for i, label in enumerate(labels)]
    return predictions_table(torch.from_numpy(np.log(probs)), list(labels), paths, names)


# --- Wilson intervals ----------------------------------------------------------------------------

@pytest.mark.parametrize("k, n", [(81, 100), (0, 10), (10, 10), (1, 3), (2829, 3068), (500, 1000)])
def test_wilson_interval_equals_scipy(k: int, n: int) -> None:
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert metrics.wilson_interval(k, n) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_wilson_interval_edges() -> None:
    assert metrics.wilson_interval(0, 0) == (0.0, 1.0)
    low, high = metrics.wilson_interval(3068, 3068)
    assert high == 1.0 and 0.998 < low < 1.0
    with pytest.raises(ValueError):
        metrics.wilson_interval(5, 4)


# --- Comparison ----------------------------------------------------------------------------------

@pytest.mark.parametrize("b, c", [(0, 0), (5, 0), (3, 9), (40, 60), (700, 650)])
def test_mcnemar_exact_is_the_binomial_test_of_disagreements(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_paired_bootstrap_matches_resampling_images() -> None:
    rng = np.random.default_rng(1)
    correct_a = rng.random(400) < 0.8
    correct_b = np.where(rng.random(400) < 0.85, correct_a, ~correct_a)
    counts = (int((correct_a & correct_b).sum()), int((correct_a & ~correct_b).sum()),
              int((~correct_a & correct_b).sum()), int((~correct_a & ~correct_b).sum()))
    low, high = paired_bootstrap(counts, samples=20_000, seed=3)
    rows = rng.integers(0, 400, size=(20_000, 400))
    differences = correct_a[rows].mean(axis=1) - correct_b[rows].mean(axis=1)
    expected = np.percentile(differences, [2.5, 97.5])
    assert (low, high) == pytest.approx(tuple(expected), abs=0.006)
    assert low < (counts[1] - counts[2]) / 400 < high


def test_runs_are_matched_by_path_and_compared_on_shared_images() -> None:
    labels = [0, 1, 2, 3, 4, 5, 6, 3, 3, 3]
    a = table(labels, [0, 1, 2, 3, 4, 5, 6, 0, 3, 1])          # right on 0..6, 8
    b = table(labels, [0, 0, 2, 3, 1, 5, 6, 3, 3, 3])          # right on 0, 2, 3, 5..9
    b = b.iloc[::-1].reset_index(drop=True)                     # another row order
    extra = table([6], [6], paths=["test/7/only_b.jpg"])
    b = pd.concat([b.drop(index=0), extra], ignore_index=True)  # B lacks img_0009, has one A lacks
    c = compare_tables(a, b, samples=2000)
    assert c.n == 9 and c.only_in_a == 1 and c.only_in_b == 1 and c.label_mismatches == 0
    # Shared img_0000..img_0008: A right on 0-6 and 8 (8 of 9); B right on 0, 2, 3, 5, 6, 7, 8 (7 of 9).
    assert (c.both_correct, c.only_a, c.only_b, c.both_wrong) == (6, 2, 1, 0)
    assert c.accuracy_a == pytest.approx(800 / 9) and c.accuracy_b == pytest.approx(700 / 9)
    assert c.accuracy_a_ci == pytest.approx(tuple(100 * v for v in metrics.wilson_interval(8, 9)))
    assert c.difference == pytest.approx(100 / 9)
    assert c.difference_ci[0] <= c.difference <= c.difference_ci[1]
    assert c.mcnemar_p == pytest.approx(1.0)
    by_class = {p["class"]: p for p in c.per_class}
    assert by_class["Happiness"]["n"] == 3 and by_class["Happiness"]["difference"] == pytest.approx(-100 / 3)
    assert by_class["Fear"]["accuracy_a"] == 100 and by_class["Fear"]["accuracy_b"] == 0


def test_shared_paths_with_different_labels_are_left_out() -> None:
    a = table([0, 1, 2], [0, 1, 2])
    b = table([0, 1, 5], [0, 1, 5], paths=list(a["path"]))
    c = compare_tables(a, b, samples=100)
    assert (c.n, c.label_mismatches, c.only_in_a, c.only_in_b) == (2, 1, 0, 0)


# --- Class order ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_hungarian_finds_the_optimum_scipy_finds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = rng.integers(0, 50, size=(8, 8)).astype(float)
    ours = hungarian_max(matrix)
    assert sorted(ours) == list(range(8))
    best = best_assignment(matrix)
    assert matrix[np.arange(8), ours].sum() == matrix[np.arange(8), best].sum()


def test_swapped_class_folders_are_diagnosed() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 700)
    preds = np.where(rng.random(700) < 0.85, labels, rng.integers(0, 7, 700))
    swap = {0: 3, 3: 0, 1: 6, 6: 1}  # folders 1<->4 and 2<->7 exchanged
    wrong = np.array([swap.get(int(x), int(x)) for x in labels])
    matrix = metrics.confusion_matrix(wrong, preds, 7)
    order = diagnose(matrix, NAMES)
    assert order.suspected
    assert order.mapping["Surprise"] == "Happiness" and order.mapping["Happiness"] == "Surprise"
    assert order.mapping["Fear"] == "Neutral" and order.mapping["Disgust"] == "Disgust"
    assert order.accuracy_if_remapped == pytest.approx(float((labels == preds).mean()))
    assert order.accuracy < 0.6


def test_a_good_or_a_chance_level_run_is_not_suspected() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 700)
    good = np.where(rng.random(700) < 0.85, labels, rng.integers(0, 7, 700))
    assert not diagnose(metrics.confusion_matrix(labels, good, 7), NAMES).suspected
    chance = rng.integers(0, 7, 700)
    order = diagnose(metrics.confusion_matrix(labels, chance, 7), NAMES)
    assert not order.suspected and order.accuracy_if_remapped >= order.accuracy
    empty = diagnose(np.zeros((7, 7), dtype=int), NAMES)
    assert not empty.suspected and empty.mapping["Fear"] == "Fear"


# --- Commands ------------------------------------------------------------------------------------

def _run_dir(folder: Path, frame: pd.DataFrame) -> Path:
    return write_run(folder, frame, {"checkpoint": "raf-db", "class_names": list(NAMES), "published_accuracy": 92.21})


def test_report_command_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 7, 300)
    preds = np.where(rng.random(300) < 0.9, labels, rng.integers(0, 7, 300))
    swap = {2: 4, 4: 2}
    wrong = [swap.get(int(x), int(x)) for x in labels]
    run = _run_dir(tmp_path / "run", table(wrong, preds))
    assert main(["report", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    right = int((np.array(wrong) == preds).sum())
    assert report["accuracy"] == pytest.approx(100 * right / 300)
    assert report["accuracy_ci"] == pytest.approx([100 * v for v in metrics.wilson_interval(right, 300)])
    assert report["published_accuracy"] == 92.21 and report["published_within_ci"] is False
    assert report["label_order"]["suspected"] is True
    assert report["label_order"]["mapping"]["Disgust"] == "Sadness"
    assert report["label_order"]["accuracy_if_remapped"] == pytest.approx(100 * float((labels == preds).mean()))
    top = report["top_confusions"][0]
    assert {top["true"], top["predicted"]} == {"Disgust", "Sadness"}
    assert set(report) >= {"mean_class_accuracy", "mean_class_accuracy_ci", "macro_f1", "suspected_label_errors",
                           "num_images"}
    assert main(["report", str(run)]) == 0
    text = capsys.readouterr().out
    assert "class order looks wrong" in text and "95 % CI" in text


def test_report_of_the_same_table_equals_run_report(tmp_path: Path) -> None:
    frame = table([0, 1, 2, 3], [0, 1, 3, 3])
    report = run_report(frame, NAMES, None)
    assert report["accuracy"] == 75 and report["published_within_ci"] is None
    assert report["top_confusions"] == [{"true": "Disgust", "predicted": "Happiness", "count": 1, "share": 1.0}]


def test_compare_command_json_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    labels = [0, 1, 2, 3, 4, 5, 6] * 6
    a = _run_dir(tmp_path / "a", table(labels, labels))
    b = _run_dir(tmp_path / "b", table(labels, [0] * 42))
    assert main(["compare", str(a), str(b), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {k: result[k] for k in ("n", "both_correct", "only_a", "only_b", "both_wrong")} == \
        {"n": 42, "both_correct": 6, "only_a": 36, "only_b": 0, "both_wrong": 0}
    assert result["accuracy_a"] == 100 and result["accuracy_b"] == pytest.approx(100 / 7)
    assert result["mcnemar_p"] == pytest.approx(2 * 0.5**36)
    assert main(["compare", str(a), str(b)]) == 0
    assert "compared on the 42 images they share" in capsys.readouterr().out
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 1
    assert "is not a run folder" in capsys.readouterr().err


def test_mean_class_accuracy_interval_covers_the_value_and_narrows_with_more_images() -> None:
    support = np.array([50, 20, 80, 0, 30])
    hits = np.array([45, 10, 60, 0, 27])
    value = float(np.mean(hits[support > 0] / support[support > 0]))
    low, high = metrics.mean_class_accuracy_interval(hits, support)
    assert low < value < high and 0.05 < high - low < 0.2
    wide = metrics.mean_class_accuracy_interval(hits, support)
    narrow = metrics.mean_class_accuracy_interval(hits * 10, support * 10)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2
    assert metrics.mean_class_accuracy_interval([0], [0]) == (0.0, 1.0)

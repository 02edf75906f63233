"""data_explorer: finding runs, confusion analysis, filters and suspected label errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as sk

from data_explorer import analysis
from data_explorer.label_errors import label_issue_mask, suspected_label_errors
from data_explorer.runs import find_runs, load_run
from poster.evaluation.run import predictions_table, write_run
from poster.models.poster_v2 import PosterV2Weights

NAMES = PosterV2Weights.RAF_DB.value.class_names  # Surprise, Fear, Disgust, Happiness, ...

# (label, predicted class, its probability); the rest of each row is spread evenly.
ROWS = [(0, 0, 0.90), (0, 1, 0.80), (1, 1, 0.70), (1, 0, 0.50),
        (2, 2, 0.60), (0, 1, 0.55), (3, 3, 0.95), (2, 0, 0.40)]


def table_from(rows: list[tuple[int, int, float]], names: tuple[str, ...] = NAMES) -> pd.DataFrame:
    probs = np.array([[p if k == pred else (1 - p) / (len(names) - 1) for k in range(len(names))]
                      for _, pred, p in rows])
    labels = [label for label, _, _ in rows]
    paths = [f"test/{label + 1}/img_{i}.jpg" for i, label in enumerate(labels)]
    return predictions_table(torch.from_numpy(np.log(probs)), labels, paths, names)


@pytest.fixture
def table() -> pd.DataFrame:
    return table_from(ROWS)


# --- Analysis ---------------------------------------------------------------------------------

def test_confusion_counts_and_row_normalized(table: pd.DataFrame) -> None:
    counts = analysis.confusion(table)
    assert list(counts.index) == list(NAMES) and list(counts.columns) == list(NAMES)
    assert counts.to_numpy().sum() == len(table)
    np.testing.assert_array_equal(counts.to_numpy(), sk.confusion_matrix(table.label, table.pred, labels=range(7)))
    assert counts.loc["Surprise", "Fear"] == 2
    shares = analysis.confusion(table, normalize=True)
    np.testing.assert_allclose(shares.loc["Surprise"].to_numpy(), [1 / 3, 2 / 3, 0, 0, 0, 0, 0])
    assert shares.loc["Neutral"].sum() == 0  # no images of that class


def test_class_report_equals_sklearn(table: pd.DataFrame) -> None:
    report = analysis.class_report(table)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        table.label, table.pred, labels=range(7), zero_division=0)
    np.testing.assert_allclose(report[["precision", "recall", "f1"]].to_numpy().T, [precision, recall, f1])
    np.testing.assert_array_equal(report["support"], support)
    assert list(report.index) == list(NAMES)


def test_confused_pairs_most_first(table: pd.DataFrame) -> None:
    pairs = analysis.confused_pairs(table)
    assert pairs.to_dict("records") == [
        {"true": "Surprise", "predicted": "Fear", "count": 2, "share": pytest.approx(2 / 3)},
        {"true": "Fear", "predicted": "Surprise", "count": 1, "share": 0.5},
        {"true": "Disgust", "predicted": "Surprise", "count": 1, "share": 0.5},
    ]
    assert len(analysis.confused_pairs(table, top=1)) == 1


def test_summary_next_to_published_figure(table: pd.DataFrame) -> None:
    summary = analysis.summary(table, published_accuracy=92.21)
    assert summary["images"] == 8 and summary["correct"] == 4
    assert summary["accuracy"] == pytest.approx(50.0)
    assert summary["difference"] == pytest.approx(50.0 - 92.21)
    assert summary["mean_class_accuracy"] == pytest.approx(100 * sk.balanced_accuracy_score(table.label, table.pred))
    assert summary["macro_f1"] == pytest.approx(100 * sk.f1_score(table.label, table.pred, average="macro"))
    assert analysis.summary(table)["difference"] is None


def test_filters_return_exactly_the_expected_rows(table: pd.DataFrame) -> None:
    def rows(**filters) -> list[int]:
        return analysis.select(table, **filters).index.tolist()

    assert rows(true=0, predicted=1) == [1, 5]                       # one confusion cell
    assert rows(true="surprise", predicted="Fear") == [1, 5]         # by name, any case
    assert rows(true=0) == [0, 1, 5]
    assert rows(predicted="Fear") == [1, 2, 5]
    assert rows(correct=False) == [1, 3, 5, 7]
    assert rows(correct=True) == [0, 2, 4, 6]
    assert rows(true=0, correct=True) == [0]
    assert rows(true="Neutral") == []
    assert len(rows()) == len(table)


def test_sorting_by_loss_confidence_and_margin(table: pd.DataFrame) -> None:
    wrong = analysis.select(table, correct=False, sort_by="loss")
    assert wrong["loss"].is_monotonic_decreasing and wrong.index.tolist() == [1, 5, 3, 7]
    by_confidence = analysis.select(table, sort_by="confidence")
    assert by_confidence.index.tolist()[:2] == [6, 0]
    by_margin = analysis.select(table, sort_by="margin", ascending=True)
    assert by_margin["margin"].is_monotonic_increasing and by_margin.index[0] == 7
    with pytest.raises(ValueError, match="cannot sort by"):
        analysis.select(table, sort_by="path")
    with pytest.raises(ValueError, match="unknown class"):
        analysis.select(table, true="Contempt")


def test_predictions_table_columns(table: pd.DataFrame) -> None:
    assert analysis.class_names_of(table) == list(NAMES)
    row = table.iloc[1]
    assert (row.label_name, row.pred_name, bool(row.correct)) == ("Surprise", "Fear", False)
    assert row.confidence == pytest.approx(0.8)
    assert row.margin == pytest.approx(0.8 - 0.2 / 6)
    assert row.loss == pytest.approx(-np.log(0.2 / 6))
    np.testing.assert_allclose(analysis.probabilities(table).sum(axis=1), 1)


# --- Suspected label errors -------------------------------------------------------------------

def test_confidently_wrong_items_are_suspects_ranked_by_self_confidence() -> None:
    rows = [(0, 0, 0.9)] * 4 + [(1, 1, 0.9)] * 4 + [(2, 2, 0.8)] * 4
    rows += [(0, 1, 0.95), (2, 1, 0.99), (1, 0, 0.30)]  # two confident mistakes, one unsure one
    table = table_from(rows)
    suspects = suspected_label_errors(table)
    assert suspects.index.tolist() == [13, 12]  # lowest probability of the given label first
    assert suspects["label_quality"].is_monotonic_increasing
    assert suspects.loc[13, "label_quality"] == pytest.approx(0.01 / 6)


@pytest.mark.parametrize("seed", range(5))
def test_numpy_rule_agrees_with_cleanlab(seed: int) -> None:
    pytest.importorskip("cleanlab")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, 400)
    logits = rng.normal(size=(400, 7))
    logits[np.arange(400), labels] += rng.uniform(0, 4, 400)  # mostly right, some noise
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    if seed == 0:
        labels[labels == 6] = 5  # a class without labels
    cleanlab_mask = label_issue_mask(labels, probs, engine="cleanlab")
    numpy_mask = label_issue_mask(labels, probs, engine="numpy")
    assert cleanlab_mask.any()
    np.testing.assert_array_equal(numpy_mask, cleanlab_mask)


def test_single_labeled_class_and_empty_table_work() -> None:
    # cleanlab refuses one labeled class; the rule then finds nothing, as no other class has a
    # threshold to be confident against.
    table = table_from([(0, 0, 0.9), (0, 0, 0.9), (0, 1, 0.97)])
    assert suspected_label_errors(table).empty
    assert suspected_label_errors(table.iloc[:0]).empty


# --- Runs -------------------------------------------------------------------------------------

def write_fake_run(folder: Path, table: pd.DataFrame, **info) -> Path:
    return write_run(folder, table, {"class_names": list(NAMES), "published_accuracy": 92.21, **info})


def test_find_runs_loads_good_runs_and_reports_broken_ones(tmp_path: Path, table: pd.DataFrame) -> None:
    runs_dir = tmp_path / "runs"
    write_fake_run(runs_dir / "raf-db-test", table)
    write_fake_run(runs_dir / "more" / "raf-db-train", table.iloc[:3])
    write_fake_run(runs_dir / ".raf-db-test.abc.partial", table)  # an evaluation in progress
    (runs_dir / "no-table").mkdir()
    (runs_dir / "no-table" / "run.json").write_text("{}")
    write_fake_run(runs_dir / "bad-json", table)
    (runs_dir / "bad-json" / "run.json").write_text("{not json")
    write_fake_run(runs_dir / "bad-table", table)
    (runs_dir / "bad-table" / "predictions.parquet").write_bytes(b"PAR1 garbage")
    write_fake_run(runs_dir / "old-schema", table.drop(columns=["margin"]))

    runs, broken = find_runs(runs_dir)
    assert [r.name for r in runs] == ["more/raf-db-train", "raf-db-test"]
    assert len(runs[1].predictions) == 8 and runs[1].class_names == NAMES
    assert runs[1].info["published_accuracy"] == 92.21
    reasons = {b.path.name: b.reason for b in broken}
    assert set(reasons) == {"no-table", "bad-json", "bad-table", "old-schema"}
    assert reasons["no-table"].startswith("missing predictions.parquet")
    assert reasons["bad-json"].startswith("unreadable ") and "run.json" in reasons["bad-json"]
    assert reasons["bad-table"].startswith("unreadable ") and "predictions.parquet" in reasons["bad-table"]
    assert reasons["old-schema"].endswith("lacks the columns margin")
    assert find_runs(tmp_path / "nothing") == ([], [])


def test_run_finds_images_in_the_dataset_or_the_thumbnails(tmp_path: Path, table: pd.DataFrame) -> None:
    data = tmp_path / "data"
    (data / "test" / "1").mkdir(parents=True)
    (data / "test" / "1" / "img_0.jpg").write_bytes(b"jpeg")
    run_dir = write_fake_run(tmp_path / "run", table, dataset_root=str(data))
    (run_dir / "thumbs" / "test" / "1").mkdir(parents=True)
    (run_dir / "thumbs" / "test" / "1" / "img_1.jpg").write_bytes(b"thumb")
    run = load_run(run_dir)
    assert run.image_file("test/1/img_0.jpg") == data / "test" / "1" / "img_0.jpg"
    assert run.image_file("test/1/img_1.jpg") == run_dir / "thumbs" / "test" / "1" / "img_1.jpg"
    assert run.image_file("test/2/img_3.jpg") is None
    assert json.loads((run_dir / "run.json").read_text())["dataset_root"] == str(data)

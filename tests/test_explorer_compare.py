"""The explorer's intervals, class-order warning and the two-run comparison screen."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from demo.explorer import compare_runs
from demo.explorer.runs import get_run
from demo.explorer.tab import open_run
from demo.explorer.views import class_table, summary_html
from poster.data import metrics
from poster.evaluation.compare import compare_tables
from poster.evaluation.run import predictions_table, write_run as write_run_files
from tests._app import RAF_CLASSES, write_run


def rewrite_predictions(run_dir: Path, preds: list[int], keep: slice = slice(None)) -> pd.DataFrame:
    """Replace a run's predictions with ``preds`` (confidence 0.7), keeping rows ``keep``."""
    table = pd.read_parquet(run_dir / "predictions.parquet").iloc[keep].reset_index(drop=True)
    probs = np.full((len(table), 7), 0.05)
    probs[np.arange(len(table)), preds] = 0.7
    new = predictions_table(torch.from_numpy(np.log(probs)), table["label"].tolist(), table["path"].tolist(), RAF_CLASSES)
    info = {"checkpoint": "raf-db", "class_names": list(RAF_CLASSES), "published_accuracy": 92.21}
    write_run_files(run_dir, new, info)
    return new


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    root = tmp_path / "runs"
    a, b = write_run(root, name="a"), write_run(root, name="b")
    labels = pd.read_parquet(a / "predictions.parquet")["label"].tolist()
    preds_a = [label if i % 4 else (label + 1) % 7 for i, label in enumerate(labels)]   # 12 of 16 right
    preds_b = [label if i % 3 else (label + 2) % 7 for i, label in enumerate(labels)][2:]  # B lacks two images
    return root, rewrite_predictions(a, preds_a), rewrite_predictions(b, preds_b, slice(2, None))


def test_every_accuracy_shows_its_wilson_interval(tmp_path):
    root = tmp_path / "runs"
    write_run(root)
    run = get_run("raf-db-test", root)
    right, n = int(run.predictions["correct"].sum()), len(run.predictions)
    low, high = metrics.wilson_interval(right, n)
    summary = summary_html(run)
    assert f"95 % CI {100 * low:.1f}–{100 * high:.1f} %" in summary
    assert summary.count("95 % CI") == 2 and "class-stratified bootstrap" in summary  # mean class accuracy too
    table = class_table(run)
    assert "recall 95 % CI" in table.columns
    for _, row in table.iterrows():
        hits = round(row["recall %"] / 100 * row["support"])
        lo, hi = metrics.wilson_interval(hits, int(row["support"]))
        assert row["recall 95 % CI"] == f"{100 * lo:.1f}–{100 * hi:.1f}"


def test_a_run_with_swapped_class_folders_is_flagged(tmp_path):
    root = tmp_path / "runs"
    run_dir = write_run(root, name="swapped", labels=[0, 1, 2, 3, 4, 5, 6] * 4)
    labels = pd.read_parquet(run_dir / "predictions.parquet")["label"].tolist()
    swap = {0: 3, 3: 0, 4: 5, 5: 4}
    rewrite_predictions(run_dir, [swap.get(label, label) for label in labels])
    summary = open_run("swapped", root).summary
    assert "class order looks wrong" in summary
    assert "Surprise → Happiness" in summary and "Sadness → Anger" in summary
    assert "would give 100.00 %" in summary
    plain = write_run(root, name="plain")
    assert "class order" not in open_run(plain.name, root).summary


def test_comparing_two_runs_on_the_images_they_share(two_runs):
    root, table_a, table_b = two_runs
    view = compare_runs.compare("a", "b", root)
    summary, two_by_two, per_class = view.result, view.table, view.per_class
    expected = compare_tables(table_a, table_b)
    assert expected.n == 14 and expected.only_in_a == 2
    assert "Compared on the 14 images they share" in summary and "2 images only in A" in summary
    assert f"{expected.accuracy_a:.2f} %" in summary and f"{expected.mcnemar_p:.3g}" in summary
    assert two_by_two.iloc[0, 1:].tolist() == [expected.both_correct, expected.only_a]
    assert two_by_two.iloc[1, 1:].tolist() == [expected.only_b, expected.both_wrong]
    assert per_class["images"].sum() == 14 and "A 95 % CI" in per_class.columns
    assert view.gallery == [] and view.pair_rows == [] and "Click a count" in view.caption


@pytest.mark.parametrize("row, col, cell", [(0, 1, "both_correct"), (0, 2, "only_a"), (1, 1, "only_b"),
                                            (1, 2, "both_wrong")])
def test_a_clicked_cell_shows_its_images_with_both_predictions(two_runs, row, col, cell):
    root, table_a, table_b = two_runs
    view = compare_runs.select_pair_cell("a", "b", row, col, root)
    items, kept, caption, pairs = view.gallery, view.pair_rows, view.caption, view.pairs
    merged = table_a.merge(table_b, on="path", suffixes=("_a", "_b"))
    wanted = {"both_correct": merged.correct_a & merged.correct_b, "only_a": merged.correct_a & ~merged.correct_b,
              "only_b": ~merged.correct_a & merged.correct_b, "both_wrong": ~merged.correct_a & ~merged.correct_b}[cell]
    assert sorted(pairs["file"]) == sorted(merged.loc[wanted, "path"])
    assert len(items) == len(kept) == int(wanted.sum())
    for (image, text), (_, pair) in zip(items, pairs.iterrows()):
        assert image.ndim == 3
        assert f"A {'✓' if cell in ('both_correct', 'only_a') else '✗'} {pair['A predicted']}" in text
        assert f"B {'✓' if cell in ('both_correct', 'only_b') else '✗'} {pair['B predicted']}" in text
    assert compare_runs.CELL_TITLES[cell] in caption
    assert compare_runs.select_pair_cell("a", "b", 0, 0, root).gallery == []  # the row-name column


def test_runs_without_shared_images_say_so(tmp_path):
    root = tmp_path / "runs"
    write_run(root, name="a")
    b = write_run(root, name="b")
    table = pd.read_parquet(b / "predictions.parquet")
    table["path"] = "elsewhere/" + table["path"]
    table.to_parquet(b / "predictions.parquet", index=False)
    assert "share no images" in compare_runs.compare("a", "b", root).result
    assert "Pick two runs" in compare_runs.compare("a", None, root).result

"""The Explorer tab's handlers, called as plain functions on runs written to a temporary folder."""
from __future__ import annotations

import pytest

from demo.explorer.runs import get_run, run_choices
from demo.explorer.tab import open_run, run_pickers, run_pickers_on_load, select_cell, select_image
from demo.explorer.views import CORNER, DEFAULT_SORT, gallery_caption
from demo.serving.limits import ENV_RUNS_DIR
from tests._app import RAF_CLASSES, app_store, checkpoint_dir, empty_store, write_run  # noqa: F401


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs") / "runs"
    write_run(root)
    (root / "broken").mkdir()
    (root / "broken" / "run.json").write_text("{not json")
    return root


def test_runs_are_listed_and_broken_ones_named(runs_root):
    dropdown, note = run_choices(runs_root)
    assert dropdown["choices"] == ["raf-db-test"] and dropdown["value"] == "raf-db-test"
    assert "broken" in note


def test_every_run_picker_lists_the_visitors_runs(runs_root, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_RUNS_DIR, str(runs_root))
    view = run_pickers_on_load()
    assert view.run["choices"] == ["raf-db-test"] and view.run["value"] == "raf-db-test" and "broken" in view.runs_note
    assert view.run_a["choices"] == view.run_b["choices"] == ["raf-db-test"]
    session = tmp_path / "session"
    write_run(session, name="mine")
    own = run_pickers(str(session), "session:mine")
    assert own.run["value"] == "session:mine" and ("mine (yours, this session)", "session:mine") in own.run_b["choices"]
    assert run_pickers(None, "session:mine").run["value"] == "raf-db-test"  # another visitor's run is not listed


def test_no_runs_says_how_to_make_one(tmp_path):
    dropdown, note = run_choices(tmp_path / "nothing")
    assert dropdown["choices"] == [] and "python -m poster evaluate" in note


def test_gallery_captions_say_right_or_wrong():
    import pandas as pd

    right = pd.Series({"correct": True, "pred_name": "Happiness", "confidence": 0.871, "label_name": "Happiness"})
    wrong = pd.Series({"correct": False, "pred_name": "Anger", "confidence": 0.4, "label_name": "Fear"})
    assert gallery_caption(right) == "✓ Happiness 87%"
    assert gallery_caption(wrong) == "✗ Anger 40% (label Fear)"


def test_opening_a_run(runs_root):
    view = open_run("raf-db-test", runs_root)
    assert "accuracy" in view.summary and "published 92.21 %" in view.summary
    frame = view.matrix.data if hasattr(view.matrix, "data") else view.matrix
    assert list(frame.columns) == [CORNER, *RAF_CLASSES] and len(frame) == 7
    assert int(frame.iloc[:, 1:].to_numpy().sum()) == 16
    assert list(view.classes["class"]) == list(RAF_CLASSES)
    assert len(view.suspects) == len(view.suspect_rows)
    assert view.cell_gallery == [] and view.cell_rows == [] and "Click a cell" in view.cell_caption
    missing = open_run("no-such-run", runs_root)
    assert missing.summary == "" and missing.matrix.empty and missing.suspects == [] and missing.cell_caption == ""


def test_a_confusion_cell_shows_its_images_sorted_by_confidence(runs_root):
    run = get_run("raf-db-test", runs_root)
    table = run.predictions
    # The busiest cell of the matrix.
    counts = table.groupby(["label", "pred"]).size()
    (true, pred) = counts.idxmax()
    view = select_cell("raf-db-test", true, pred + 1, DEFAULT_SORT, runs_root)
    items, rows, caption = view.cell_gallery, view.cell_rows, view.cell_caption
    expected = table[(table.label == true) & (table.pred == pred)].sort_values("confidence", ascending=False)
    assert rows == list(expected.index) and len(items) == len(expected)
    assert view.cell == (true, pred + 1) and list(view.cell_table["file"]) == list(expected["path"].astype(str))
    for (image, label), (_, row) in zip(items, expected.iterrows()):
        assert image.ndim == 3 and label == gallery_caption(row)
    assert f"true {RAF_CLASSES[true]}, predicted {RAF_CLASSES[pred]}" in caption
    # The first column selects the whole row; sorting by loss reorders.
    whole_row = select_cell("raf-db-test", true, 0, "loss (high first)", runs_root).cell_rows
    assert sorted(whole_row) == sorted(table.index[table.label == true])
    assert whole_row == list(table[table.label == true].sort_values("loss", ascending=False).index)


def test_clicking_an_image_shows_its_prediction_and_explains_it(runs_root, app_store):  # noqa: F811
    run = get_run("raf-db-test", runs_root)
    rows = list(run.predictions.index[:3])
    view = select_image("raf-db-test", rows, 1, "raf-db", runs_root, store=app_store)
    row = run.predictions.loc[rows[1]]
    assert view.image.ndim == 3 and f"labeled {row['label_name']}" in view.card and view.selected["visible"]
    assert view.subject is not None and view.subject.model_key == "raf-db" and view.subject.crop.shape == (224, 224, 3)
    assert select_image("raf-db-test", rows, 3, "raf-db", runs_root, store=app_store).subject is None  # past the end


def test_explorer_without_checkpoint_shows_prediction_only(runs_root, empty_store):  # noqa: F811
    rows = [0]
    view = select_image("raf-db-test", rows, 0, None, runs_root, store=empty_store)
    assert view.image is not None and view.subject is None and "No explanation" in view.card



def test_explorer_falls_back_to_thumbnails(tmp_path, app_store):  # noqa: F811
    root = tmp_path / "runs"
    write_run(root, name="moved", with_dataset=False)
    view = select_image("moved", [0], 0, "raf-db", root, store=app_store)
    assert view.image is not None and "thumbnail" in view.subject.title

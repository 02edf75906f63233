"""Runs published to the Hub and listed by the app, against a local stand-in for the Hub."""
from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest

from data_explorer.hub_runs import HubRuns, hub_runs, set_hub_runs
from demo.explorer.runs import get_run, run_choices
from demo.explorer.tab import open_run, select_cell
from demo.explorer.views import DEFAULT_SORT
from poster.cli import main
from poster.errors import PosterError
from poster.evaluation.publish import LICENCE_WARNING, publish_run
from tests._app import RAF_CLASSES, write_run
from tests._hub import LocalHub

REPO = "someone/poster-runs"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The stand-in, installed for the app (POSTER_RUNS_REPO) and for ``huggingface_hub.HfApi``."""
    fake = LocalHub(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: fake)
    monkeypatch.setenv("POSTER_RUNS_REPO", REPO)
    old = hub_runs()
    set_hub_runs(HubRuns(api_factory=lambda: fake, cache_dir=tmp_path / "hub-cache"))
    yield fake
    set_hub_runs(old)


def test_publish_without_images_leaves_out_pictures_and_local_paths(tmp_path, hub, capsys):
    run_dir = write_run(tmp_path / "runs")
    assert main(["publish", str(run_dir), "--repo", REPO]) == 0
    out = capsys.readouterr()
    assert "without images or local paths" in out.out and LICENCE_WARNING not in out.err
    published = hub.root / REPO / "raf-db-test"
    assert sorted(p.name for p in published.iterdir()) == ["predictions.parquet", "run.json"]
    text = (published / "run.json").read_text()
    assert str(tmp_path) not in text
    info = json.loads(text)
    assert info["dataset_root"] is None and info["thumbnails"] is False and info["published"]["images"] is False
    assert hub.created == [(REPO, "dataset", None)]


def test_publish_with_images_warns_about_the_licence(tmp_path, hub, capsys):
    run_dir = write_run(tmp_path / "runs")
    assert main(["publish", str(run_dir), "--repo", REPO, "--images", "--name", "with-pictures"]) == 0
    assert LICENCE_WARNING in capsys.readouterr().err
    thumbs = list((hub.root / REPO / "with-pictures" / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == len(list((run_dir / "thumbs").rglob("*.jpg"))) == 16
    assert json.loads((hub.root / REPO / "with-pictures" / "run.json").read_text())["thumbnails"] is True


def test_publish_refuses_what_is_not_a_run_or_not_a_repo(tmp_path, hub, capsys):
    with pytest.raises(PosterError, match="not a Hub repository id"):
        publish_run(tmp_path, "no-slash", api=hub)
    assert main(["publish", str(tmp_path), "--repo", REPO]) == 1
    assert "is not a run folder" in capsys.readouterr().err


def test_the_app_lists_hub_runs_beside_local_ones_and_opens_them_without_images(tmp_path, hub):
    local = tmp_path / "local-runs"
    write_run(local, name="local-run")
    publish_run(write_run(tmp_path / "to-publish", with_dataset=False), REPO, api=hub)
    dropdown, note = run_choices(local)
    assert dropdown["choices"][0] == "local-run"
    assert (f"raf-db-test (Hub {REPO})", "hub:raf-db-test") in dropdown["choices"]
    run_choices(local)
    assert hub.downloads == 1  # downloaded once, then kept

    opened = open_run("hub:raf-db-test", local)
    summary, matrix, classes = opened.summary, opened.matrix, opened.classes
    assert "95 % CI" in summary and "published 92.21 %" in summary
    frame = matrix.data if hasattr(matrix, "data") else matrix
    assert int(frame.iloc[:, 1:].to_numpy().sum()) == 16 and list(classes["class"]) == list(RAF_CLASSES)
    run = get_run("hub:raf-db-test", local)
    true = int(run.predictions["label"].iloc[0])
    cell = select_cell("hub:raf-db-test", true, 0, DEFAULT_SORT, local)
    items, rows, table = cell.cell_gallery, cell.cell_rows, cell.cell_table
    assert cell.cell == (true, 0) and f"every image labeled {RAF_CLASSES[true]}" in cell.cell_caption
    assert len(items) == len(rows) == len(table) == int((run.predictions["label"] == true).sum())
    assert all((image == 225).all() for image, _ in items)  # no pictures: placeholders
    assert list(table.columns[:5]) == ["file", "label", "predicted", "confidence %", "loss"]
    assert set(table["file"]) == set(run.predictions.loc[rows, "path"])
    assert f"{RAF_CLASSES[0]} %" in table.columns


def test_an_unreachable_hub_is_a_note_not_a_failure(tmp_path, hub):
    hub.fail_with = OSError("Network is unreachable")
    local = tmp_path / "local-runs"
    write_run(local, name="local-run")
    dropdown, note = run_choices(local)
    assert dropdown["choices"] == ["local-run"]
    assert "could not be downloaded" in note and "Network is unreachable" in note
    run_choices(local)
    assert hub.downloads == 0  # tried again only after a while

"""The Model tab's handlers and the checkpoint header and banner, called as plain functions."""
from __future__ import annotations

from pathlib import Path

import pytest

from demo.model import tab as model_tab
from demo.ui.download_row import download_checkpoint
from demo.model.cards import model_card
from demo.serving.store import ModelStore
from poster.errors import DownloadError
from tests._app import RAF_CLASSES, app_store, checkpoint_dir  # noqa: F401

# gr.Warning outside a page becomes a UserWarning; the tests check the returned messages instead.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")


def test_model_facts(app_store):  # noqa: F811
    facts = model_tab.model_facts("raf-db", store=app_store)
    sha = app_store.predictor("raf-db").model.info.sha256
    for words in ("RAF-DB", "92.21 %", sha, "Happiness", "rafdb_best.pth"):
        assert words in facts
    assert "No checkpoint" in model_tab.model_facts(None, store=app_store)
    assert "Not for decisions about people" in model_card()


def test_switching_to_a_missing_checkpoint_keeps_the_current_one(app_store):  # noqa: F811
    view = model_tab.switch_checkpoint("caer-s", "raf-db", store=app_store)
    assert view.model_key == "raf-db" and "CAER-S" in view.switch_status
    assert model_tab.switch_checkpoint("raf-db", "raf-db", store=app_store) == model_tab.SwitchView("raf-db", "")
    dropdown = model_tab.checkpoint_dropdown("raf-db", [], store=app_store)
    assert [k for _, k in dropdown["choices"]] == ["raf-db"] and dropdown["value"] == "raf-db"


def test_bad_checkpoint_uploads_are_refused(tmp_path, app_store, monkeypatch):  # noqa: F811
    text = tmp_path / "model.pth"
    text.write_text("not a checkpoint")
    view = model_tab.upload_checkpoint(str(text), "raf-db", [], store=app_store)
    assert view.model_key == "raf-db" and view.uploads == [] and "refused" in view.upload_status
    monkeypatch.setenv("POSTER_MAX_UPLOAD_MB", "0.001")
    big = tmp_path / "big.pth"
    big.write_bytes(b"\0" * 5000)
    view = model_tab.upload_checkpoint(str(big), "raf-db", [], store=app_store)
    assert view.model_key == "raf-db" and "limit" in view.upload_status


def test_a_pickle_that_runs_code_is_refused(tmp_path, app_store):  # noqa: F811
    import pickle

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"state_dict": Evil()}))
    view = model_tab.upload_checkpoint(str(path), "raf-db", [], store=app_store)
    assert view.model_key == "raf-db" and "refused" in view.upload_status and not (tmp_path / "pwned").exists()


def test_a_good_upload_becomes_the_visitors_checkpoint(tmp_path, checkpoint_dir):  # noqa: F811
    store = ModelStore(device="cpu", checkpoint_dirs=[checkpoint_dir], upload_dir=tmp_path / "uploads")
    view = model_tab.upload_checkpoint(str(checkpoint_dir / "rafdb_best.pth"), "raf-db", [], store=store)
    key, uploads = view.model_key, view.uploads
    assert key.startswith("upload:") and uploads == [key] and "switched" in view.upload_status
    assert key in [c.key for c in store.choices(uploads)]
    assert key not in [c.key for c in store.choices([])]  # other visitors do not see it
    assert store.predictor(key).class_names == RAF_CLASSES


def test_download_button_switches_to_the_downloaded_checkpoint(tmp_path, checkpoint_dir):  # noqa: F811
    folder = tmp_path / "dl"
    folder.mkdir()
    store = ModelStore(device="cpu", checkpoint_dirs=[folder])
    seen = []

    def fake_download(name, progress=None, quiet=False):
        progress(50, 100)
        target = folder / "rafdb_best.pth"
        target.symlink_to(checkpoint_dir / "rafdb_best.pth")
        progress(100, 100)
        return target

    view = download_checkpoint("raf-db", None, progress=lambda *a, **k: seen.append(a), store=store,
                               downloader=fake_download)
    assert view.model_key == "raf-db" and "switched" in view.status and len(seen) == 2 and seen[-1][0] == 1.0

    def offline(name, progress=None, quiet=False):
        raise DownloadError("could not reach drive.google.com; no network?")

    view = download_checkpoint("caer-s", "raf-db", store=store, downloader=offline)
    assert view.model_key == "raf-db" and "no network" in view.status
    view = download_checkpoint("raf-db; rm -rf /", "raf-db", store=store, downloader=offline)
    assert view.model_key == "raf-db" and "is not a released checkpoint" in view.status


def test_header_and_banner(app_store):  # noqa: F811
    assert "Active checkpoint: POSTER++ · RAF-DB" in model_tab.header_line("raf-db", store=app_store)
    assert model_tab.header_line(None, store=app_store) == ""
    row, text = model_tab.banner(None)
    assert row["visible"] is True and "No POSTER++ checkpoint" in text
    assert model_tab.banner("raf-db")[0]["visible"] is False

"""Input the handlers must refuse or explain: foreign paths, tiny images, odd clicks, hostile runs."""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data_explorer.runs import find_runs, load_run
from demo.explorer.tab import select_image
from demo.ui.messages import ClickError
from demo.ui.photo_result import face_at, on_face_click
from demo.photo.tab import analyze_photo
from demo.serving.camera_slots import CameraSlots
from demo.serving.files import UPLOAD_REFUSED, SessionFiles, UploadRefused, upload_cache, uploaded_path
from demo.webcam.live_tracking import LiveSession
from demo.webcam.tab import live_frame
from poster.inference.faces import FaceDetector
from tests._app import app_store, astronaut_path, checkpoint_dir, empty_store, write_run  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")


# --- the one path check -------------------------------------------------------------------

@pytest.fixture
def in_cache(tmp_path, monkeypatch):
    """Gradio's upload cache moved into the test's folder, with one uploaded photo in it."""
    cache = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    photo = cache / "0123abcd" / "astronaut.png"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(astronaut_path().read_bytes())
    return photo


def test_only_uploads_and_examples_pass_the_path_check(in_cache, tmp_path):
    assert upload_cache() == (tmp_path / "gradio-cache").resolve()
    assert uploaded_path({"path": str(in_cache)}) == in_cache.resolve()
    assert uploaded_path(str(astronaut_path())) == astronaut_path().resolve()  # an example photo
    outside = tmp_path / "outside.png"
    outside.write_bytes(in_cache.read_bytes())
    (in_cache.parent / "link.png").symlink_to(outside)
    refused = [{"path": str(outside)}, str(outside), {"path": str(in_cache.parent)}, {"path": "/etc/hostname"},
               {"path": str(in_cache.parent / ".." / ".." / "outside.png")}, {"path": str(in_cache.parent / "link.png")},
               {"path": str(tmp_path / "missing.png")}, {"url": "file:///etc/hostname"}, {"path": None}, 7, None,
               {"path": "http://127.0.0.1/config"}, {"path": "a\0b"}]
    for payload in refused:
        with pytest.raises(UploadRefused) as info:
            uploaded_path(payload)
        assert str(info.value) == UPLOAD_REFUSED


def test_a_session_file_goes_when_its_last_session_ends(in_cache):
    files = SessionFiles()
    files.add("A", in_cache)
    files.add("B", in_cache)
    files.add("A", astronaut_path().resolve())  # examples are never deleted
    assert files.end("A") == [] and in_cache.exists()
    assert files.end("B") == [in_cache] and not in_cache.exists()
    assert astronaut_path().exists()


def test_sessions_that_never_end_are_ended_past_the_limit(in_cache):
    files = SessionFiles(max_sessions=2)
    other = in_cache.parent / "other.png"
    other.write_bytes(b"x")
    files.add("old", in_cache)
    files.add("newer", other)
    files.add("newest", other)
    assert not in_cache.exists() and other.exists() and files.files("old") == set()


def test_a_foreign_path_in_a_payload_is_refused_by_the_photo_handler(app_store, tmp_path):  # noqa: F811
    secret = tmp_path / "secret.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(secret)
    for payload in ({"path": str(secret)}, {"path": str(tmp_path)}, {"path": str(tmp_path / "nope.png")}):
        with pytest.raises(gr.Error) as info:
            analyze_photo(payload, "raf-db", store=app_store)
        assert info.value.message == UPLOAD_REFUSED


# --- 5. images too small for a face -------------------------------------------------------

@pytest.mark.parametrize("height, width", [(1, 1), (39, 39), (39, 500), (500, 39)])
def test_images_under_40_pixels_say_why_there_is_no_face(app_store, height, width):  # noqa: F811
    image = np.full((height, width, 3), 128, np.uint8)
    assert len(FaceDetector().detect(image)) == 0
    view = analyze_photo(image, "raf-db", store=app_store)
    assert view.result.faces == [] and view.subject is None
    assert f"No face found (the image is {width} x {height} pixels; faces need at least 40)" in view.summary
    live = live_frame({"frame": image}, LiveSession(), "raf-db", "float32", 0.6, store=app_store,
                      slots=CameraSlots(1, 120), visitor="v")
    assert f"no face found (the image is {width} x {height} pixels" in json.loads(live.live)["message"]


def test_a_long_thin_image_is_no_crash_either():
    assert len(FaceDetector().detect(np.zeros((40, 5000, 3), np.uint8))) == 0


# --- 9. clicks that are not positions -----------------------------------------------------

def test_a_click_at_a_non_number_gets_a_message(app_store):  # noqa: F811
    result = analyze_photo(str(astronaut_path()), "raf-db", store=app_store).result
    with pytest.raises(ClickError, match="two numbers"):
        face_at(result, "x", 3)
    with pytest.raises(gr.Error) as info:
        on_face_click(result, SimpleNamespace(index=["x", 3]))
    assert "click position must be two numbers" in info.value.message
    click = on_face_click(result, SimpleNamespace(index=[220, 110]))
    assert click.faces["value"] == 0 and click.subject.title.startswith("Face 1")


# --- 4 and 9. evaluation runs that point elsewhere or hold bad fields ----------------------

@pytest.fixture
def hostile_run(tmp_path):
    root = tmp_path / "runs"
    run_dir = write_run(root)
    secret = tmp_path / "elsewhere" / "secret.jpg"
    secret.parent.mkdir()
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(secret)
    dataset = Path(json.loads((run_dir / "run.json").read_text())["dataset_root"])
    (dataset / "test" / "link.jpg").symlink_to(secret)
    (run_dir / "thumbs" / "test" / "thumb-link.jpg").symlink_to(secret)
    table = pd.read_parquet(run_dir / "predictions.parquet")
    escapes = [str(secret), "../elsewhere/secret.jpg", "test/link.jpg", "test/thumb-link.jpg",
               os.path.relpath(secret, dataset), "test/../../elsewhere/secret.jpg"]
    table.loc[: len(escapes) - 1, "path"] = escapes
    table.to_parquet(run_dir / "predictions.parquet")
    return root, run_dir, len(escapes)


def test_run_images_outside_the_run_or_its_dataset_are_not_shown(hostile_run, empty_store):
    root, run_dir, n = hostile_run
    run = load_run(run_dir)
    paths = list(run.predictions["path"])
    assert [run.image_file(p) for p in paths[:n]] == [None] * n
    assert all(run.image_file(p) is not None for p in paths[n:])
    for i in range(n):
        view = select_image("raf-db-test", [i], 0, None, root=root, store=empty_store)
        assert view.image is None and view.subject is None and "not available" in view.card


def test_a_run_json_with_a_bad_field_names_it(tmp_path):
    root = tmp_path / "runs"
    run_dir = write_run(root)
    info = json.loads((run_dir / "run.json").read_text())
    for field, value in (("published_accuracy", "abc"), ("dataset_root", ["x"]), ("num_skipped", 1.5)):
        (run_dir / "run.json").write_text(json.dumps({**info, field: value}))
        runs, broken = find_runs(root)
        assert runs == [] and f"the field {field} must be" in broken[0].reason

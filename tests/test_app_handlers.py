"""The app's event handlers, called as plain functions (no server, no browser)."""
from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from demo.model import tab as model_tab
from demo.ui import photo_result
from demo.photo.compare_panel import CANONICAL_ORDER, compare_checkpoints, compare_rows, compare_table
from demo.ui.explain_panel import PREDICTED, PointView, explain_subject, point_attention
from demo.serving.files import example_photos
from demo.serving.locks import ReadWriteLock
from demo.ui.photo_result import PhotoResult, face_at, select_face
from demo.photo.tab import analyze_photo
from demo.serving.store import ModelStore
from poster.errors import CheckpointError
from poster.inference.faces import Face
from poster.inference.predictor import FacePrediction
from tests._app import RAF_CLASSES, app_store, astronaut_path, checkpoint_dir, empty_store  # noqa: F401
from tests._checkpoints import checkpoint_file

# gr.Warning outside a page becomes a UserWarning; the tests check the returned messages instead.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")


@pytest.fixture(scope="module")
def astronaut_result(app_store):  # noqa: F811
    return analyze_photo(str(astronaut_path()), "raf-db", store=app_store)


# --- photos -------------------------------------------------------------------------------

def test_photo_gives_one_labeled_face_with_probabilities(astronaut_result, astronaut):
    view = astronaut_result
    assert view.annotated.shape == astronaut.shape and view.annotated.dtype == np.uint8
    assert not np.array_equal(view.annotated, astronaut)  # the box and label are drawn
    assert len(view.as_json) == 1 and view.as_json[0]["label"] in RAF_CLASSES
    probs = view.as_json[0]["probabilities"]
    assert list(probs) == list(RAF_CLASSES) and sum(probs.values()) == pytest.approx(1, abs=1e-3)
    assert "1 face found" in view.summary and "RAF-DB" in view.summary
    assert view.bars.count("poster-bar-row") == 7
    assert view.faces["visible"] is False  # one face: nothing to choose
    assert view.result.classified and view.result.model_key == "raf-db"
    assert view.subject.crop.shape == (224, 224, 3)
    x1, y1, x2, y2 = view.as_json[0]["box"]
    assert 150 < (x1 + x2) / 2 < 300 and 60 < (y1 + y2) / 2 < 190  # the astronaut's face


def test_api_clients_without_a_choice_get_the_default_checkpoint(app_store):  # noqa: F811
    view = analyze_photo(str(astronaut_path()), None, store=app_store)
    assert view.result.model_key == "raf-db" and view.as_json[0]["label"] in RAF_CLASSES


def test_gradio_file_payload_is_accepted(app_store):  # noqa: F811
    view = analyze_photo({"path": str(astronaut_path()), "orig_name": "a.png"}, "raf-db", store=app_store)
    assert len(view.as_json) == 1


@pytest.mark.parametrize("content, words", [
    (b"this is a text file with a .jpg name", "not an image"),
    (b"", "empty"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "photo.jpg"),
], ids=["text-named-jpg", "empty", "truncated-jpeg"])
def test_bad_uploads_give_a_one_line_error(tmp_path, app_store, content, words):  # noqa: F811
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(content)
    with pytest.raises(gr.Error) as info:
        analyze_photo(str(bad), "raf-db", store=app_store)
    message = str(info.value.message)
    assert words in message.lower() and "\n" not in message and "Traceback" not in message


def test_too_many_pixels_is_refused(tmp_path, app_store, monkeypatch):  # noqa: F811
    monkeypatch.setattr(photo_result, "MAX_IMAGE_PIXELS", 10_000)
    path = tmp_path / "big.png"
    Image.new("RGB", (200, 200)).save(path)
    with pytest.raises(gr.Error, match="(?i)pixels|large"):
        analyze_photo(str(path), "raf-db", store=app_store)


def test_no_face_says_so(app_store):  # noqa: F811
    blank = np.full((240, 320, 3), 200, np.uint8)
    view = analyze_photo(blank, "raf-db", store=app_store)
    assert "No face found" in view.summary and view.as_json == [] and view.subject is None and view.bars == ""
    assert view.result.faces == [] and view.faces["visible"] is False


def test_without_a_checkpoint_faces_are_still_boxed(empty_store, astronaut):  # noqa: F811
    view = analyze_photo(astronaut.copy(), None, store=empty_store)
    assert len(view.as_json) == 1 and view.as_json[0]["label"] is None
    assert not np.array_equal(view.annotated, astronaut)
    assert "1 face found, not classified" in view.summary and "not classified" in view.bars
    face = view.result.faces[0]
    assert face.caption == "face" and view.subject.title == "Face 1" and face.top() == []
    assert face.to_dict()["label"] is None and face.to_dict()["probabilities"] is None and face.crop.aligned
    for words in ("No POSTER++ checkpoint", "checkpoints/", "POSTER_CHECKPOINT_DIR", "POSTER_HUB_REPO", "upload"):
        assert words in view.as_json[0]["note"]  # the three ways, for API clients
        assert words in model_tab.banner(None)[1]  # and on top of every tab
    explained = explain_subject(view.subject, PREDICTED, store=empty_store)
    assert explained.images == [None] * 4 and explained.body["visible"] is False
    assert "No explanation" in explained.status and explained.crop is view.subject.crop


def test_clicking_selects_the_face_under_the_pointer():
    faces = [FacePrediction.unclassified(Face(box, 1.0, np.zeros((5, 2))), crop=None)  # only boxes matter here
             for box in [(0, 0, 100, 100), (200, 0, 300, 100), (20, 20, 60, 60)]]
    result = PhotoResult(np.zeros((120, 320, 3), np.uint8), faces, (), None, "")
    assert face_at(result, 250, 50) == 1
    assert face_at(result, 30, 30) == 2  # the smallest box holding the point
    assert face_at(result, 150, 110) in (0, 1)  # outside every box: the nearest
    assert face_at(None, 1, 1) is None


def test_selecting_a_face_outlines_it(astronaut_result):
    result = astronaut_result.result
    choice = select_face(result, 0)
    assert choice.annotated.shape == result.image.shape and choice.subject.title.startswith("Face 1")
    assert select_face(result, None).subject is None


def test_example_photos_come_from_installed_packages():
    paths = example_photos()
    assert [Path(p).name for p in paths] == ["astronaut.png", "grace_hopper.jpg"]


# --- explanations -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def explained(astronaut_result, app_store):  # noqa: F811
    return explain_subject(astronaut_result.subject, PREDICTED, store=app_store)


def test_explanation_panels(explained):
    assert len(explained.images) == 4
    for panel in explained.images:
        assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[1] > 3 * 150
    assert explained.crop.shape == (224, 224, 3) and explained.point.ndim == 3
    assert explained.explanation.target == explained.explanation.predicted
    assert explained.target["value"] == PREDICTED and explained.target["choices"][1:] == list(RAF_CLASSES)
    assert "explaining" in explained.status and explained.body["visible"] is True


def test_explaining_another_class(astronaut_result, app_store, explained):  # noqa: F811
    view = explain_subject(astronaut_result.subject, "Anger", store=app_store)
    assert view.explanation.target == RAF_CLASSES.index("Anger") and view.target["value"] == "Anger"
    assert not np.array_equal(view.gradcam_image, explained.gradcam_image)


def test_clicking_a_point_shows_where_it_attends(explained):
    here = point_attention(explained.explanation, 112, 150)
    there = point_attention(explained.explanation, 10, 10)
    assert here.crop.shape == (224, 224, 3) and here.point.ndim == 3
    assert not np.array_equal(here.crop, there.crop) and not np.array_equal(here.point, there.point)
    assert point_attention(None, 1, 1) == PointView(None, None)


# --- comparing checkpoints ----------------------------------------------------------------

def test_classes_are_aligned_by_name():
    raf = ("RAF-DB", ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"), np.arange(7) / 21)
    caer = ("CAER-S", ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"), np.full(7, 1 / 7))
    aff8 = ("AffectNet-8", ("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger", "Contempt"),
            np.full(8, 1 / 8))
    order, rows = compare_rows([raf, caer, aff8])
    assert order == list(CANONICAL_ORDER)
    happiness = rows[order.index("Happiness")]
    assert happiness == [pytest.approx(3 / 21), pytest.approx(1 / 7), pytest.approx(1 / 8)]
    assert rows[order.index("Contempt")][:2] == [None, None]
    html = compare_table([raf, caer, aff8])
    assert html.count("<tr>") == 9 and "poster-absent" in html


@pytest.mark.slow  # every checkpoint of the store, with Grad-CAM
def test_compare_runs_every_available_checkpoint(tmp_path, astronaut_result, checkpoint_dir):  # noqa: F811
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "rafdb_best.pth").symlink_to(checkpoint_dir / "rafdb_best.pth")
    checkpoint_file(folder / "affectnet8_best.pth", num_classes=8)
    store = ModelStore(device="cpu", checkpoint_dirs=[folder])
    view = compare_checkpoints(astronaut_result.subject, store=store)
    assert "RAF-DB" in view.table and "AffectNet-8" in view.table and "Contempt" in view.table
    assert [caption.split(":")[0] for _, caption in view.gallery] == ["POSTER++ · RAF-DB", "POSTER++ · AffectNet-8"]
    for strip, _ in view.gallery:  # both streams' Grad-CAM at three scales in one row
        assert strip.ndim == 3 and strip.shape[1] > 6 * 150 > strip.shape[0]
    for missing in ("POSTER++ · AffectNet-7", "POSTER++ · CAER-S", "POSTER · RAF-DB", "ARM · RAF-DB"):
        assert missing in view.status
    nothing = compare_checkpoints(None, store=store)
    assert nothing.gallery == [] and "Analyze a photo first" in nothing.status


# --- the shared store ---------------------------------------------------------------------

def test_store_loads_each_checkpoint_once_under_concurrency(checkpoint_dir):  # noqa: F811
    from poster.weights.checkpoints import load_checkpoint

    calls = []

    def counting_loader(source, device="cpu"):
        calls.append(source)
        return load_checkpoint(source, device=device)

    store = ModelStore(device="cpu", loader=counting_loader, checkpoint_dirs=[checkpoint_dir])
    got = []
    threads = [threading.Thread(target=lambda: got.append(store.predictor("raf-db"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(p) for p in got}) == 1


def test_missing_checkpoint_error_is_one_line(empty_store):  # noqa: F811
    predictor, reason = empty_store.try_predictor("raf-db")
    assert predictor is None and "\n" not in reason
    with pytest.raises(CheckpointError):
        empty_store.predictor(None)
    assert empty_store.choices() == [] and empty_store.default_key() is None


def test_read_write_lock_lets_readers_share_and_writers_wait():
    lock, events = ReadWriteLock(), []
    with lock.read():
        with lock.read():  # a second reader does not wait
            events.append("two readers")
        writer = threading.Thread(target=lambda: lock.write().__enter__() or events.append("writer"))
        writer.start()
        writer.join(0.2)  # time for a wrong lock to let the writer in
        assert events == ["two readers"]  # the writer waits for the reader
    writer.join()  # it gets the lock once the reader is done, however busy the machine is
    assert events[-1] == "writer"


# --- the app as a whole -------------------------------------------------------------------

def test_build_demo_without_a_browser(app_store):  # noqa: F811
    from demo import build_demo, launch_kwargs

    demo = build_demo(app_store)
    assert isinstance(demo, gr.Blocks)
    api = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert api == {"analyze", "evaluate"}
    # The live webcam's frames go by its component's server function: no Gradio stream, no frame event.
    assert not [fn for fn in demo.fns.values() if fn.connection == "stream"]
    live = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "webcam-live")
    assert [fn.__name__ for fn in live.server_fns] == ["frame"]
    live_events = {trigger[1] for fn in demo.fns.values() for trigger in fn.targets if trigger[0] == live._id}
    assert live_events == {"live_start", "live_stop"}
    kwargs = launch_kwargs(app_store)
    assert kwargs["show_error"] is False and kwargs["max_file_size"] > 0


def test_switching_checkpoints_reanalyzes_only_an_analyzed_photo(astronaut_result, app_store):  # noqa: F811
    from demo.app import _reanalyze

    result = astronaut_result.result
    assert _reanalyze(None, None, "raf-db", 0, app_store).rerun == {"__type__": "update"}  # page just opened
    same_key = _reanalyze(str(astronaut_path()), result, "raf-db", 0, app_store)
    assert same_key.rerun == {"__type__": "update"}
    result.model_key = "upload:123456789abc"  # as if it had been analyzed with another checkpoint
    try:
        out = _reanalyze(str(astronaut_path()), result, "raf-db", 3, app_store)
    finally:
        result.model_key = "raf-db"
    assert out.result.model_key == "raf-db" and out.rerun == 4 and out.as_json[0]["checkpoint"] == "POSTER++ · RAF-DB"


def test_gpu_decorator_is_a_no_op_without_spaces():
    from demo.serving.gpu import available, gpu

    def f(x):
        return x

    assert available() is False and gpu(f) is f


def test_images_reach_gradio_as_whole_files():
    from demo.serving.files import files_out, image_file

    small = np.zeros((10, 12, 3), np.uint8)
    big = np.full((600, 800, 3), 50, np.uint8)
    first, again = image_file(small), image_file(small.copy())
    assert first == again and first.endswith(".png") and image_file(big).endswith(".jpg")
    assert np.array_equal(np.asarray(Image.open(first)), small)

    @files_out
    def handler():
        return small, "text", [(small, "caption")], {"state": small}

    path, text, gallery, state = handler()
    assert Path(path).is_file() and text == "text" and Path(gallery[0][0]).is_file() and gallery[0][1] == "caption"
    assert state["state"] is small  # only images, not states, become files

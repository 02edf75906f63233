"""The app's event handlers, called as plain functions (no server, no browser)."""
from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from demo import explorer, handlers, model_handlers
from demo.locks import ReadWriteLock
from demo.store import ModelStore
from poster.errors import CheckpointError, DownloadError
from tests._app import (RAF_CLASSES, app_store, astronaut_path, checkpoint_dir, empty_store,  # noqa: F401
                        write_run)
from poster.weights.deterministic import write_poster_v2_checkpoint as write_recipe_checkpoint

# gr.Warning outside a page becomes a UserWarning; the tests check the returned messages instead.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")


@pytest.fixture(scope="module")
def astronaut_result(app_store):  # noqa: F811
    return handlers.analyze_photo(str(astronaut_path()), "raf-db", store=app_store)


# --- photos -------------------------------------------------------------------------------

def test_photo_gives_one_labeled_face_with_probabilities(astronaut_result, astronaut):
    image, summary, bars, selector, as_json, result, subject = astronaut_result
    assert image.shape == astronaut.shape and image.dtype == np.uint8
    assert not np.array_equal(image, astronaut)  # the box and label are drawn
    assert len(as_json) == 1 and as_json[0]["label"] in RAF_CLASSES
    probs = as_json[0]["probabilities"]
    assert list(probs) == list(RAF_CLASSES) and sum(probs.values()) == pytest.approx(1, abs=1e-3)
    assert "1 face found" in summary and "RAF-DB" in summary
    assert bars.count("poster-bar-row") == 7
    assert selector["visible"] is False  # one face: nothing to choose
    assert result.classified and result.model_key == "raf-db"
    assert subject.crop.shape == (224, 224, 3)
    x1, y1, x2, y2 = as_json[0]["box"]
    assert 150 < (x1 + x2) / 2 < 300 and 60 < (y1 + y2) / 2 < 190  # the astronaut's face


def test_api_clients_without_a_choice_get_the_default_checkpoint(app_store):  # noqa: F811
    *_, as_json, result, _subject = handlers.analyze_photo(str(astronaut_path()), None, store=app_store)
    assert result.model_key == "raf-db" and as_json[0]["label"] in RAF_CLASSES


def test_gradio_file_payload_is_accepted(app_store):  # noqa: F811
    out = handlers.analyze_photo({"path": str(astronaut_path()), "orig_name": "a.png"}, "raf-db", store=app_store)
    assert len(out[4]) == 1


@pytest.mark.parametrize("content, words", [
    (b"this is a text file with a .jpg name", "not an image"),
    (b"", "empty"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "photo.jpg"),
], ids=["text-named-jpg", "empty", "truncated-jpeg"])
def test_bad_uploads_give_a_one_line_error(tmp_path, app_store, content, words):  # noqa: F811
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(content)
    with pytest.raises(gr.Error) as info:
        handlers.analyze_photo(str(bad), "raf-db", store=app_store)
    message = str(info.value.message)
    assert words in message.lower() and "\n" not in message and "Traceback" not in message


def test_too_many_pixels_is_refused(tmp_path, app_store, monkeypatch):  # noqa: F811
    monkeypatch.setattr(handlers, "MAX_IMAGE_PIXELS", 10_000)
    path = tmp_path / "big.png"
    Image.new("RGB", (200, 200)).save(path)
    with pytest.raises(gr.Error, match="(?i)pixels|large"):
        handlers.analyze_photo(str(path), "raf-db", store=app_store)


def test_no_face_says_so(app_store):  # noqa: F811
    blank = np.full((240, 320, 3), 200, np.uint8)
    _, summary, bars, selector, as_json, result, subject = handlers.analyze_photo(blank, "raf-db", store=app_store)
    assert "No face found" in summary and as_json == [] and subject is None and bars == ""


def test_without_a_checkpoint_faces_are_still_boxed(empty_store, astronaut):  # noqa: F811
    image, summary, bars, _, as_json, result, subject = handlers.analyze_photo(astronaut.copy(), None,
                                                                               store=empty_store)
    assert len(as_json) == 1 and as_json[0]["label"] is None
    assert not np.array_equal(image, astronaut)
    assert "1 face found, not classified" in summary and "not classified" in bars
    for words in ("No POSTER++ checkpoint", "checkpoints/", "POSTER_CHECKPOINT_DIR", "POSTER_HUB_REPO", "upload"):
        assert words in as_json[0]["note"]  # the three ways, for API clients
        assert words in model_handlers.banner(None)[1]  # and on top of every tab
    explained = handlers.explain_subject(subject, handlers.PREDICTED, store=empty_store)
    assert explained[0] is None and "No explanation" in explained[7]


def test_clicking_selects_the_face_under_the_pointer():
    crop = handlers.FaceView.__new__(handlers.FaceView)  # only boxes matter here
    faces = []
    for box in [(0, 0, 100, 100), (200, 0, 300, 100), (20, 20, 60, 60)]:
        face = handlers.FaceView(box=box, landmarks=np.zeros((5, 2)), crop=crop, probabilities=None)
        faces.append(face)
    result = handlers.PhotoResult(np.zeros((120, 320, 3), np.uint8), faces, (), None, "")
    assert handlers.face_at(result, 250, 50) == 1
    assert handlers.face_at(result, 30, 30) == 2  # the smallest box holding the point
    assert handlers.face_at(result, 150, 110) in (0, 1)  # outside every box: the nearest
    assert handlers.face_at(None, 1, 1) is None


def test_selecting_a_face_outlines_it(astronaut_result):
    result = astronaut_result[5]
    image, subject = handlers.select_face(result, 0)
    assert image.shape == result.image.shape and subject.title.startswith("Face 1")


def test_example_photos_come_from_installed_packages():
    paths = handlers.example_photos()
    assert [Path(p).name for p in paths] == ["astronaut.png", "grace_hopper.jpg"]


# --- explanations -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def explained(astronaut_result, app_store):  # noqa: F811
    return handlers.explain_subject(astronaut_result[6], handlers.PREDICTED, store=app_store)


def test_explanation_panels(explained):
    *panels, crop, point, explanation, status, target = explained
    assert len(panels) == 4
    for panel in panels:
        assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[1] > 3 * 150
    assert crop.shape == (224, 224, 3) and point.ndim == 3
    assert explanation.target == explanation.predicted
    assert target["value"] == handlers.PREDICTED and target["choices"][1:] == list(RAF_CLASSES)
    assert "explaining" in status


def test_explaining_another_class(astronaut_result, app_store, explained):  # noqa: F811
    out = handlers.explain_subject(astronaut_result[6], "Anger", store=app_store)
    assert out[6].target == RAF_CLASSES.index("Anger") and out[8]["value"] == "Anger"
    assert not np.array_equal(out[0], explained[0])


def test_clicking_a_point_shows_where_it_attends(explained):
    explanation = explained[6]
    marked, panel = handlers.point_attention(explanation, 112, 150)
    other_marked, other_panel = handlers.point_attention(explanation, 10, 10)
    assert marked.shape == (224, 224, 3) and panel.ndim == 3
    assert not np.array_equal(marked, other_marked) and not np.array_equal(panel, other_panel)
    assert handlers.point_attention(None, 1, 1) == (None, None)


# --- comparing checkpoints ----------------------------------------------------------------

def test_classes_are_aligned_by_name():
    raf = ("RAF-DB", ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"), np.arange(7) / 21)
    caer = ("CAER-S", ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"), np.full(7, 1 / 7))
    aff8 = ("AffectNet-8", ("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger", "Contempt"),
            np.full(8, 1 / 8))
    order, rows = handlers.compare_rows([raf, caer, aff8])
    assert order == list(handlers.CANONICAL_ORDER)
    happiness = rows[order.index("Happiness")]
    assert happiness == [pytest.approx(3 / 21), pytest.approx(1 / 7), pytest.approx(1 / 8)]
    assert rows[order.index("Contempt")][:2] == [None, None]
    html = handlers.compare_table([raf, caer, aff8])
    assert html.count("<tr>") == 9 and "poster-absent" in html


def test_compare_runs_every_available_checkpoint(tmp_path, astronaut_result, checkpoint_dir):  # noqa: F811
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "rafdb_best.pth").symlink_to(checkpoint_dir / "rafdb_best.pth")
    write_recipe_checkpoint(folder / "affectnet8_best.pth", num_classes=8)
    store = ModelStore(device="cpu", checkpoint_dirs=[folder])
    table, gallery, status = handlers.compare_checkpoints(astronaut_result[6], store=store)
    assert "RAF-DB" in table and "AffectNet-8" in table and "Contempt" in table
    assert [caption.split(":")[0] for _, caption in gallery] == ["POSTER++ · RAF-DB", "POSTER++ · AffectNet-8"]
    for strip, _ in gallery:  # both streams' Grad-CAM at three scales in one row
        assert strip.ndim == 3 and strip.shape[1] > 6 * 150 > strip.shape[0]
    for missing in ("POSTER++ · AffectNet-7", "POSTER++ · CAER-S", "POSTER · RAF-DB", "ARM · RAF-DB"):
        assert missing in status
    assert handlers.compare_checkpoints(None, store=store)[1] == []


# --- the Model tab ------------------------------------------------------------------------

def test_model_facts(app_store):  # noqa: F811
    facts = model_handlers.model_facts("raf-db", store=app_store)
    sha = app_store.predictor("raf-db").model.info.sha256
    for words in ("RAF-DB", "92.21 %", sha, "Happiness", "rafdb_best.pth"):
        assert words in facts
    assert "No checkpoint" in model_handlers.model_facts(None, store=app_store)
    assert "Not for decisions about people" in model_handlers.model_card()


def test_switching_to_a_missing_checkpoint_keeps_the_current_one(app_store):  # noqa: F811
    key, status = model_handlers.switch_checkpoint("caer-s", "raf-db", store=app_store)
    assert key == "raf-db" and "CAER-S" in status
    assert model_handlers.switch_checkpoint("raf-db", "raf-db", store=app_store) == ("raf-db", "")
    dropdown = model_handlers.checkpoint_dropdown("raf-db", [], store=app_store)
    assert [k for _, k in dropdown["choices"]] == ["raf-db"] and dropdown["value"] == "raf-db"


def test_bad_checkpoint_uploads_are_refused(tmp_path, app_store, monkeypatch):  # noqa: F811
    text = tmp_path / "model.pth"
    text.write_text("not a checkpoint")
    key, uploads, status = model_handlers.upload_checkpoint(str(text), "raf-db", [], store=app_store)
    assert key == "raf-db" and uploads == [] and "refused" in status
    monkeypatch.setenv("POSTER_MAX_UPLOAD_MB", "0.001")
    big = tmp_path / "big.pth"
    big.write_bytes(b"\0" * 5000)
    key, uploads, status = model_handlers.upload_checkpoint(str(big), "raf-db", [], store=app_store)
    assert key == "raf-db" and "limit" in status


def test_a_pickle_that_runs_code_is_refused(tmp_path, app_store):  # noqa: F811
    import pickle

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"state_dict": Evil()}))
    key, _, status = model_handlers.upload_checkpoint(str(path), "raf-db", [], store=app_store)
    assert key == "raf-db" and "refused" in status and not (tmp_path / "pwned").exists()


def test_a_good_upload_becomes_the_visitors_checkpoint(tmp_path, checkpoint_dir):  # noqa: F811
    store = ModelStore(device="cpu", checkpoint_dirs=[checkpoint_dir], upload_dir=tmp_path / "uploads")
    key, uploads, status = model_handlers.upload_checkpoint(str(checkpoint_dir / "rafdb_best.pth"), "raf-db", [],
                                                      store=store)
    assert key.startswith("upload:") and uploads == [key] and "switched" in status
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

    key, status = model_handlers.download_checkpoint("raf-db", None, progress=lambda *a, **k: seen.append(a),
                                               store=store, downloader=fake_download)
    assert key == "raf-db" and "switched" in status and len(seen) == 2 and seen[-1][0] == 1.0

    def offline(name, progress=None, quiet=False):
        raise DownloadError("could not reach drive.google.com; no network?")

    key, status = model_handlers.download_checkpoint("caer-s", "raf-db", store=store, downloader=offline)
    assert key == "raf-db" and "no network" in status


def test_header_and_banner(app_store):  # noqa: F811
    assert "Active checkpoint: POSTER++ · RAF-DB" in model_handlers.header_line("raf-db", store=app_store)
    assert model_handlers.header_line(None, store=app_store) == ""
    row, text = model_handlers.banner(None)
    assert row["visible"] is True and "No POSTER++ checkpoint" in text
    assert model_handlers.banner("raf-db")[0]["visible"] is False


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
        writer.join(0.2)
        assert events == ["two readers"]  # the writer waits for the reader
    writer.join(2)
    assert events[-1] == "writer"


# --- explorer -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs") / "runs"
    write_run(root)
    (root / "broken").mkdir()
    (root / "broken" / "run.json").write_text("{not json")
    return root


def test_runs_are_listed_and_broken_ones_named(runs_root):
    dropdown, note = explorer.run_choices(runs_root)
    assert dropdown["choices"] == ["raf-db-test"] and dropdown["value"] == "raf-db-test"
    assert "broken" in note


def test_no_runs_says_how_to_make_one(tmp_path):
    dropdown, note = explorer.run_choices(tmp_path / "nothing")
    assert dropdown["choices"] == [] and "python -m poster evaluate" in note


def test_gallery_captions_say_right_or_wrong():
    import pandas as pd

    right = pd.Series({"correct": True, "pred_name": "Happiness", "confidence": 0.871, "label_name": "Happiness"})
    wrong = pd.Series({"correct": False, "pred_name": "Anger", "confidence": 0.4, "label_name": "Fear"})
    assert explorer.gallery_caption(right) == "✓ Happiness 87%"
    assert explorer.gallery_caption(wrong) == "✗ Anger 40% (label Fear)"


def test_opening_a_run(runs_root):
    summary, matrix, classes, suspects, suspect_rows, cells, cell_rows, caption = explorer.open_run(
        "raf-db-test", runs_root)
    assert "accuracy" in summary and "published 92.21 %" in summary
    frame = matrix.data if hasattr(matrix, "data") else matrix
    assert list(frame.columns) == [explorer.CORNER, *RAF_CLASSES] and len(frame) == 7
    assert int(frame.iloc[:, 1:].to_numpy().sum()) == 16
    assert list(classes["class"]) == list(RAF_CLASSES)
    assert len(suspects) == len(suspect_rows)
    assert cells == [] and "Click a cell" in caption


def test_a_confusion_cell_shows_its_images_sorted_by_confidence(runs_root):
    run = explorer.get_run("raf-db-test", runs_root)
    table = run.predictions
    # The busiest cell of the matrix.
    counts = table.groupby(["label", "pred"]).size()
    (true, pred) = counts.idxmax()
    items, rows, caption = explorer.select_cell("raf-db-test", true, pred + 1, explorer.DEFAULT_SORT, runs_root)
    expected = table[(table.label == true) & (table.pred == pred)].sort_values("confidence", ascending=False)
    assert rows == list(expected.index) and len(items) == len(expected)
    for (image, label), (_, row) in zip(items, expected.iterrows()):
        assert image.ndim == 3 and label == explorer.gallery_caption(row)
    assert f"true {RAF_CLASSES[true]}, predicted {RAF_CLASSES[pred]}" in caption
    # The first column selects the whole row; sorting by loss reorders.
    _, whole_row, _ = explorer.select_cell("raf-db-test", true, 0, "loss (high first)", runs_root)
    assert sorted(whole_row) == sorted(table.index[table.label == true])
    assert whole_row == list(table[table.label == true].sort_values("loss", ascending=False).index)


def test_clicking_an_image_shows_its_prediction_and_explains_it(runs_root, app_store):  # noqa: F811
    run = explorer.get_run("raf-db-test", runs_root)
    rows = list(run.predictions.index[:3])
    image, card, subject = explorer.select_image("raf-db-test", rows, 1, "raf-db", runs_root, store=app_store)
    row = run.predictions.loc[rows[1]]
    assert image.ndim == 3 and f"labeled {row['label_name']}" in card
    assert subject is not None and subject.model_key == "raf-db" and subject.crop.shape == (224, 224, 3)


def test_explorer_without_checkpoint_shows_prediction_only(runs_root, empty_store):  # noqa: F811
    rows = [0]
    image, card, subject = explorer.select_image("raf-db-test", rows, 0, None, runs_root, store=empty_store)
    assert image is not None and subject is None and "No explanation" in card


# --- the app as a whole -------------------------------------------------------------------

def test_build_demo_without_a_browser(app_store):  # noqa: F811
    from demo import build_demo, launch_kwargs

    demo = build_demo(app_store)
    assert isinstance(demo, gr.Blocks)
    api = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert api == {"analyze", "evaluate"}
    # The live webcam sends frames as events of its own (no Gradio stream), on a worker pool of its own.
    assert not [fn for fn in demo.fns.values() if fn.connection == "stream"]
    frames = [fn for fn in demo.fns.values() if fn.concurrency_id == "webcam"]
    assert len(frames) == 1 and frames[0].concurrency_limit == 2 and frames[0].api_visibility == "private"
    kwargs = launch_kwargs()
    assert kwargs["show_error"] is False and kwargs["max_file_size"] > 0


def test_switching_checkpoints_reanalyzes_only_an_analyzed_photo(astronaut_result, app_store):  # noqa: F811
    from demo.app import _reanalyze
    from demo.store import set_store

    set_store(app_store)
    result = astronaut_result[5]
    assert _reanalyze(None, None, "raf-db", 0)[7] == {"__type__": "update"}  # page just opened
    assert _reanalyze(str(astronaut_path()), result, "raf-db", 0)[7] == {"__type__": "update"}  # same key
    result.model_key = "upload:123456789abc"  # as if it had been analyzed with another checkpoint
    try:
        out = _reanalyze(str(astronaut_path()), result, "raf-db", 3)
    finally:
        result.model_key = "raf-db"
    assert out[5].model_key == "raf-db" and out[7] == 4


def test_gpu_decorator_is_a_no_op_without_spaces():
    from demo.gpu import available, gpu

    def f(x):
        return x

    assert available() is False and gpu(f) is f


def test_images_reach_gradio_as_whole_files():
    from demo.files import files_out, image_file

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


def test_explorer_falls_back_to_thumbnails(tmp_path, app_store):  # noqa: F811
    root = tmp_path / "runs"
    write_run(root, name="moved", with_dataset=False)
    image, card, subject = explorer.select_image("moved", [0], 0, "raf-db", root, store=app_store)
    assert image is not None and "thumbnail" in subject.title

"""The live webcam's server side, called as plain functions: frames, tracks, precision, slots, CSV."""
from __future__ import annotations

import base64
import csv
import io
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from demo.webcam import live_tracking as tracking
from demo.webcam import precision as precisions
from demo.serving.camera_slots import CameraSlots
from demo.webcam.record import results_csv, results_file
from demo.webcam.live_channel import LiveChannels
from demo.webcam.tab import (download_results, freeze_frame, live_frame, send_frame, start_stream, stop_stream,
                             update_settings)
from poster.errors import ImageError
from poster.inference.faces import Face
from tests._app import RAF_CLASSES, app_store, astronaut_path, checkpoint_dir, empty_store  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")


def data_url(image: np.ndarray | Image.Image, fmt: str = "JPEG") -> str:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def frame(astronaut) -> np.ndarray:
    """The astronaut at 480x360, as the browser sends a frame."""
    return np.asarray(Image.fromarray(astronaut).resize((360, 360)).crop((-60, 0, 420, 360)))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def send(frame, session=None, store=None, slots=None, visitor="a", precision="", model_key="raf-db", t=None):
    payload = {"frame": frame if isinstance(frame, (str, dict)) or frame is None else data_url(frame)}
    if t is not None:
        payload["t"] = t
    session = session if session is not None else tracking.LiveSession()
    view = live_frame(payload, session, model_key, precision, 0.6, store=store, slots=slots or CameraSlots(1, 120),
                      visitor=visitor)
    return json.loads(view.live), session


# --- tracks -------------------------------------------------------------------------------

def _face(box) -> Face:
    return Face(box=box, score=1.0, landmarks=np.zeros((5, 2), np.float32))


def test_iou_and_matching():
    assert tracking.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert tracking.iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    tracks = [tracking.Track(0, (0, 0, 10, 10), np.zeros((5, 2))), tracking.Track(1, (50, 50, 60, 60), np.zeros((5, 2)))]
    assert tracking.match(tracks, [(51, 51, 61, 61), (1, 1, 11, 11), (200, 200, 210, 210)]) == {0: 1, 1: 0}


def test_faces_keep_their_track_and_lost_faces_are_dropped():
    session = tracking.LiveSession()
    seen = tracking.update_tracks(session, [_face((0, 0, 10, 10))])
    tracking.smooth(seen[0], np.array([1.0, 0.0]), 0.5)
    seen = tracking.update_tracks(session, [_face((1, 0, 11, 10))])
    tracking.smooth(seen[0], np.array([0.0, 1.0]), 0.5)
    assert [t.id for t in session.tracks] == [0]
    np.testing.assert_allclose(session.tracks[0].probabilities, [0.5, 0.5])
    tracking.update_tracks(session, [_face((100, 100, 110, 110))])  # a new face; the first one is missed
    assert [t.id for t in session.tracks] == [0, 1] and session.tracks[0].missed == 1
    for _ in range(tracking.MAX_MISSED):
        tracking.update_tracks(session, [_face((100, 100, 110, 110))])
    assert [t.id for t in session.tracks] == [1]


# --- frames -------------------------------------------------------------------------------

def test_detection_and_classification_alternate_on_the_cpu(app_store, frame):  # noqa: F811
    slots = CameraSlots(1, 120)
    first, session = send(frame, store=app_store, slots=slots, t=12.5)
    assert first["status"] == "ok" and first["step"] == "detect" and first["t"] == 12.5
    assert (first["width"], first["height"]) == (480, 360) and first["classes"] == list(RAF_CLASSES)
    (face,) = first["faces"]
    x1, y1, x2, y2 = face["box"]
    assert 150 < (x1 + x2) / 2 < 300 and 40 < (y1 + y2) / 2 < 160  # the astronaut's face
    assert face["label"] in RAF_CLASSES and sum(face["p"]) == pytest.approx(1, abs=1e-3)
    assert len(json.dumps(first)) < 1000  # a small result: no pixels travel back
    second, session = send(frame, session, store=app_store, slots=slots)
    assert second["step"] == "classify" and second["faces"][0]["track"] == face["track"]
    assert second["faces"][0]["box"] == face["box"]
    third, session = send(frame, session, store=app_store, slots=slots)
    assert third["step"] == "detect" and third["faces"][0]["track"] == face["track"]
    assert session.frames == 3 and session.last_frame.shape == (360, 480, 3)


class CountingDetector:
    """The real detector, noting the size of every image it is asked about."""

    def __init__(self, detector) -> None:
        self.detector, self.shapes = detector, []

    def detect(self, image, max_side=None):
        self.shapes.append(image.shape[:2])
        return self.detector.detect(image, max_side=max_side)


def test_between_full_detections_faces_are_looked_for_near_their_last_box(app_store, frame, face_detector):  # noqa: F811
    counting = CountingDetector(face_detector)
    session = tracking.LiveSession()
    boxes = []
    for _ in range(tracking.FULL_DETECTION_EVERY + 1):
        faces = tracking.detect(frame, session, counting)
        tracking.update_tracks(session, faces)
        boxes.append(faces[0].box)
    full = [shape == frame.shape[:2] for shape in counting.shapes]
    assert full == [True] + [False] * (tracking.FULL_DETECTION_EVERY - 1) + [True]
    assert all(max(shape) < 200 for shape, f in zip(counting.shapes, full) if not f)  # small squares
    assert tracking.iou(boxes[1], boxes[0]) > 0.8  # the same face, in frame coordinates
    assert [t.id for t in session.tracks] == [0]
    # A face that left its square is searched for in the whole frame at once.
    counting.shapes.clear()
    session.tracks[0].box = (0.0, 300.0, 50.0, 350.0)
    assert len(tracking.detect(frame, session, counting)) == 1 and counting.shapes[-1] == frame.shape[:2]


def test_on_a_gpu_every_frame_is_detected_and_classified(app_store, frame):  # noqa: F811
    session = tracking.LiveSession()
    for _ in range(2):
        result = tracking.process_frame(frame, session, "raf-db", precisions.FLOAT32, app_store, alternate=False)
        assert result["step"] == "detect" and result["faces"][0]["p"] is not None


@pytest.mark.skipif(not precisions.cpu_has_bfloat16(), reason="this CPU has no native bfloat16")
def test_the_webcam_runs_bfloat16_here_and_photos_stay_float32(app_store, frame):  # noqa: F811
    assert precisions.choices(False) == [precisions.BFLOAT16, precisions.FLOAT32]
    result, _ = send(frame, store=app_store)
    assert result["precision"] == "bfloat16"
    fast, _ = precisions.live_predictor(app_store, "raf-db", "bfloat16")
    assert fast.model.dtype == torch.bfloat16 and fast is precisions.live_predictor(app_store, "raf-db", "bfloat16")[0]
    assert app_store.predictor("raf-db").model.dtype == torch.float32  # photos
    exact, _ = precisions.live_predictor(app_store, "raf-db", "float32")
    assert exact is app_store.predictor("raf-db")
    switched, _ = send(frame, store=app_store, precision="float32")
    assert switched["precision"] == "float32"
    assert precisions.checked("float64; rm -rf /", False) == precisions.BFLOAT16  # a made-up choice


class _BuildingForward:
    """Stands in for ``AcceleratedForward`` whose package is being built (a real build takes a
    minute; test_accelerate.py does one)."""

    state = "compiling"

    def __init__(self, model, build=True):
        self.model = model

    def __call__(self, x):
        return self.model(x)


def test_the_live_model_runs_through_a_package_built_ahead_but_never_an_upload(app_store, frame, monkeypatch):  # noqa: F811
    from demo.serving import store as store_module
    from poster.inference import predictor as predictor_module

    monkeypatch.setattr(store_module, "accelerate_wanted", lambda: True)
    monkeypatch.setattr(predictor_module, "AcceleratedForward", _BuildingForward)
    monkeypatch.setattr(app_store, "_accelerated", 0)
    live, _ = precisions.live_predictor(app_store, "raf-db", precisions.FLOAT32)
    try:
        result, _ = send(frame, store=app_store, precision=precisions.FLOAT32)
        assert result["engine"] == "compiling" and live.engine == "compiling" and result["faces"][0]["p"] is not None
        upload = "upload:0123456789abcdef"
        monkeypatch.setitem(app_store._predictors, upload, predictor_module.Predictor(live.model, live.detector))
        assert app_store.variant(upload, accelerated=True).accelerated is None  # a visitor's upload
        monkeypatch.setattr(store_module, "MAX_ACCELERATED", 1)
        assert app_store.variant("raf-db", "bfloat16", accelerated=True).accelerated is None  # the slot is taken
    finally:
        live.accelerated = None
        app_store._variants.pop("raf-db", None)
    assert send(frame, store=app_store, precision=precisions.FLOAT32)[0]["engine"] == "eager"


def test_without_a_checkpoint_faces_are_boxed_not_classified(empty_store, frame):  # noqa: F811
    result, _ = send(frame, store=empty_store, model_key=None)
    assert result["status"] == "ok" and len(result["faces"]) == 1
    assert result["faces"][0]["label"] == "face" and result["faces"][0]["p"] is None
    assert "not classified" in result["message"]


@pytest.mark.parametrize("width, height", [(1, 1), (39, 39), (500, 39), (39, 500), (2000, 40)])
def test_a_frame_too_small_for_a_face_says_so_and_the_stream_goes_on(app_store, frame, width, height):  # noqa: F811
    slots = CameraSlots(1, 120)
    small = np.full((height, width, 3), 128, np.uint8)
    result, session = send(data_url(small, "PNG"), store=app_store, slots=slots)
    assert result["status"] == "ok" and result["faces"] == []
    assert result["message"] == f"no face found (the image is {width} x {height} pixels; faces need at least 40)"
    after, _ = send(frame, session, store=app_store, slots=slots)
    assert len(after["faces"]) == 1


def _png(array: np.ndarray) -> str:
    return data_url(Image.fromarray(array), "PNG")


def test_frames_of_other_kinds_are_converted(app_store, frame):  # noqa: F811
    grey = np.asarray(Image.fromarray(frame).convert("L"))
    kinds = {
        "grey array": grey,
        "16-bit array": frame.astype(np.uint16) * 257,
        "float array": frame.astype(np.float32) / 255,
        "4-channel array": np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)]),
        "grey PNG": _png(grey),
        "16-bit PNG": _png(grey.astype(np.uint16) * 257),
        "RGBA PNG": _png(np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])),
    }
    for name, value in kinds.items():
        image = tracking.decode_frame(value)
        assert image.dtype == np.uint8 and image.shape == (360, 480, 3), name
        assert np.abs(image.astype(int).mean(axis=2) - grey).mean() < 3, name  # the same picture
    result, _ = send(kinds["16-bit PNG"], store=app_store)
    assert len(result["faces"]) == 1


@pytest.mark.parametrize("value, words", [
    (np.full((50, 50, 3), 2.0, np.float32), "must lie in [0, 1]"),
    (np.zeros((50, 50, 2), np.uint8), "wrong array shape"),
    ("data:text/plain;base64,aGVsbG8=", "not an image"),
    ("data:image/jpeg;base64,@@not base64@@", "damaged"),
    ("data:image/jpeg;base64," + base64.b64encode(b"hello, not a picture").decode(), "not an image"),
    ({"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}, "not an image (dict)"),
    (12, "not an image (int)"),
])
def test_frames_that_are_not_images_are_refused(value, words):
    with pytest.raises(ImageError, match=re.escape(words)):
        tracking.decode_frame(value)


def test_a_frame_naming_a_file_is_refused_without_opening_it(app_store, monkeypatch):  # noqa: F811
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    for value in (str(astronaut_path()), {"path": str(astronaut_path())}, {"url": f"file://{astronaut_path()}"}):
        result, _ = send(value, store=app_store)
        assert result["status"] == "error" and "faces" not in result
        assert "astronaut" not in result["message"]
    assert not [p for p in opened if "astronaut" in str(p)]


def test_frames_above_the_photo_pixel_limit_are_refused(app_store):  # noqa: F811
    huge = Image.new("L", (10_000, 10_000))  # 100 MP of black compresses to a few kB
    result, session = send(data_url(huge, "PNG"), store=app_store)
    assert result["status"] == "error" and "100.0 MP" in result["message"] and "limit" in result["message"]
    with pytest.raises(ImageError, match="text"):
        tracking.decode_frame("data:image/jpeg;base64," + "A" * (tracking.MAX_FRAME_CHARS + 4))


def test_big_frames_are_processed_at_most_frame_max_side(app_store, astronaut):  # noqa: F811
    big = np.asarray(Image.fromarray(astronaut).resize((1280, 960)))
    result, session = send(big.copy(), store=app_store)
    assert (result["width"], result["height"]) == (480, 360) and session.last_frame.shape == (360, 480, 3)


# --- camera slots ---------------------------------------------------------------------------

def test_a_second_visitor_waits_and_gets_the_camera_when_the_first_stops():
    clock = Clock()
    slots = CameraSlots(1, 120, idle_seconds=3, clock=clock)
    assert slots.claim("a").granted
    assert slots.claim("b").state == "waiting"
    clock.now += 2
    slots.claim("a")
    waiting = slots.claim("b")
    assert waiting.state == "waiting" and waiting.position == 1 and waiting.waited == pytest.approx(2)
    assert slots.claim("c").position == 2
    slots.release("a")
    assert slots.claim("b").granted and slots.claim("c").state == "waiting"


def test_a_silent_holder_loses_the_slot_and_a_long_session_ends():
    clock = Clock()
    slots = CameraSlots(1, 60, idle_seconds=3, clock=clock)
    slots.claim("a")
    clock.now += 4  # a's tab was closed: no frame for 4 s
    assert slots.claim("b").granted and slots.holders() == ["b"]
    for _ in range(29):  # b streams for almost a minute
        clock.now += 2
        assert slots.claim("b").granted
    clock.now += 2
    assert slots.claim("b").state == "ended"
    assert slots.claim("b").granted  # pressing Start again queues anew; nobody else waits


def test_one_frame_per_visitor_at_a_time():
    slots = CameraSlots(1, 60)
    with slots.processing("a") as free:
        assert free
        with slots.processing("a") as again:
            assert not again
    with slots.processing("a") as free:
        assert free


def test_the_waiting_page_is_told_how_long_it_has_waited(app_store, frame):  # noqa: F811
    clock = Clock()
    slots = CameraSlots(1, 120, idle_seconds=10, clock=clock)
    _, first = send(frame, store=app_store, slots=slots, visitor="a")
    send(frame, store=app_store, slots=slots, visitor="b")
    clock.now += 5
    send(frame, first, store=app_store, slots=slots, visitor="a")
    result, _ = send(frame, store=app_store, slots=slots, visitor="b")
    assert result["status"] == "waiting" and result["message"] == "waiting for the camera slot, 5 s; your turn in at most 115 s"
    assert first.tracks
    stop_stream(first, slots=slots, visitor="a")
    assert first.tracks == [] and not first.detected_last
    stop_stream(None, slots=slots, visitor="a")  # a page that never streamed
    assert send(frame, store=app_store, slots=slots, visitor="b")[0]["status"] == "ok"


# --- what a visitor takes away --------------------------------------------------------------

def test_recorded_results_download_as_csv(app_store, frame, tmp_path):  # noqa: F811
    assert results_file(None) is None and download_results(None).results["visible"] is False
    session = None
    for _ in range(3):
        _, session = send(frame, session, store=app_store)
    rows = list(csv.DictReader(io.StringIO(results_csv(session))))
    assert len(rows) == 3 and {r["track"] for r in rows} == {"0"}
    assert list(rows[0])[:7] == ["time", "track", "x1", "y1", "x2", "y2", "label"]
    assert [k for k in rows[0] if k.startswith("p_")] == [f"p_{n}" for n in RAF_CLASSES]
    assert rows[0]["time"].endswith("+00:00") and rows[0]["label"] in RAF_CLASSES
    assert sum(float(rows[-1][f"p_{n}"]) for n in RAF_CLASSES) == pytest.approx(1, abs=1e-3)
    with open(results_file(session)) as handle:
        assert handle.read() == results_csv(session)
    offered = download_results(session).results
    assert offered["visible"] is True and offered["value"] != results_file(session)  # a fresh file each time
    with open(offered["value"]) as handle:
        assert handle.read() == results_csv(session)


def test_result_files_go_when_the_app_exits(app_store, frame, monkeypatch, tmp_path):  # noqa: F811
    from demo.serving import files

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(files, "_temporary", [])
    monkeypatch.setattr(files, "_folder", None)
    _, session = send(frame, store=app_store)
    written = Path(results_file(session))
    assert written.is_file() and written.parent.parent == tmp_path
    files.remove_temporary_files()
    assert not written.parent.exists()


def test_freeze_analyzes_the_newest_frame(app_store, frame):  # noqa: F811
    view = freeze_frame(None, "raf-db", store=app_store)
    assert view.frozen is None and "Start the camera" in view.frozen_summary and view.subject is None
    _, session = send(frame, store=app_store)
    view = freeze_frame(session, "raf-db", store=app_store)
    assert len(view.frozen_json) == 1 and view.frozen.shape == (360, 480, 3)
    assert view.subject is not None and view.subject.model_key == "raf-db"
    assert view.frozen_result.faces[0].probabilities is not None and view.frozen_section["visible"] is True
    assert session.last_frame is not view.frozen_result.image  # the stream goes on without touching it


# --- the frame channel ----------------------------------------------------------------------

def test_start_opens_a_channel_whose_token_alone_reaches_the_session(app_store, frame):  # noqa: F811
    import gc

    channels, slots = LiveChannels(), CameraSlots(1, 120)
    session = tracking.LiveSession()
    opened = json.loads(start_stream(session, "raf-db", "float32", 0.3, channels=channels, visitor="v1").live)
    assert opened["status"] == "started" and opened["token"] == session.token and len(session.token) >= 32
    assert session.visitor == "v1" and session.settings == tracking.LiveSettings("raf-db", "float32", 0.3)
    again = json.loads(start_stream(session, "raf-db", "float32", 0.3, channels=channels, visitor="v1").live)
    assert again["token"] == opened["token"] and again["opened"] >= opened["opened"]  # Start again: same channel

    answer = json.loads(send_frame({"token": session.token, "frame": data_url(frame), "t": 3.0}, channels=channels,
                                   store=app_store, slots=slots))
    assert answer["status"] == "ok" and len(answer["faces"]) == 1 and answer["precision"] == "float32"
    assert answer["t"] == 3.0 and session.frames == 1 and session.last_frame is not None
    update_settings(session, "raf-db", "bfloat16" if precisions.cpu_has_bfloat16() else "float32", 0.0)
    answer = json.loads(send_frame({"token": session.token, "frame": data_url(frame)}, channels=channels,
                                   store=app_store, slots=slots))
    assert answer["precision"] == precisions.default(False) and session.settings.smoothing == 0.0

    other = tracking.LiveSession()
    for payload in ({"token": "not-" + session.token, "frame": data_url(frame)}, {"frame": data_url(frame)}, None):
        closed = json.loads(send_frame(payload, channels=channels, store=app_store, slots=slots))
        assert closed["status"] == "closed" and "press Start" in closed["message"]
    assert other.frames == 0 and session.frames == 2

    stop_stream(session, slots=slots, visitor="v1", channels=channels)  # Stop closes the channel
    closed = json.loads(send_frame({"token": opened["token"], "frame": data_url(frame)}, channels=channels,
                                   store=app_store, slots=slots))
    assert closed["status"] == "closed" and session.frames == 2
    reopened = json.loads(start_stream(session, "raf-db", "float32", 0.3, channels=channels, visitor="v1").live)
    assert reopened["token"] != opened["token"]

    token = session.token
    del session, again, opened
    gc.collect()
    assert channels.find(token) is None and len(channels) == 0  # the Gradio session let it go: so does the channel


def test_a_closed_channel_opens_nothing_and_a_new_start_gets_a_new_token():
    channels = LiveChannels()
    session = tracking.LiveSession()
    token = channels.open(session, "v")
    assert channels.find(token) is session
    channels.close(session)
    assert channels.find(token) is None and session.token == ""
    assert channels.open(session, "v") not in ("", token)
    assert channels.find(None) is None and channels.find(["x"]) is None and channels.find("x" * 1000) is None

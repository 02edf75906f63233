"""The Video tab's handlers on a clip made from a sample photo (ARM, deterministic weights)."""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from demo.serving.files import UPLOAD_REFUSED, upload_cache
from demo.serving.store import ModelStore
from demo.video.builder import _pick_face
from demo.video.handlers import RUNNING, VideoCaps, analyze_clip, moment_at, remove_session_folder
from poster.errors import PosterError
from poster.video import probe
from tests._checkpoints import checkpoint_file
from tests._video_clips import ASTRONAUT_FACE, face_patch, scene, write_clip

CAPS = VideoCaps(max_bytes=5 * 2**20, max_seconds=10, fps=5, jobs=1)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ModelStore:
    folder = tmp_path_factory.mktemp("arm-checkpoints")
    (folder / "arm").mkdir()
    checkpoint_file(folder / "arm" / "epoch59_acc0.9205.pth", "arm")
    return ModelStore(device="cpu", checkpoint_dirs=[folder])


_UPLOADED: list[Path] = []


def _upload(path: Path) -> str:
    """``path`` copied into Gradio's upload cache, as the upload route puts a visitor's file there."""
    folder = upload_cache() / f"video-test-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    _UPLOADED.append(folder)
    return str(shutil.copy(path, folder / path.name))


@pytest.fixture(scope="module", autouse=True)
def _uploads_removed():
    yield
    for folder in _UPLOADED:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut) -> str:
    face = face_patch(astronaut, ASTRONAUT_FACE)
    frames = [scene([(face, 20 + 10 * i, 40)]) for i in range(15)]  # 1.5 s, one face moving right
    return _upload(write_clip(tmp_path_factory.mktemp("tab-clip") / "interview.mp4", frames))


@pytest.fixture(scope="module")
def steps(clip, store):
    steps = list(analyze_clip({"path": clip}, "arm-raf-db", None, "visitor-a", store=store, caps=CAPS))
    yield steps
    remove_session_folder(steps[-1].folder)


def test_a_clip_is_analysed_with_progress_then_every_output(steps):
    assert "Loading" in steps[0].progress
    running = [s for s in steps if "<progress" in s.progress]
    assert [int(s.progress.split('value="')[1].split('"')[0]) for s in running] == list(range(1, 9))
    assert "of about 8 frames" in running[0].progress
    done = steps[-1]
    assert "Done: 8 frames analysed" in done.progress
    result = done.result
    assert set(result.analysis.table["track"]) == {0} and len(result.analysis.table) == 8
    assert probe(done.annotated).has_audio is False and Path(done.annotated).parent.parent == Path(done.folder)
    assert [Path(p).name for p in done.downloads] == ["faces.csv", "faces.parquet", "annotated.mp4"]
    pd.testing.assert_frame_equal(pd.read_parquet(done.downloads[1]), result.analysis.table)
    assert 'data-track="0"' in done.summary and "on screen" in done.summary
    assert done.timeline.ndim == 3 and done.timeline.shape[1] >= 800
    assert all(s.folder == done.folder for s in steps)


def test_a_click_on_the_timeline_shows_that_moment_and_its_face_can_be_explained(steps, store):
    result = steps[-1].result
    timeline = result.timeline
    x = timeline.left + (timeline.right - timeline.left) * 0.8 / timeline.end  # 0.8 s
    view = moment_at(result, x, store=store)
    assert view.caption.startswith("0.80 s: face 0: ")
    assert view.moment.rows["frame"].tolist() == [8]
    assert view.frame.shape == (240, 320, 3) and not np.array_equal(view.frame, view.moment.image)  # drawn on
    assert view.faces["choices"] and view.faces["value"] is None
    subject = _pick_face(view.moment, 0, "arm-raf-db").subject
    assert subject.crop.shape == (224, 224, 3) and subject.face_crop.aligned  # landmarks found again
    assert subject.title == "face 0 at 0.80 s" and subject.model_key == "arm-raf-db"


def test_without_a_clip_the_timeline_says_what_to_do():
    assert "Analyse a clip first" in moment_at(None, 10.0, store).caption


@pytest.mark.parametrize("caps, words", [
    (VideoCaps(max_bytes=1024, max_seconds=10, fps=5, jobs=1), "up to 0.000977 MB (POSTER_VIDEO_MAX_MB)"),
    (VideoCaps(max_bytes=5 * 2**20, max_seconds=1, fps=5, jobs=1), "up to 1 s (POSTER_VIDEO_MAX_SECONDS)"),
])
def test_clips_over_the_caps_are_refused_with_the_cap(clip, store, caps, words):
    with pytest.raises(PosterError, match=words.replace("(", r"\(").replace(")", r"\)")):
        next(analyze_clip({"path": clip}, "arm-raf-db", None, "visitor-b", store=store, caps=caps))


def test_only_uploads_are_opened(tmp_path, store):
    outside = write_clip(tmp_path / "elsewhere.mp4", [scene([])] * 3)
    for payload in ({"path": str(outside)}, "/etc/passwd", {"path": "../../etc/passwd"}):
        with pytest.raises(PosterError, match=UPLOAD_REFUSED):
            next(analyze_clip(payload, "arm-raf-db", None, "visitor-c", store=store, caps=CAPS))


def test_a_text_file_is_refused_with_one_sentence(tmp_path, store):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(PosterError, match="notes.mp4 is a text file, not a video"):
        next(analyze_clip({"path": _upload(text)}, "arm-raf-db", None, "visitor-d", store=store, caps=CAPS))


def test_one_clip_per_visitor_and_cancel_frees_the_visitor(clip, store):
    first = analyze_clip({"path": clip}, "arm-raf-db", None, "visitor-e", store=store, caps=CAPS)
    assert "Loading" in next(first).progress
    with pytest.raises(PosterError, match="your previous clip is still being analysed"):
        next(analyze_clip({"path": clip}, "arm-raf-db", None, "visitor-e", store=store, caps=CAPS))
    other = analyze_clip({"path": clip}, "arm-raf-db", None, "visitor-f", store=store, caps=CAPS)
    assert "Loading" in next(other).progress  # another visitor is not held up
    other.close()
    first.close()  # Cancel: Gradio closes the generator
    again = analyze_clip({"path": clip}, "arm-raf-db", None, "visitor-e", store=store, caps=CAPS)
    assert "Loading" in next(again).progress
    again.close()
    assert not RUNNING._visitors

"""Video files: reading and sampling, hostile files, tracking, and the `video` command's outputs.

Clips are made here from the sample face photos (320x240, a few seconds at 10 frames/s) and the
network is ARM with deterministic weights (the quickest of the three; nothing trained here).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from poster.cli import main
from poster.errors import VideoError
from poster.inference.predictor import Predictor
from poster.video import (Sampler, VideoAnalysis, VideoAnalyzer, probe, read_frames, rows_at, summary,
                          write_annotated)
from poster.video.analysis import FIXED_COLUMNS
from poster.video.annotate import track_color
from tests._checkpoints import checkpoint_file
from tests._video_clips import ASTRONAUT_FACE, HOPPER_FACE, encode_sound, face_patch, scene, write_clip

FPS = 10
FRAMES = 35  # 3.5 s
HOPPER_AWAY = range(8, 21)  # frames without the second face: 0.8-2.0 s, longer than a track survives


@pytest.fixture(scope="module")
def patches(astronaut, grace_hopper) -> tuple[np.ndarray, np.ndarray]:
    return face_patch(astronaut, ASTRONAUT_FACE), face_patch(grace_hopper, HOPPER_FACE)


@pytest.fixture(scope="module")
def clip_frames(patches) -> list[np.ndarray]:
    """The astronaut moves left to right along the top; Grace Hopper sits below, leaves and comes back."""
    astronaut, hopper = patches
    return [scene([(astronaut, 5 + 5 * i, 5)] + ([] if i in HOPPER_AWAY else [(hopper, 190, 125)]))
            for i in range(FRAMES)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, clip_frames) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "two faces.mp4", clip_frames, fps=FPS, audio=True)


@pytest.fixture(scope="module")
def arm_checkpoint(tmp_path_factory) -> Path:
    return checkpoint_file(tmp_path_factory.mktemp("arm") / "arm_rafdb.pth", arch="arm")


@pytest.fixture(scope="module")
def command_out(clip, arm_checkpoint, tmp_path_factory) -> Path:
    """`python -m poster video` run once on the clip; the tests below read what it wrote."""
    out = tmp_path_factory.mktemp("video-run")
    assert main(["video", str(clip), "--out", str(out), "--checkpoint", str(arm_checkpoint),
                 "--dataset", "raf-db", "--fps", "5"]) == 0
    return out


@pytest.fixture(scope="module")
def table(command_out) -> pd.DataFrame:
    return pd.read_parquet(command_out / "faces.parquet")


# --- reading ---------------------------------------------------------------------------------

def test_a_clip_is_probed_and_sampled_by_time(clip):
    info = probe(clip)
    assert (info.width, info.height, info.fps, info.rotation, info.has_audio) == (320, 240, 10.0, 0, True)
    assert info.duration == pytest.approx(3.5, abs=0.05)
    assert [f.index for f in read_frames(clip, Sampler(fps=5))] == list(range(0, FRAMES, 2))
    assert [f.index for f in read_frames(clip, Sampler(every=4), until=1.0)] == [0, 4, 8]
    first = next(read_frames(clip))
    assert first.image.shape == (240, 320, 3) and first.image.dtype == np.uint8


def test_a_variable_frame_rate_is_sampled_by_timestamps(tmp_path, clip_frames):
    times = [0.0, 0.05, 0.1, 0.3, 0.32, 0.34, 0.9, 1.0, 1.1, 1.5]
    path = write_clip(tmp_path / "vfr.mp4", clip_frames[:len(times)], times=times)
    sampled = [round(f.time, 2) for f in read_frames(path, Sampler(fps=4))]  # one frame per 0.25 s at most
    assert sampled == [0.0, 0.3, 0.9, 1.0, 1.5]


def test_rotation_metadata_turns_frames_upright(tmp_path, clip_frames):
    path = write_clip(tmp_path / "phone.mp4", clip_frames[:3], rotation=90)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (240, 320, 90)
    image = next(read_frames(path)).image
    assert image.shape == (320, 240, 3)
    expected = np.rot90(clip_frames[0])  # counter-clockwise, as players show it
    assert np.abs(image.astype(int) - expected).mean() < 6  # encoding loses a little


def test_odd_sizes_are_read_and_written(tmp_path, clip_frames):
    frames = [np.ascontiguousarray(f[:121, :161]) for f in clip_frames[:4]]
    path = write_clip(tmp_path / "odd.mp4", frames, codec="mpeg4")
    info = probe(path)
    assert (info.width, info.height) == (161, 121)
    assert next(read_frames(path)).image.shape == (121, 161, 3)
    empty = VideoAnalysis(table=pd.DataFrame(columns=[*FIXED_COLUMNS, "a"]), info=info, class_names=("a",),
                          interval=0.1, frames_analysed=4, seconds_analysed=0.4)
    out = write_annotated(empty, tmp_path / "odd-annotated.mp4")
    assert (probe(out).width, probe(out).height) == (162, 122)  # H.264 in 4:2:0 wants even sides


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("interview notes: participant 4, session 2\n")
    return path


def _truncated(tmp_path: Path, frames) -> Path:
    data = write_clip(tmp_path / "whole.mp4", frames).read_bytes()  # the index (moov) is written last
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def _truncated_stream(tmp_path: Path, frames) -> Path:
    data = write_clip(tmp_path / "whole-fast.mp4", frames, faststart=True).read_bytes()  # index first
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def _absurd_resolution(tmp_path: Path) -> Path:
    path = tmp_path / "huge.mp4"  # a YUV4MPEG2 header claiming 16000 x 12000 frames
    path.write_bytes(b"YUV4MPEG2 W16000 H12000 F5:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(4096))
    return path


def _very_long(tmp_path: Path, frames) -> Path:
    data = bytearray(write_clip(tmp_path / "short.mkv", frames).read_bytes())
    at = data.find(bytes([0x44, 0x89, 0x88]))  # Matroska's Duration element, an 8-byte float in ms
    data[at + 3: at + 11] = struct.pack(">d", 3.6e9)  # 1000 hours
    path = tmp_path / "long.mp4"
    path.write_bytes(bytes(data))
    return path


def _audio_only(tmp_path: Path) -> Path:
    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w") as container:
        encode_sound(container, container.add_stream("aac", rate=16000), np.zeros(16000, np.float32))
    return path


@pytest.mark.parametrize("make, words", [
    (lambda tmp, frames: _text_file(tmp), "is a text file, not a video"),
    (_truncated, "damaged or truncated"),
    (_truncated_stream, "breaks off after"),
    (lambda tmp, frames: _absurd_resolution(tmp), "says its frames are 16000 x 12000 pixels"),
    (_very_long, "says it lasts 1000.0 h"),
    (lambda tmp, frames: _audio_only(tmp), "has sound but no picture"),
    (lambda tmp, frames: tmp / "missing.mp4", "is not a file"),
])
def test_hostile_files_give_one_clear_message(tmp_path, clip_frames, make, words):
    path = make(tmp_path, clip_frames[:20])
    with pytest.raises(VideoError) as caught:
        for _ in read_frames(path):
            pass
    message = str(caught.value)
    assert words in message and "\n" not in message and path.name in message
    assert main(["video", str(path), "--out", str(tmp_path / "out")]) == 1  # before any model loads
    assert not (tmp_path / "out").exists()


# --- analysis --------------------------------------------------------------------------------

def test_a_clip_without_faces_gives_an_empty_table_and_says_so(tmp_path, arm_checkpoint, face_detector):
    from poster import load_checkpoint

    path = write_clip(tmp_path / "empty room.mp4", [scene([]) for _ in range(6)])
    predictor = Predictor(load_checkpoint(arm_checkpoint, dataset="raf-db"), face_detector)
    analysis = VideoAnalyzer(predictor, fps=5).analyze(path)
    assert analysis.table.empty and analysis.frames_analysed == 3
    assert list(analysis.table.columns) == [*FIXED_COLUMNS, *predictor.class_names]
    assert analysis.notes == ["no face found in the 3 analysed frames"]
    assert summary(analysis)["tracks"] == []


def test_a_moving_face_keeps_its_track_and_a_returning_face_is_reported(table):
    times = sorted(table["time"].unique())
    assert times == pytest.approx([0.2 * i for i in range(18)])  # every analysed frame has a face
    top = table[table["y1"] < 100]
    assert top["track"].nunique() == 1 and len(top) == 18  # the astronaut, moving 50 px a second
    assert top["x1"].is_monotonic_increasing
    bottom = table[table["y1"] > 100]
    before, after = bottom[bottom["time"] < 0.8], bottom[bottom["time"] > 2.0]
    assert len(before) == 4 and len(after) == 7  # reported before it leaves and after it returns
    assert bottom[(bottom["time"] >= 0.8) & (bottom["time"] <= 2.0)].empty
    assert before["track"].nunique() == after["track"].nunique() == 1
    assert before["track"].iloc[0] != after["track"].iloc[0]  # gone longer than a track lasts: a new id


def test_csv_and_parquet_hold_the_same_table(command_out, table):
    csv = pd.read_csv(command_out / "faces.csv")
    assert list(csv.columns) == list(table.columns)
    assert list(table.columns[len(FIXED_COLUMNS):]) == ["Surprise", "Fear", "Disgust", "Happiness", "Sadness",
                                                        "Anger", "Neutral"]
    pd.testing.assert_frame_equal(csv, table.astype({"label": object}), check_dtype=False, atol=1e-5)
    probabilities = table.iloc[:, len(FIXED_COLUMNS):].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert (table["label"] == table.columns[len(FIXED_COLUMNS) + probabilities.argmax(axis=1)]).all()


def test_the_annotated_video_shows_the_table_on_every_frame_with_the_sound(command_out, table, clip_frames):
    path = command_out / "annotated.mp4"
    info = probe(path)
    assert (info.width, info.height, info.has_audio) == (320, 240, True)
    frames = {f.index: f.image for f in read_frames(path)}
    assert len(frames) == FRAMES
    for index in (0, 10, 24):  # analysed frames: each box is drawn in its track's colour
        rows = table[table["frame"] == index]
        assert len(rows) == (1 if index == 10 else 2)
        for row in rows.itertuples():
            x1, y1, y2 = round(row.x1), round(row.y1), round(row.y2)
            edge = frames[index][y1 + 5:y2 - 5, x1:x1 + 2].reshape(-1, 3).astype(int).mean(axis=0)
            colour = np.array(Image.new("RGB", (1, 1), track_color(row.track)).getpixel((0, 0)))
            original = clip_frames[index][y1 + 5:y2 - 5, x1:x1 + 2].reshape(-1, 3).astype(int).mean(axis=0)
            assert np.abs(edge - colour).sum() < np.abs(original - colour).sum() / 2
    unchanged = np.abs(frames[12][200:, :100].astype(int) - clip_frames[12][200:, :100]).mean()
    assert unchanged < 4  # away from the faces the picture is the original's


def test_summary_and_timeline_are_written(command_out, table):
    report = json.loads((command_out / "summary.json").read_text())
    assert [t["track"] for t in report["tracks"]] == sorted(table["track"].unique())
    for track in report["tracks"]:
        rows = table[table["track"] == track["track"]]
        assert track["frames"] == len(rows) and track["seconds_on_screen"] == pytest.approx(0.2 * len(rows))
        assert sum(track["share_of_time"].values()) == pytest.approx(1.0)
        assert track["most_frequent"] == rows["label"].mode().sort_values().iloc[0] or \
            track["share_of_time"][track["most_frequent"]] == max(track["share_of_time"].values())
    with Image.open(command_out / "timeline.png") as timeline:
        assert timeline.format == "PNG" and timeline.width >= 800


def test_rows_at_a_moment_are_those_of_the_nearest_analysed_frame(command_out, table, clip):
    analysis = VideoAnalysis(table=table, info=probe(clip), class_names=tuple(table.columns[len(FIXED_COLUMNS):]),
                             interval=0.2, frames_analysed=18, seconds_analysed=3.6)
    assert set(rows_at(analysis, 1.03)["frame"]) == {10}
    assert rows_at(analysis, 30.0).empty

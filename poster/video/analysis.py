"""A video's faces and their expressions over time, as one table.

``VideoAnalyzer`` samples frames (``every`` N-th, or ``fps`` per second), finds faces and follows
them with the webcam's tracker (``poster.inference.tracking``), and classifies the aligned faces
in batches with the predictor's model. Each row of the table is one face in one analysed frame:
time, frame index, track id, box, label, confidence and the probability of every class. Rows hold
the raw per-frame probabilities; nothing is smoothed across frames.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import numpy as np
import pandas as pd

from ..inference.faces import Face, align_face
from ..inference.predictor import Predictor
from ..inference.tracking import FaceTracker
from .reader import MAX_VIDEO_PIXELS, MAX_VIDEO_SECONDS, Sampler, VideoInfo, probe, read_frames

BOX_COLUMNS = ("x1", "y1", "x2", "y2")
FIXED_COLUMNS = ("time", "frame", "track", *BOX_COLUMNS, "label", "confidence")
DETECT_MAX_SIDE = 640  # full-frame detections run on a copy this large: faces down to ~40 px in 720p
TRACK_GAP_SECONDS = 1.0  # a face unseen this long ends its track; seen again, it gets a new id


@dataclass
class VideoAnalysis:
    """The result: the table (one row per face per analysed frame), the file's facts, and notes."""

    table: pd.DataFrame
    info: VideoInfo
    class_names: tuple[str, ...]
    interval: float  # seconds between analysed frames
    frames_analysed: int
    seconds_analysed: float
    notes: list[str] = field(default_factory=list)

    @property
    def tracks(self) -> list[int]:
        return sorted(int(t) for t in self.table["track"].unique())


@dataclass(frozen=True)
class Progress:
    """Where an analysis is: frames analysed of about ``expected`` (None when the length is unknown)."""

    frames: int
    expected: int | None
    video_time: float
    analysis: VideoAnalysis | None = None  # set on the last step only


class VideoAnalyzer:
    """Analyses video files with one predictor; settings are fixed, files are many."""

    def __init__(self, predictor: Predictor, *, every: int | None = None, fps: float | None = None,
                 max_seconds: float | None = None, batch_size: int = 16, full_detection_every: int = 1,
                 model_slot: Callable[[], ContextManager] | None = None,
                 max_pixels: int = MAX_VIDEO_PIXELS, max_duration: float = MAX_VIDEO_SECONDS) -> None:
        """``every``/``fps``: which frames (neither: all); ``max_seconds``: analyse only the start;
        ``full_detection_every``: 1 searches every analysed frame whole, so a face entering is found at
        once; N > 1 searches only near known faces in between (faster, as the webcam does, but a new
        face may wait N - 1 frames); ``model_slot``: held around each model call (the app's limit)."""
        Sampler(every, fps)  # checks the values now rather than at the first file
        self.predictor = predictor
        self.every, self.fps, self.max_seconds = every, fps, max_seconds
        self.batch_size = max(1, batch_size)
        self.full_detection_every = max(1, full_detection_every)
        self.model_slot = model_slot or contextlib.nullcontext
        self.max_pixels, self.max_duration = max_pixels, max_duration

    def analyze(self, path: str | Path, progress: Callable[[Progress], None] | None = None) -> VideoAnalysis:
        """The analysis of one file; ``progress`` is called after every analysed frame."""
        for step in self.steps(path):
            if progress is not None:
                progress(step)
            if step.analysis is not None:
                return step.analysis
        raise AssertionError("steps() ends with the analysis")  # pragma: no cover

    def steps(self, path: str | Path) -> Iterator[Progress]:
        """The analysis as it goes: one ``Progress`` per analysed frame, the last one carrying the result.
        Closing the iterator stops the work (the app's Cancel)."""
        info = probe(path, self.max_pixels, self.max_duration)
        sampler = Sampler(self.every, self.fps)
        interval = sampler.interval(info)
        seconds = info.duration if self.max_seconds is None else min(info.duration or self.max_seconds,
                                                                       self.max_seconds)
        expected = sampler.expected(info, seconds)
        gap = max(1, round(TRACK_GAP_SECONDS / interval)) if interval else 3
        tracker = FaceTracker(max_missed=gap)
        detector = self.predictor.detector
        rows: list[tuple] = []
        pending: list[tuple[float, int, int, Face, np.ndarray]] = []
        frames, last_time = 0, 0.0
        for frame in read_frames(path, sampler, until=self.max_seconds, max_pixels=self.max_pixels,
                                 max_seconds=self.max_duration):
            faces = tracker.detect(frame.image, detector, self.full_detection_every, max_side=DETECT_MAX_SIDE)
            for track in tracker.update(faces):
                face = Face(track.box, 1.0, track.landmarks)
                pending.append((frame.time, frame.index, track.id, face, align_face(frame.image, face).image))
            if len(pending) >= self.batch_size:
                rows.extend(self._classify(pending))
                pending = []
            frames += 1
            last_time = frame.time
            yield Progress(frames=frames, expected=max(expected, frames) if expected else None, video_time=frame.time)
        rows.extend(self._classify(pending))
        analysis = VideoAnalysis(table=self._table(rows), info=info, class_names=tuple(self.predictor.class_names),
                                 interval=interval, frames_analysed=frames,
                                 seconds_analysed=last_time + interval if frames else 0.0)
        if frames and analysis.table.empty:
            analysis.notes.append(f"no face found in the {frames} analysed frames")
        if self.max_seconds is not None and info.duration and info.duration > self.max_seconds:
            analysis.notes.append(f"only the first {self.max_seconds:g} s of {info.duration:.1f} s were analysed")
        yield Progress(frames=frames, expected=frames, video_time=last_time, analysis=analysis)

    def _classify(self, pending: list[tuple[float, int, int, Face, np.ndarray]]) -> list[tuple]:
        if not pending:
            return []
        with self.model_slot():
            probabilities = self.predictor.classify([crop for *_, crop in pending])
        rows = []
        for (time, index, track, face, _), probs in zip(pending, probabilities):
            top = int(np.argmax(probs))
            rows.append((round(time, 4), index, track, *(round(float(v), 1) for v in face.box),
                         self.predictor.class_names[top], float(probs[top]), *(float(p) for p in probs)))
        return rows

    def _table(self, rows: list[tuple]) -> pd.DataFrame:
        columns = [*FIXED_COLUMNS, *self.predictor.class_names]
        table = pd.DataFrame(rows, columns=columns)
        dtypes = {"time": "float64", "frame": "int64", "track": "int64", "label": "string",
                  "confidence": "float32", **{c: "float32" for c in (*BOX_COLUMNS, *self.predictor.class_names)}}
        return table.astype(dtypes).sort_values(["time", "track"], kind="stable").reset_index(drop=True)


__all__ = ["VideoAnalyzer", "VideoAnalysis", "Progress", "FIXED_COLUMNS", "BOX_COLUMNS"]

"""The Video tab's work, as plain functions: analyse an uploaded clip step by step, show a moment.

A clip is analysed with the library's ``VideoAnalyzer`` in the precision rule's format (bfloat16
where the device runs it natively, float32 elsewhere, as the Explorer's evaluation), holding the
model's read lock only around each batch, so photos and the webcam are served between batches. One clip per visitor at a time; the files written for it go
into a folder of the visitor's session, deleted when the session ends.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import numpy as np
import pandas as pd

from poster.errors import PosterError
from poster.inference.faces import Face, FaceCrop, align_face
from poster.inference.precision import default_precision
from poster.inference.tracking import iou
from poster.video import (VideoAnalysis, VideoAnalyzer, draw_frame, frame_at, probe, rows_at, summary,
                          write_annotated, write_summary, write_table, write_timeline)

from ..serving.files import own_folder, uploaded_path
from ..serving.limits import env_number
from ..serving.store import ModelStore
from .views import TimelineImage, progress_html, summary_html, timeline_image

ENV_MAX_MB = "POSTER_VIDEO_MAX_MB"
ENV_MAX_SECONDS = "POSTER_VIDEO_MAX_SECONDS"
ENV_FPS = "POSTER_VIDEO_FPS"
ENV_JOBS = "POSTER_VIDEO_JOBS"
_SESSION_BASE = Path(tempfile.gettempdir()) / f"poster-session-videos-{os.getpid()}"


@dataclass(frozen=True)
class VideoCaps:
    """What a visitor's clip may be, and how densely it is analysed (each an environment variable)."""

    max_bytes: int
    max_seconds: float
    fps: float
    jobs: int  # clips analysed at once, for all visitors

    @classmethod
    def from_env(cls, on_gpu: bool = False) -> "VideoCaps":
        return cls(max_bytes=int(env_number(ENV_MAX_MB, 100) * 2**20),
                   max_seconds=env_number(ENV_MAX_SECONDS, 300 if on_gpu else 120),
                   fps=env_number(ENV_FPS, 10 if on_gpu else 5),
                   jobs=max(1, int(env_number(ENV_JOBS, 2 if on_gpu else 1))))

    def describe(self) -> str:
        return (f"Clips up to {self.max_bytes / 2**20:.3g} MB and {self.max_seconds:.3g} s, analysed at "
                f"{self.fps:g} frames per second; one clip per visitor at a time.")


@dataclass
class ClipResult:
    """A finished clip: its analysis, the uploaded file, where its outputs are, and the timeline's geometry."""

    analysis: VideoAnalysis
    clip: str
    folder: str
    files: dict[str, str]
    model_key: str | None
    timeline: TimelineImage


@dataclass
class VideoView:
    """One step of the Video tab: the progress line, then the results."""

    progress: str
    annotated: Any = None
    timeline: Any = None
    summary: str = ""
    downloads: Any = None
    result: ClipResult | None = None
    folder: str | None = None  # the session's folder for clip outputs (made on the first clip)


@dataclass
class Moment:
    """The frame at a clicked moment, its faces (for the explanation panel) and their choices."""

    time: float
    image: np.ndarray
    rows: pd.DataFrame
    crops: list[FaceCrop] = field(default_factory=list)


@dataclass
class MomentView:
    frame: Any
    caption: str
    faces: Any
    moment: Moment | None


class ClipsRunning:
    """Visitors with a clip being analysed: a second clip of the same visitor is refused until the first ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._visitors: set[str] = set()

    def start(self, visitor: str) -> bool:
        with self._lock:
            if visitor in self._visitors:
                return False
            self._visitors.add(visitor)
            return True

    def end(self, visitor: str) -> None:
        with self._lock:
            self._visitors.discard(visitor)


RUNNING = ClipsRunning()


def new_session_folder() -> str:
    return tempfile.mkdtemp(prefix="session-", dir=own_folder(_SESSION_BASE))


def remove_session_folder(folder: str | None) -> None:
    """The session's clip outputs, deleted when Gradio lets go of the session (never a folder elsewhere)."""
    if folder and Path(folder).resolve().parent == _SESSION_BASE.resolve():
        shutil.rmtree(folder, ignore_errors=True)


def analyze_clip(upload: Any, model_key: str | None, folder: str | None, visitor: str = "", *,
                 store: ModelStore, caps: VideoCaps | None = None) -> Iterator[VideoView]:
    """Yield the progress while the clip is analysed, then the results. Bad input raises
    ``PosterError`` with one sentence; closing the generator (Cancel) stops the work."""
    caps = caps or VideoCaps.from_env(store.on_gpu)
    if upload is None:
        raise PosterError("upload a video clip first")
    path = uploaded_path(upload)
    size = path.stat().st_size
    if size > caps.max_bytes:
        raise PosterError(f"the clip is {size / 2**20:.3g} MB; this app takes clips up to "
                          f"{caps.max_bytes / 2**20:.3g} MB ({ENV_MAX_MB})")
    info = probe(path)
    if info.duration is not None and info.duration > caps.max_seconds + 0.05:  # a container's rounding
        raise PosterError(f"the clip lasts {info.duration:.0f} s; this app takes clips up to {caps.max_seconds:.3g} s "
                          f"({ENV_MAX_SECONDS}); the command line `python -m poster video` reads any length")
    if model_key is None:
        raise PosterError("no checkpoint is loaded; the note at the top says how to add one")
    if not RUNNING.start(visitor):
        raise PosterError("your previous clip is still being analysed; cancel it or wait for it to finish")
    try:
        folder = folder if folder and Path(folder).is_dir() else new_session_folder()
        for view in _analyze(path, info, model_key, folder, store, caps):
            view.folder = folder
            yield view
    finally:
        RUNNING.end(visitor)


def _analyze(path: Path, info, model_key: str, folder: str, store: ModelStore, caps: VideoCaps) -> Iterator[VideoView]:
    yield VideoView(progress=progress_html("loading", 0, None))
    # The fast format by the precision rule (bfloat16 where native), kept as long as the checkpoint.
    predictor = store.variant(model_key, default_precision(store.device))
    analyzer = VideoAnalyzer(predictor, fps=caps.fps, max_seconds=caps.max_seconds,
                             model_slot=lambda: store.using(model_key))
    analysis, steps = None, analyzer.steps(path)
    try:
        for step in steps:
            if step.analysis is not None:
                analysis = step.analysis
                break
            yield VideoView(progress=progress_html("running", step.frames, step.expected, step.video_time))
    finally:
        steps.close()  # a cancelled clip closes its file here
    yield VideoView(progress=progress_html("writing", analysis.frames_analysed, analysis.frames_analysed))
    out = Path(tempfile.mkdtemp(prefix="clip-", dir=folder))
    csv, parquet = write_table(analysis, out)
    write_summary(analysis, out / "summary.json")
    write_timeline(analysis, out / "timeline.png")
    annotated = write_annotated(analysis, out / "annotated.mp4")
    timeline = timeline_image(analysis)
    files = {"csv": str(csv), "parquet": str(parquet), "mp4": str(annotated), "summary": str(out / "summary.json")}
    result = ClipResult(analysis=analysis, clip=str(path), folder=folder, files=files, model_key=model_key,
                        timeline=timeline)
    yield VideoView(progress=progress_html("done", analysis.frames_analysed, analysis.frames_analysed,
                                           notes=analysis.notes),
                    annotated=str(annotated), timeline=timeline.image, summary=summary_html(summary(analysis)),
                    downloads=[str(csv), str(parquet), str(annotated)], result=result)


def moment_at(result: ClipResult | None, x: float, store: ModelStore) -> MomentView:
    """A click at pixel column ``x`` of the timeline: the analysed frame nearest that moment, its faces drawn."""
    if result is None:
        return MomentView(frame=None, caption="Analyse a clip first, then click its timeline.", faces=None, moment=None)
    time = result.timeline.time_at(x)
    rows = rows_at(result.analysis, time)
    shown_time = float(rows["time"].iloc[0]) if len(rows) else time
    frame = frame_at(result.clip, shown_time)
    names = result.analysis.class_names
    image = draw_frame(frame.image, rows, names) if len(rows) else frame.image
    crops = _crops(frame.image, rows, store)
    labels = [f"face {int(r.track)}: {r.label} {float(r.confidence):.0%}" for r in rows.itertuples()]
    caption = (f"{frame.time:.2f} s: " + ("; ".join(labels) if labels else "no face in this frame"))
    return MomentView(frame=image, caption=caption, faces=gr.update(choices=labels, value=None),
                      moment=Moment(time=frame.time, image=frame.image, rows=rows, crops=crops))


def _crops(image: np.ndarray, rows: pd.DataFrame, store: ModelStore) -> list[FaceCrop]:
    """Each row's face aligned as the analysis aligned it: landmarks from a detection on this frame
    matched by box overlap (the table keeps boxes only); the box alone where none matches."""
    found = store.detector().detect(image).faces if len(rows) else []
    crops = []
    for row in rows.itertuples():
        box = (float(row.x1), float(row.y1), float(row.x2), float(row.y2))
        best = max(found, key=lambda f: iou(f.box, box), default=None)
        if best is not None and iou(best.box, box) > 0.5:
            crops.append(align_face(image, best))
        else:
            crops.append(align_face(image, Face(box, 1.0, np.full((5, 2), np.nan, np.float32))))
    return crops


__all__ = ["VideoCaps", "VideoView", "ClipResult", "Moment", "MomentView", "analyze_clip", "moment_at",
           "new_session_folder", "remove_session_folder", "RUNNING", "ENV_MAX_MB", "ENV_MAX_SECONDS", "ENV_FPS",
           "ENV_JOBS"]

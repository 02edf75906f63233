"""The live webcam: per-visitor face tracks with smoothed probabilities, and the frame handler.

Gradio hands the stream handler only the newest frame each time it is free (frames that arrive
while a frame is being processed replace each other), so a slow CPU drops frames instead of
falling behind. Each face is followed across frames by box overlap (IoU); its probabilities are
an exponential moving average, so labels do not flicker from frame to frame. On a CPU a track is
re-classified every ``classify_every`` frames and only detected in between, which keeps the
boxes moving at the detector's rate.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from poster.faces import VIDEO_MAX_SIDE, align_face

from . import render
from .handlers import active_key, friendly, short_reason
from .state import ModelStore, get_store

FRAME_MAX_SIDE = 640  # frames are processed (and returned) at most this large
IOU_MATCH = 0.3
MAX_MISSED = 3  # frames a track survives without a matching detection
MIN_FPS_FRAMES = 4  # frames measured before a rate is shown


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed across frames."""

    id: int
    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    probabilities: np.ndarray | None = None
    classified_at: int = -(10**9)  # frame number of the last classification
    missed: int = 0


@dataclass
class LiveSession:
    """Per-visitor webcam state (kept in a ``gr.State``)."""

    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0
    frame: int = 0
    times: deque = field(default_factory=lambda: deque(maxlen=12))  # end times of processed frames
    latency_ms: float | None = None
    model_key: str | None = None
    class_names: tuple[str, ...] = ()
    last_frame: np.ndarray | None = None

    @property
    def fps(self) -> float | None:
        """Processed frames per second over the last few frames (None until there are enough)."""
        if len(self.times) < MIN_FPS_FRAMES or self.times[-1] <= self.times[0]:
            return None
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


def match(tracks: Sequence[Track], boxes: Sequence[Sequence[float]], threshold: float = IOU_MATCH) -> dict[int, int]:
    """Greedy one-to-one matching of detections to tracks by IoU: {box index: track index}."""
    pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(tracks) for bi, b in enumerate(boxes)),
                   reverse=True)
    used_t, used_b, out = set(), set(), {}
    for score, ti, bi in pairs:
        if score < threshold:
            break
        if ti in used_t or bi in used_b:
            continue
        used_t.add(ti)
        used_b.add(bi)
        out[bi] = ti
    return out


def update_tracks(session: LiveSession, boxes: Sequence[Sequence[float]], landmarks: Sequence[np.ndarray],
                  probabilities: dict[int, np.ndarray], smoothing: float) -> None:
    """Fold one frame's detections (and the probabilities of those that were classified) into
    the session's tracks. ``smoothing`` in [0, 1): weight of the past in the moving average."""
    matches = match(session.tracks, boxes)
    kept = []
    matched_tracks = set(matches.values())
    for bi, box in enumerate(boxes):
        if bi in matches:
            track = session.tracks[matches[bi]]
        else:
            track = Track(id=session.next_id, box=tuple(box), landmarks=landmarks[bi])
            session.next_id += 1
        track.box, track.landmarks, track.missed = tuple(float(v) for v in box), landmarks[bi], 0
        if bi in probabilities:
            new = probabilities[bi]
            if track.probabilities is None or track.probabilities.shape != new.shape:
                track.probabilities = new.copy()
            else:
                track.probabilities = smoothing * track.probabilities + (1.0 - smoothing) * new
            track.classified_at = session.frame
        kept.append(track)
    for ti, track in enumerate(session.tracks):
        if ti not in matched_tracks:
            track.missed += 1
            if track.missed <= MAX_MISSED:
                kept.append(track)
    session.tracks = sorted(kept, key=lambda t: t.id)


def needs_classification(track_index: int | None, session: LiveSession, classify_every: int) -> bool:
    if track_index is None:
        return True
    track = session.tracks[track_index]
    return track.probabilities is None or session.frame - track.classified_at >= classify_every


def process_frame(frame: np.ndarray, session: LiveSession, model_key: str | None, store: ModelStore,
                  smoothing: float = 0.6, classify_every: int = 1) -> np.ndarray:
    """Detect, (re)classify and track the faces of one frame; returns the annotated frame."""
    frame = render.fit(np.ascontiguousarray(frame[..., :3], dtype=np.uint8), FRAME_MAX_SIDE)
    start = time.perf_counter()
    if model_key != session.model_key:  # checkpoint switched: old probabilities mean other classes
        session.tracks, session.model_key = [], model_key
    predictor, _reason = store.try_predictor(model_key)
    detections = store.detector().detect(frame, max_side=VIDEO_MAX_SIDE).faces
    boxes = [f.box for f in detections]
    landmarks = [f.landmarks for f in detections]
    probabilities: dict[int, np.ndarray] = {}
    if predictor is not None:
        session.class_names = predictor.class_names
        matches = match(session.tracks, boxes)
        todo = [i for i in range(len(detections))
                if needs_classification(matches.get(i), session, classify_every)]
        if todo:
            crops = [align_face(frame, detections[i]).image for i in todo]
            with store.using(model_key):
                probs = predictor.classify(crops)
            probabilities = dict(zip(todo, probs))
    else:
        session.class_names = ()
    update_tracks(session, boxes, landmarks, probabilities, smoothing)
    session.frame += 1
    session.last_frame = frame
    end = time.perf_counter()
    elapsed_ms = 1000 * (end - start)
    session.latency_ms = elapsed_ms if session.latency_ms is None else 0.7 * session.latency_ms + 0.3 * elapsed_ms
    session.times.append(end)
    visible = [t for t in session.tracks if t.missed == 0]
    labels = [_track_label(t, session.class_names) for t in visible]
    return render.annotate(frame, [t.box for t in visible], labels, [t.landmarks for t in visible])


def _track_label(track: Track, class_names: Sequence[str]) -> str:
    if track.probabilities is None or not class_names:
        return "face"
    i = int(np.argmax(track.probabilities))
    return f"{class_names[i]} {track.probabilities[i]:.0%}"


def stats_html(session: LiveSession | None, reason: str = "") -> str:
    if session is None or session.frame == 0:
        return render.notice("Press Record to start the camera. Frames go to the server a few times per second; "
                             "frames that arrive while one is processed are skipped.")
    fps = f"{session.fps:.1f}" if session.fps else "–"
    latency = f"{session.latency_ms:.0f}" if session.latency_ms is not None else "–"
    faces = sum(1 for t in session.tracks if t.missed == 0)
    parts = [f'<span class="poster-stats"><b>{fps}</b> frames/s · <b>{latency}</b> ms per frame · '
             f"{faces} face{'s' if faces != 1 else ''}</span>"]
    if reason:
        parts.append(render.notice(reason, "warn"))
    return "".join(parts)


@friendly("Processing the webcam frame")
def webcam_frame(frame: Any, session: LiveSession | None, model_key: str | None, smoothing: float = 0.6,
                 store: ModelStore | None = None, classify_every: int | None = None):
    """One streamed frame -> (annotated frame, stats line, session)."""
    store = store or get_store()
    session = session if isinstance(session, LiveSession) else LiveSession()
    if frame is None:
        return None, stats_html(session), session
    if classify_every is None:
        classify_every = 1 if store.on_gpu else 2
    smoothing = float(min(max(smoothing, 0.0), 0.95))
    out = process_frame(np.asarray(frame), session, active_key(model_key, store), store, smoothing, classify_every)
    reason = "" if session.class_names else f"Faces are boxed but not classified: {short_reason('')}"
    return out, stats_html(session, reason), session


def reset_session() -> tuple[None, str, LiveSession]:
    return None, stats_html(None), LiveSession()


@friendly("Freezing the frame")
def freeze_frame(session: LiveSession | None, model_key: str | None, store: ModelStore | None = None):
    """The last streamed frame, analyzed like a photo -> (annotated, summary, cards, selector, JSON,
    result, subject)."""
    from .handlers import analyze_photo

    if not isinstance(session, LiveSession) or session.last_frame is None:
        from .handlers import face_selector

        return (None, render.notice("Start the camera first; the latest frame is frozen.", "info"), "",
                face_selector(None), [], None, None)
    return analyze_photo(session.last_frame.copy(), model_key, store=store)


__all__ = ["LiveSession", "Track", "iou", "match", "update_tracks", "process_frame", "webcam_frame",
           "freeze_frame", "stats_html", "reset_session"]

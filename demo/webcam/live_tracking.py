"""Following faces across webcam frames: detection, tracks, smoothing and one frame's result.

The browser sends the next frame when the previous answer arrives, so the rate is whatever the
server manages. Each face is followed across frames by box overlap (IoU) and its probabilities
are an exponential moving average, so labels do not flicker. On a CPU, detection and
classification take turns: one frame finds the faces (and classifies only new ones), the next
classifies the known faces at their last landmarks.
"""
from __future__ import annotations

import base64
import binascii
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from poster.errors import ImageError
from poster.inference.faces import VIDEO_MAX_SIDE, DetectorConfig, Face, FaceDetector, align_face
from poster.inference.images import load_image
from poster.inference.tracking import FULL_DETECTION_EVERY, MAX_MISSED, FaceTracker, Track, iou, match

from . import precision as precisions
from ..serving.limits import MAX_IMAGE_PIXELS
from ..serving.store import ModelStore, missing_checkpoint_message

FRAME_MAX_SIDE = 480  # frames are processed at most this large (the browser sends them this size)
MIN_FACE_SIDE = DetectorConfig.min_face_size  # a smaller frame cannot hold a face the detector finds
MAX_FRAME_CHARS = 4 * 1024 * 1024  # a 480-px JPEG is ~40 k characters of base64
MAX_RECORDED = 20_000  # result rows kept per visitor for the CSV


@dataclass(frozen=True)
class LiveSettings:
    """What the visitor chose for their stream (the page's controls, copied by change events)."""

    model_key: str | None = None
    precision: str = ""
    smoothing: float = 0.6


@dataclass
class LiveSession(FaceTracker):
    """Per-visitor webcam state (kept in a ``gr.State``; ``demo.webcam.live_channel`` files it under ``token``):
    its tracks (``poster.inference.tracking.FaceTracker``) and what the page shows."""

    frames: int = 0
    detected_last: bool = False  # the previous frame ran the detector
    model_key: str | None = None
    precision: str = ""
    class_names: tuple[str, ...] = ()
    last_frame: np.ndarray | None = None
    started: float = field(default_factory=time.time)
    recorded: deque = field(default_factory=lambda: deque(maxlen=MAX_RECORDED))
    settings: LiveSettings = field(default_factory=LiveSettings)
    token: str = ""
    visitor: str = ""


def update_tracks(session: LiveSession, faces: Sequence[Face]) -> list[Track]:
    """Fold one frame's detections into the session's tracks; returns the tracks seen in it."""
    return session.update(faces)


def smooth(track: Track, probabilities: np.ndarray, smoothing: float) -> None:
    """Moving average; ``smoothing`` in [0, 1) is the weight of the past."""
    if track.probabilities is None or track.probabilities.shape != probabilities.shape:
        track.probabilities = probabilities.astype(np.float32).copy()
    else:
        track.probabilities = smoothing * track.probabilities + (1.0 - smoothing) * probabilities


# --- frames in ------------------------------------------------------------------------------

def decode_frame(data: Any) -> np.ndarray:
    """A frame from the browser (a ``data:image/...;base64,`` URL or an array) as RGB uint8.
    Grey, 16-bit, float and 4-channel images are converted as
    photos are; anything else raises ``ImageError``. Never opens a path."""
    if isinstance(data, np.ndarray):
        image = load_image(data, max_pixels=MAX_IMAGE_PIXELS)
    elif isinstance(data, str):
        if len(data) > MAX_FRAME_CHARS:
            raise ImageError(f"the frame is {len(data) / 2**20:.1f} MB of text; frames up to "
                             f"{MAX_FRAME_CHARS / 2**20:.0f} MB are accepted")
        header, comma, body = data.partition(",")
        if not comma or not header.startswith("data:image/") or not header.endswith(";base64"):
            raise ImageError("the frame is not an image: expected a data:image/...;base64 URL")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("the frame is not an image: its base64 data is damaged") from None
        image = load_image(raw, max_pixels=MAX_IMAGE_PIXELS)
    else:
        raise ImageError(f"the frame is not an image ({type(data).__name__}); the camera sends JPEG data URLs")
    return image


def too_small(image: np.ndarray) -> str:
    """The message for a frame too small to hold a face the detector can find ('' if it is not)."""
    height, width = image.shape[:2]
    detect_scale = min(1.0, VIDEO_MAX_SIDE / max(height, width))
    # The detector's pyramid needs 12 pixels on the short side of its (downscaled) copy.
    if min(height, width) < MIN_FACE_SIDE or min(height, width) * detect_scale < 12:
        return f"no face found (the image is {width} x {height} pixels; faces need at least {MIN_FACE_SIDE})"
    return ""


# --- one frame ------------------------------------------------------------------------------

def process_frame(frame: np.ndarray, session: LiveSession, model_key: str | None, precision: str,
                  store: ModelStore, smoothing: float = 0.6, alternate: bool | None = None) -> dict:
    """Detect or classify the faces of one RGB frame; returns the result to draw (JSON-ready)."""
    start = time.perf_counter()
    precision = precisions.checked(precision, store.on_gpu)
    if model_key != session.model_key or precision != session.precision:
        session.tracks, session.model_key, session.precision = [], model_key, precision
    alternate = (not store.on_gpu) if alternate is None else alternate
    predictor, reason = precisions.live_predictor(store, model_key, precision)
    session.class_names = tuple(predictor.class_names) if predictor is not None else ()
    live = [t for t in session.tracks if t.missed == 0]
    classify_only = (alternate and predictor is not None and session.detected_last and live
                     and all(t.probabilities is not None for t in live))
    if classify_only:
        todo = live  # same faces as the last detection, re-read at their last landmarks
        session.detected_last = False
    else:
        live = update_tracks(session, detect(frame, session, store.detector()))
        todo = [t for t in live if t.probabilities is None or not alternate]
        session.detected_last = True
    if predictor is not None and todo:
        crops = [align_face(frame, Face(t.box, 1.0, t.landmarks)).image for t in todo]
        with store.using(model_key):
            probabilities = predictor.batched_classify(crops)  # with other streams' faces
        for track, probs in zip(todo, probabilities):
            smooth(track, probs, smoothing)
    session.frames += 1
    session.last_frame = frame
    result = {
        "status": "ok", "width": frame.shape[1], "height": frame.shape[0],
        "faces": [_face_json(t, session.class_names) for t in live],
        "classes": list(session.class_names), "precision": precision,
        "engine": predictor.engine if predictor is not None else "",
        "step": "classify" if classify_only else "detect",
        "message": "" if predictor is not None else f"Faces are boxed but not classified: {_why(reason)}",
    }
    result["server_ms"] = round(1000 * (time.perf_counter() - start), 1)
    _record(session, result)
    return result


def detect(frame: np.ndarray, session: LiveSession, detector: FaceDetector) -> list[Face]:
    """The faces of a frame, full-frame every ``FULL_DETECTION_EVERY``-th time, otherwise near known faces."""
    return session.detect(frame, detector, full_every=FULL_DETECTION_EVERY)


def _face_json(track: Track, class_names: Sequence[str]) -> dict:
    face: dict[str, Any] = {"track": track.id, "box": [round(v, 1) for v in track.box]}
    if track.probabilities is not None and class_names:
        top = int(np.argmax(track.probabilities))
        face.update(label=class_names[top], p=[round(float(p), 4) for p in track.probabilities])
    else:
        face.update(label="face", p=None)
    return face


def _why(reason: str) -> str:
    if not reason or reason == missing_checkpoint_message():
        return "no checkpoint is loaded (the note at the top says how to add one)."
    return reason


def _record(session: LiveSession, result: dict) -> None:
    now = time.time()
    for face in result["faces"]:
        session.recorded.append((now, face["track"], tuple(face["box"]), face["label"],
                                 tuple(face["p"]) if face["p"] else (), tuple(result["classes"])))


__all__ = ["LiveSession", "LiveSettings", "Track", "iou", "match", "update_tracks", "smooth", "decode_frame", "too_small",
           "process_frame", "detect", "FRAME_MAX_SIDE", "MAX_FRAME_CHARS", "MAX_MISSED", "FULL_DETECTION_EVERY"]

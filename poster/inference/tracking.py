"""Following faces across the frames of a video or a webcam stream.

Each face is followed by box overlap (IoU) with greedy one-to-one matching; a track survives a
few detections without a match (a blink of the detector, a hand in front of the face) and then
ends, so a face that leaves and comes back later starts a new track. Between full-frame
detections, known faces are looked for only in a small square around their last box, which
costs a few milliseconds instead of tens; when one is not found there, the whole frame is
searched. The webcam (``demo.live_tracking``) and video files (``poster.video``) share this code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .faces import VIDEO_MAX_SIDE, DetectorConfig, Face, FaceDetector

IOU_MATCH = 0.3
FULL_DETECTION_EVERY = 5  # detections between full-frame ones; the others look near known faces only
NEAR_SIDE = 2.0  # a known face is looked for in a square this many times its box's longer side
NEAR_MAX_SIDE = 160  # ... detected on a copy at most this large: the face is then still 80 px wide
MAX_MISSED = 3  # detections a track survives without a match


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
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
    missed: int = 0


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


@dataclass
class FaceTracker:
    """The tracks of one stream and the counters that number them; ``update`` folds in detections."""

    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0
    detections: int = 0
    max_missed: int = MAX_MISSED

    def update(self, faces: Sequence[Face]) -> list[Track]:
        """Fold one frame's detections into the tracks; returns the tracks seen in it (in ``faces`` order)."""
        matches = match(self.tracks, [f.box for f in faces])
        seen, kept = [], []
        for bi, face in enumerate(faces):
            if bi in matches:
                track = self.tracks[matches[bi]]
            else:
                track = Track(id=self.next_id, box=face.box, landmarks=face.landmarks)
                self.next_id += 1
            track.box, track.landmarks, track.missed = tuple(float(v) for v in face.box), face.landmarks, 0
            seen.append(track)
        matched = set(matches.values())
        for ti, track in enumerate(self.tracks):
            if ti not in matched:
                track.missed += 1
                if track.missed <= self.max_missed:
                    kept.append(track)
        self.tracks = sorted(seen + kept, key=lambda t: t.id)
        return seen

    def detect(self, frame: np.ndarray, detector: FaceDetector, full_every: int = FULL_DETECTION_EVERY,
               max_side: int = VIDEO_MAX_SIDE) -> list[Face]:
        """The faces of a frame: every ``full_every``-th call searches the whole frame (downscaled to
        ``max_side``), the others only near the known faces, unless one of those is not found there."""
        turn = self.detections % max(1, full_every)
        self.detections += 1
        known = [t for t in self.tracks if t.missed == 0]
        if known and turn:
            found: list[Face] = []
            for track in known:
                for face in detect_near(frame, track.box, detector):
                    if all(iou(face.box, f.box) < 0.5 for f in found):  # neighbours' squares overlap
                        found.append(face)
            if len(found) >= len(known):
                return found
        return detector.detect(frame, max_side=max_side).faces

    def reset(self) -> None:
        """Forget every track (a new stream, another model); ids keep counting up."""
        self.tracks = []


def detect_near(frame: np.ndarray, box: Sequence[float], detector: FaceDetector) -> list[Face]:
    """Faces in a square around ``box`` (``NEAR_SIDE`` times its longer side), in frame pixels."""
    height, width = frame.shape[:2]
    half = NEAR_SIDE * max(box[2] - box[0], box[3] - box[1]) / 2
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(width, int(cx + half) + 1), min(height, int(cy + half) + 1)
    if min(x1 - x0, y1 - y0) < DetectorConfig.min_face_size:
        return []
    shift = np.array([x0, y0], np.float32)
    near = detector.detect(np.ascontiguousarray(frame[y0:y1, x0:x1]), max_side=NEAR_MAX_SIDE).faces
    return [Face(box=(f.box[0] + x0, f.box[1] + y0, f.box[2] + x0, f.box[3] + y0), score=f.score,
                 landmarks=f.landmarks + shift) for f in near]


__all__ = ["FaceTracker", "Track", "iou", "match", "detect_near", "IOU_MATCH", "MAX_MISSED", "FULL_DETECTION_EVERY"]

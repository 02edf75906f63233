"""Face detection (MTCNN) and alignment of each face onto a fixed 224x224 template.

Coordinates are in pixels with pixel centres on integers (numpy's ``image[y, x]`` convention).
A ``FaceCrop`` remembers the affine map from the photo to the crop, so anything computed on
the crop (points, heat maps) can be put back onto the photo.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils.detect_face import detect_face
from PIL import Image

from ..errors import ImageError

# ArcFace's 5-point template for 112x112 crops: left eye, right eye, nose, mouth left, mouth right.
ARCFACE_TEMPLATE = np.array([
    [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
    [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
# Where the eye line sits in our crop. ArcFace puts it at 46 % and cuts the forehead; RAF-DB's
# aligned faces and AffectNet's face boxes show forehead to chin with the eyes near 38-40 %.
EYE_LINE = 0.38
DEFAULT_MARGIN = 0.1
# Live frames are detected on a copy at most this large: webcam faces are near the camera, and a
# 640x480 frame costs about a third less detection time with the minimum face size unchanged.
VIDEO_MAX_SIDE = 320
# The fallback square crop is this many times the detector box's longer side; chosen so that
# it frames a face about like the aligned crop does (measured on the test photos).
FALLBACK_SCALE = 1.3


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of ``FaceDetector``; the defaults keep a 640x480 frame near 30 ms on 2 CPU cores."""

    min_face_size: int = 40  # pixels of the original image; 20 is ~8x slower on webcam frames
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN's P/R/O-net stage thresholds
    min_score: float = 0.9  # final face probability to keep a detection
    max_faces: int = 20  # keep this many of the largest faces
    factor: float = 0.709  # image pyramid step
    max_side: int = 1280  # larger images are detected on a downscaled copy
    device: str = "cpu"


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face: box (x1, y1, x2, y2), probability and 5 landmarks, in photo pixels."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray  # (5, 2) float32: left eye, right eye, nose, mouth left, mouth right

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True)
class Detections:
    """Faces sorted largest first; ``dropped`` counts faces left out by ``max_faces``."""

    faces: list[Face] = field(default_factory=list)
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self) -> Iterator[Face]:
        return iter(self.faces)


@dataclass(frozen=True, eq=False)
class FaceCrop:
    """A face warped to ``image`` (size x size x 3 uint8) by ``matrix`` (photo -> crop pixels)."""

    image: np.ndarray
    matrix: np.ndarray  # (2, 3) float64
    aligned: bool  # False: the square fallback crop around the box was used

    @property
    def size(self) -> int:
        return self.image.shape[0]

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Photo coordinates (N, 2) -> crop coordinates."""
        return _apply(self.matrix, points)

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """Crop coordinates (N, 2) -> photo coordinates."""
        return _apply(_invert(self.matrix), points)

    def warp_to_photo(self, map2d: np.ndarray, photo_shape: Sequence[int],
                      fill: float = 0.0) -> np.ndarray:
        """Resample a 2-D map covering the crop (any resolution) onto the photo's (H, W) grid.

        The map is first upsampled bilinearly to the crop size; photo pixels outside the crop
        get ``fill`` (pass ``float('nan')`` to mark them).
        """
        values = np.asarray(map2d, dtype=np.float32)
        if values.ndim != 2 or values.size == 0:
            raise ValueError(f"map2d must be a non-empty 2-D array, got shape {values.shape}")
        height, width = int(photo_shape[0]), int(photo_shape[1])
        layer = Image.fromarray(np.ascontiguousarray(values))  # float32 -> mode "F"
        if layer.size != (self.size, self.size):
            layer = layer.resize((self.size, self.size), Image.Resampling.BILINEAR)
        # PIL wants the map from output (photo) to input (crop) pixels: that is self.matrix.
        out = layer.transform((width, height), Image.Transform.AFFINE, _pil_coefficients(self.matrix),
                              resample=Image.Resampling.BILINEAR, fillcolor=float(fill))
        return np.asarray(out, dtype=np.float32).copy()


class FaceDetector:
    """MTCNN built once; ``detect`` is safe to call repeatedly (no gradients, no state)."""

    def __init__(self, config: Optional[DetectorConfig] = None) -> None:
        self.config = config or DetectorConfig()
        self._mtcnn = MTCNN(min_face_size=self.config.min_face_size,
                            thresholds=list(self.config.thresholds), factor=self.config.factor,
                            keep_all=True, device=self.config.device).eval()
        if torch.device(self.config.device).type == "cpu":
            # Channels-last weights make the three nets' convolutions and max-pools run channels-last
            # too: about a fifth less detection time on a CPU, same boxes to float rounding.
            self._mtcnn.to(memory_format=torch.channels_last)

    def detect(self, image: np.ndarray, max_side: int | None = None) -> Detections:
        """Find faces in an HxWx3 uint8 RGB image; an image without faces gives no faces.

        ``max_side`` overrides the config's for this call (live video uses ``VIDEO_MAX_SIDE``).
        An image narrower or lower than ``min_face_size`` cannot hold a face MTCNN finds (its
        image pyramid would be empty): it gives no faces.
        """
        _check_rgb(image)
        cfg = self.config
        height, width = image.shape[:2]
        if too_small_for_faces(image, cfg.min_face_size):
            return Detections()
        scale = min(1.0, (max_side or cfg.max_side) / max(height, width))
        small = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        min_size = max(12.0, cfg.min_face_size * scale)
        if min(small.shape[:2]) < min_size:  # a long thin image, downscaled below one face
            return Detections()
        boxes, points = self._run_mtcnn(small, min_size)
        if scale < 1.0:
            sx, sy = width / small.shape[1], height / small.shape[0]
            # Pixel centres: index i in the small image is at (i + 0.5) * s - 0.5 in the photo.
            boxes[:, [0, 2]] = (boxes[:, [0, 2]] + 0.5) * sx - 0.5
            boxes[:, [1, 3]] = (boxes[:, [1, 3]] + 0.5) * sy - 0.5
            points[:, :, 0] = (points[:, :, 0] + 0.5) * sx - 0.5
            points[:, :, 1] = (points[:, :, 1] + 0.5) * sy - 0.5
        faces = [Face(box=tuple(float(v) for v in row[:4]), score=float(row[4]),
                      landmarks=pts.astype(np.float32))
                 for row, pts in zip(boxes, points) if row[4] >= cfg.min_score]
        faces.sort(key=lambda face: face.area, reverse=True)
        kept = faces[: max(0, cfg.max_faces)]
        return Detections(faces=kept, dropped=len(faces) - len(kept))

    def _run_mtcnn(self, image: np.ndarray, min_size: float) -> tuple[np.ndarray, np.ndarray]:
        """(N, 5) boxes with score and (N, 5, 2) landmarks, straight from MTCNN's three stages."""
        m = self._mtcnn
        with torch.inference_mode():
            # detect_face, not MTCNN.detect: the latter packs results into ragged object arrays.
            batch_boxes, batch_points = detect_face(
                torch.from_numpy(np.require(image, np.uint8, ["C", "W"])), min_size, m.pnet, m.rnet, m.onet,
                list(self.config.thresholds), self.config.factor, m.device)
        boxes = np.asarray(batch_boxes[0], dtype=np.float64).reshape(-1, 5)
        points = np.asarray(batch_points[0], dtype=np.float64).reshape(-1, 5, 2)
        return boxes, points


def too_small_for_faces(image: np.ndarray, min_face_size: int = DetectorConfig.min_face_size) -> str:
    """Why ``image`` cannot hold a detectable face ("" when it can): a side under ``min_face_size``."""
    height, width = image.shape[:2]
    if min(height, width) >= min_face_size:
        return ""
    return f"no face found (the image is {width} x {height} pixels; faces need at least {min_face_size})"


def align_face(image: np.ndarray, face: Face, size: int = 224,
               margin: float = DEFAULT_MARGIN) -> FaceCrop:
    """Warp ``face`` upright onto the template: eyes level at 38 % height, forehead to chin.

    ``margin`` widens the crop around ArcFace's tight 112-px template (0.1 = 10 % wider).
    Landmarks that cannot define a rotation (NaN, coincident) fall back to a square box crop.
    """
    _check_rgb(image)
    matrix = _landmark_matrix(face.landmarks, size, margin)
    aligned = matrix is not None
    if matrix is None:
        matrix = _box_matrix(face.box, size, margin)
    return FaceCrop(image=_warp(image, matrix, size), matrix=matrix, aligned=aligned)


def crop_faces(image: np.ndarray, detections: Detections | Sequence[Face], size: int = 224,
               margin: float = DEFAULT_MARGIN) -> list[FaceCrop]:
    """``align_face`` for every detected face, in the same order."""
    return [align_face(image, face, size=size, margin=margin) for face in detections]


def template(size: int = 224, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The 5 target landmark positions (5, 2) in a ``size`` x ``size`` crop."""
    scale = size / (112.0 * (1.0 + margin))
    eye_y = ARCFACE_TEMPLATE[:2, 1].mean()
    out = np.empty_like(ARCFACE_TEMPLATE)
    out[:, 0] = (ARCFACE_TEMPLATE[:, 0] - 56.0) * scale + (size - 1) / 2.0
    out[:, 1] = (ARCFACE_TEMPLATE[:, 1] - eye_y) * scale + EYE_LINE * size
    return out


def _landmark_matrix(landmarks: np.ndarray, size: int, margin: float) -> Optional[np.ndarray]:
    """Least-squares similarity (rotation, uniform scale, shift) landmarks -> template, or None."""
    src = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if src.shape != (5, 2) or not np.isfinite(src).all():
        return None
    eye_distance = float(np.hypot(*(src[1] - src[0])))
    if eye_distance < 1.0 or src.std(axis=0).min() < 0.5:
        return None  # coincident or collinear points give no usable rotation
    dst = template(size, margin)
    # Unknowns (a, b, tx, ty) of x' = a x - b y + tx, y' = b x + a y + ty: linear, so lstsq.
    rows = np.zeros((10, 4))
    rows[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)])
    rows[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(5), np.ones(5)])
    try:
        (a, b, tx, ty), *_ = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)
    except np.linalg.LinAlgError:
        return None
    scale = float(np.hypot(a, b))
    if not np.isfinite(scale) or scale < 1e-6:
        return None
    return np.array([[a, -b, tx], [b, a, ty]], dtype=np.float64)


def _box_matrix(box: Sequence[float], size: int, margin: float) -> np.ndarray:
    """Square crop centred on the box, ``FALLBACK_SCALE`` (scaled like ``margin``) its side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * FALLBACK_SCALE * (1.0 + margin) / (1.0 + DEFAULT_MARGIN)
    scale = size / side
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    centre = (size - 1) / 2.0
    return np.array([[scale, 0.0, centre - scale * cx], [0.0, scale, centre - scale * cy]])


def _warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Bilinear warp of the photo into a size x size crop; outside the photo is black."""
    out = Image.fromarray(image).transform((size, size), Image.Transform.AFFINE,
                                           _pil_coefficients(_invert(matrix)),
                                           resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    return np.asarray(out).copy()


def _pil_coefficients(matrix: np.ndarray) -> tuple[float, ...]:
    """Our (2, 3) map in pixel-centre coordinates -> PIL's, where pixel i spans [i, i+1)."""
    linear, shift = matrix[:, :2], matrix[:, 2]
    # p_idx = p_pil - 0.5, so out_pil = A (in_pil - 0.5) + t + 0.5.
    shift = shift + 0.5 - linear @ np.array([0.5, 0.5])
    return tuple(float(v) for v in np.column_stack([linear, shift]).reshape(-1))


def _invert(matrix: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(matrix[:, :2])
    return np.column_stack([linear, -linear @ matrix[:, 2]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def _check_rgb(image: np.ndarray) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.size > 0):
        described = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ImageError(f"expected an HxWx3 uint8 RGB image (use load_image), got {described}")

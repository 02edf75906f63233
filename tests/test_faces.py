"""Face detection on real photos, alignment geometry and mapping crop results back to the photo."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from poster.errors import ImageError
from poster.inference.faces import (VIDEO_MAX_SIDE, DetectorConfig, Face, FaceCrop, FaceDetector, align_face,
                          crop_faces, template)

ASTRONAUT_BOX = (181, 62, 268, 172)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def eye_angle(points: np.ndarray) -> float:
    dx, dy = points[1] - points[0]
    return math.degrees(math.atan2(dy, dx))


@pytest.fixture(scope="module")
def two_faces(astronaut: np.ndarray, grace_hopper: np.ndarray) -> np.ndarray:
    """Astronaut (small face) on the left, Grace Hopper (larger face) on the right."""
    canvas = np.full((600, 1024, 3), 128, np.uint8)
    canvas[:512, :512] = astronaut
    canvas[:, 512:] = grace_hopper
    return canvas


@pytest.fixture(scope="module")
def astronaut_face(face_detector: FaceDetector, astronaut: np.ndarray) -> Face:
    return face_detector.detect(astronaut).faces[0]


# --- detection --------------------------------------------------------------------------------

def test_astronaut_one_face(face_detector: FaceDetector, astronaut: np.ndarray) -> None:
    detections = face_detector.detect(astronaut)
    assert len(detections) == 1 and detections.dropped == 0
    face = detections.faces[0]
    assert iou(face.box, ASTRONAUT_BOX) >= 0.7
    assert face.score >= 0.99
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0]  # image-left eye first
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    x1, y1, x2, y2 = face.box
    assert ((face.landmarks >= (x1, y1)) & (face.landmarks <= (x2, y2))).all()


def test_grace_hopper_one_face(face_detector: FaceDetector, grace_hopper: np.ndarray) -> None:
    detections = face_detector.detect(grace_hopper)
    assert len(detections) == 1
    x1, y1, x2, y2 = detections.faces[0].box
    assert 150 < x1 < x2 < 370 and 90 < y1 < y2 < 360


def test_two_faces_sorted_largest_first(face_detector: FaceDetector, two_faces: np.ndarray) -> None:
    detections = face_detector.detect(two_faces)
    assert len(detections) == 2 and detections.dropped == 0
    big, small = detections.faces
    assert big.area > small.area
    assert big.box[0] > 512  # Grace Hopper's face is the larger one
    assert iou(small.box, ASTRONAUT_BOX) >= 0.7


def test_max_faces_reports_dropped(two_faces: np.ndarray) -> None:
    detections = FaceDetector(DetectorConfig(max_faces=1)).detect(two_faces)
    assert len(detections.faces) == 1 and detections.dropped == 1
    assert detections.faces[0].box[0] > 512


def test_blank_image_has_no_faces(face_detector: FaceDetector) -> None:
    detections = face_detector.detect(np.full((480, 640, 3), 128, np.uint8))
    assert detections.faces == [] and detections.dropped == 0


def test_large_image_detected_on_downscaled_copy(face_detector: FaceDetector,
                                                 astronaut: np.ndarray) -> None:
    big = np.asarray(Image.fromarray(astronaut).resize((1536, 1536), Image.Resampling.BILINEAR))
    detections = face_detector.detect(big)  # longest side 1536 > max_side 1280
    assert len(detections) == 1
    assert iou(detections.faces[0].box, [3 * v for v in ASTRONAUT_BOX]) >= 0.7


def test_video_detection_finds_the_same_faces(face_detector: FaceDetector, two_faces: np.ndarray,
                                              astronaut_face: Face, astronaut: np.ndarray) -> None:
    full = face_detector.detect(two_faces).faces
    small = face_detector.detect(two_faces, max_side=VIDEO_MAX_SIDE).faces
    assert len(small) == len(full) == 2
    for a, b in zip(full, small):
        assert iou(a.box, b.box) >= 0.8
    # Landmarks come back in full-frame pixels: the astronaut's eyes within a few pixels.
    video = face_detector.detect(astronaut, max_side=VIDEO_MAX_SIDE).faces[0]
    assert np.abs(video.landmarks[:2] - astronaut_face.landmarks[:2]).max() < 6


def test_detect_rejects_non_rgb(face_detector: FaceDetector) -> None:
    with pytest.raises(ImageError, match="HxWx3 uint8"):
        face_detector.detect(np.zeros((10, 10), np.uint8))


# --- alignment --------------------------------------------------------------------------------

def test_aligned_crop_matches_template(astronaut: np.ndarray, astronaut_face: Face) -> None:
    crop = align_face(astronaut, astronaut_face)
    assert crop.aligned
    assert crop.image.shape == (224, 224, 3) and crop.image.dtype == np.uint8
    assert crop.matrix.shape == (2, 3) and crop.matrix.dtype == np.float64
    landmarks = crop.to_crop(astronaut_face.landmarks)
    assert np.abs(landmarks - template(224)).max() < 12
    eye_line = landmarks[:2, 1].mean() / 224
    assert 0.35 <= eye_line <= 0.42
    # The crop holds real face pixels, not fill: the photo around the nose is bright skin.
    assert crop.image[100:140, 90:130].mean() > 120


def test_rotated_face_is_levelled(face_detector: FaceDetector, astronaut: np.ndarray) -> None:
    rotated = np.asarray(Image.fromarray(astronaut).rotate(25, expand=True))
    face = face_detector.detect(rotated).faces[0]
    assert abs(eye_angle(face.landmarks)) > 15  # really tilted in the photo
    crop = align_face(rotated, face)
    assert crop.aligned
    assert abs(eye_angle(crop.to_crop(face.landmarks))) < 3
    # Independent check: detect again on the crop itself.
    again = face_detector.detect(crop.image).faces[0]
    assert abs(eye_angle(again.landmarks)) < 3


def test_to_photo_round_trip(astronaut: np.ndarray, astronaut_face: Face) -> None:
    crop = align_face(astronaut, astronaut_face)
    back = crop.to_photo(crop.to_crop(astronaut_face.landmarks))
    np.testing.assert_allclose(back, astronaut_face.landmarks, atol=1e-3)


@pytest.mark.parametrize("resolution", [7, 28, 224])
def test_warp_constant_map(astronaut: np.ndarray, astronaut_face: Face, resolution: int) -> None:
    crop = align_face(astronaut, astronaut_face)
    out = crop.warp_to_photo(np.full((resolution, resolution), 3.0), astronaut.shape[:2], fill=-1.0)
    assert out.shape == (512, 512) and out.dtype == np.float32
    x1, y1, x2, y2 = (int(round(v)) for v in astronaut_face.box)
    np.testing.assert_allclose(out[y1:y2, x1:x2], 3.0, atol=1e-5)
    assert out[0, 0] == -1.0 and out[-1, -1] == -1.0 and out[500, 20] == -1.0
    nan_out = crop.warp_to_photo(np.ones((7, 7)), astronaut.shape[:2], fill=float("nan"))
    assert np.isnan(nan_out[0, 0]) and nan_out[y1:y2, x1:x2].min() == 1.0


def test_warp_keeps_orientation(astronaut: np.ndarray, astronaut_face: Face) -> None:
    crop = align_face(astronaut, astronaut_face)
    left_half = np.zeros((28, 28))
    left_half[:, :14] = 1.0  # the crop's left half: the image-left eye's side
    out = crop.warp_to_photo(left_half, astronaut.shape[:2])
    (lx, ly), (rx, ry) = np.round(astronaut_face.landmarks[:2]).astype(int)
    assert out[ly, lx] == pytest.approx(1.0) and out[ry, rx] == pytest.approx(0.0)


def test_fallback_square_crop_for_degenerate_landmarks(astronaut: np.ndarray,
                                                       astronaut_face: Face) -> None:
    for landmarks in (np.full((5, 2), np.nan, np.float32), np.full((5, 2), 200.0, np.float32)):
        face = Face(box=astronaut_face.box, score=1.0, landmarks=landmarks)
        crop = align_face(astronaut, face)
        assert not crop.aligned and crop.image.shape == (224, 224, 3)
        x1, y1, x2, y2 = face.box
        centre = crop.to_crop(np.array([[(x1 + x2) / 2, (y1 + y2) / 2]]))[0]
        np.testing.assert_allclose(centre, [111.5, 111.5], atol=1e-6)
        assert crop.matrix[0, 1] == 0.0 and crop.matrix[0, 0] == crop.matrix[1, 1]  # no rotation


def test_fallback_outside_photo_is_black(astronaut: np.ndarray) -> None:
    face = Face(box=(0.0, 0.0, 60.0, 60.0), score=1.0, landmarks=np.zeros((5, 2), np.float32))
    crop = align_face(astronaut, face)
    assert not crop.aligned
    assert (crop.image[:20, :20] == 0).all()  # above-left of the photo corner
    assert crop.image[150:, 150:].mean() > 20  # inside the photo


def test_crop_faces_keeps_order(face_detector: FaceDetector, two_faces: np.ndarray) -> None:
    detections = face_detector.detect(two_faces)
    crops = crop_faces(two_faces, detections)
    assert len(crops) == 2 and all(crop.aligned for crop in crops)
    for face, crop in zip(detections.faces, crops):
        assert np.abs(crop.to_crop(face.landmarks) - template(224)).max() < 15


def test_warp_uses_pixel_centre_coordinates() -> None:
    # Photo -> crop is "double and shift by 3": photo pixel x sits at crop x' = 2x + 3, so a map
    # whose value is its own crop column must come back as exactly 2x + 3 (no half-pixel drift).
    matrix = np.array([[2.0, 0.0, 3.0], [0.0, 2.0, 3.0]])
    crop = FaceCrop(image=np.zeros((224, 224, 3), np.uint8), matrix=matrix, aligned=False)
    columns = np.tile(np.arange(224, dtype=np.float32), (224, 1))
    out = crop.warp_to_photo(columns, (100, 100), fill=-1.0)
    np.testing.assert_allclose(out[50, 10:100], 2 * np.arange(10, 100) + 3, atol=1e-3)
    assert out[50, 5] == 13.0

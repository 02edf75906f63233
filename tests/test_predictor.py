"""Predictor and the `predict` command on real photos (deterministic weights: nothing trained here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poster import ImageError
from poster.inference.predictor import FaceList, Predictor

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictor(deterministic_model, face_detector) -> Predictor:
    return Predictor(deterministic_model, face_detector)


@pytest.fixture(scope="module")
def two_faces(astronaut, grace_hopper) -> np.ndarray:
    canvas = np.full((600, 1024, 3), 255, np.uint8)
    canvas[:512, :512] = astronaut
    canvas[:, 512:] = grace_hopper
    return canvas


def test_one_face_with_probabilities(predictor, astronaut):
    faces = predictor.predict(astronaut)
    assert isinstance(faces, FaceList) and len(faces) == 1 and faces.dropped == 0
    face = faces[0]
    assert face.class_names == ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
    assert face.probabilities.shape == (7,) and abs(face.probabilities.sum() - 1) < 1e-5
    assert face.label == face.class_names[int(np.argmax(face.probabilities))]
    assert face.crop.image.shape == (224, 224, 3) and face.crop.aligned
    assert face.landmarks.shape == (5, 2)
    x1, y1, x2, y2 = face.box
    assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 200
    summary = face.to_dict()
    assert set(summary["probabilities"]) == set(face.class_names)
    json.dumps(summary)


def test_probabilities_equal_the_network_on_the_crop(predictor, deterministic_model, astronaut):
    import torch

    from poster.inference.transforms import to_batch

    face = predictor.predict(astronaut)[0]
    with torch.inference_mode():
        logits = deterministic_model(to_batch([face.crop.image]))
    np.testing.assert_allclose(face.probabilities, torch.softmax(logits, 1)[0].numpy(), atol=1e-6)


def test_batch_equals_one_by_one(predictor, astronaut, two_faces):
    images = [astronaut, two_faces]  # one face, then two (the second is Grace Hopper's photo)
    batched = predictor.predict_batch(images)
    assert [len(r) for r in batched] == [1, 2]
    for image, together in zip(images, batched):
        alone = predictor.predict(image)
        for a, b in zip(alone, together):
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
            assert a.box == b.box


def test_inputs_of_every_kind_agree(predictor, astronaut, photo_path):
    reference = predictor.predict(photo_path)[0].probabilities
    for source in (str(photo_path), photo_path.read_bytes(), Image.open(photo_path),
                   np.asarray(Image.open(photo_path))[:, :, ::-1].copy()):
        bgr = isinstance(source, np.ndarray)
        np.testing.assert_allclose(predictor.predict(source, bgr=bgr)[0].probabilities, reference, atol=1e-5)


def test_no_face_is_an_empty_list_not_an_error(predictor):
    faces = predictor.predict(np.full((240, 320, 3), 128, np.uint8))
    assert faces == [] and faces.dropped == 0


@pytest.mark.parametrize("content, word", [
    (b"", "empty"), (b"just some text", "not an image"), ("half", "truncated"),
])
def test_bad_input_raises_image_error(predictor, photo_path, tmp_path, content, word):
    if content == "half":
        data = photo_path.read_bytes()
        content = data[: len(data) // 2]
    path = tmp_path / "upload.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=word):
        predictor.predict(path)


def test_pixel_cap(deterministic_model, face_detector, astronaut):
    small_cap = Predictor(deterministic_model, face_detector, max_pixels=100_000)
    with pytest.raises(ImageError, match="too large"):
        small_cap.predict(astronaut)


def test_flip_tta_averages_face_and_mirror(deterministic_model, face_detector, astronaut):
    plain = Predictor(deterministic_model, face_detector).predict(astronaut)[0]
    tta = Predictor(deterministic_model, face_detector, tta_flip=True).predict(astronaut)[0]
    mirrored = Predictor(deterministic_model, face_detector).classify([plain.crop.image[:, ::-1].copy()])[0]
    assert not np.allclose(plain.probabilities, tta.probabilities)
    import torch

    logits = [np.log(p) for p in (plain.probabilities, mirrored)]  # log-softmax differs from logits by a constant
    expected = torch.softmax(torch.tensor((logits[0] + logits[1]) / 2), 0).numpy()
    np.testing.assert_allclose(tta.probabilities, expected, atol=1e-5)


def _run(*args: str, env_dir: Path | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    env.pop("POSTER_HUB_REPO", None)
    env.pop("POSTER_CHECKPOINT", None)
    env["PYTHONPATH"] = str(ROOT)
    if env_dir is not None:
        env["POSTER_CHECKPOINT_DIR"] = str(env_dir)
    return subprocess.run([sys.executable, "-m", "poster", "predict", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


@pytest.mark.slow  # `python -m poster predict` in a process of its own
def test_predict_command_json_and_annotations(deterministic_checkpoint, photo_path, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    out = tmp_path / "annotated"
    result = _run(str(photo_path), str(bad), "--json", "--annotate", str(out), env_dir=deterministic_checkpoint.parent)
    assert result.returncode == 1, result.stderr  # one file failed, the other still processed
    doc = json.loads(result.stdout)
    assert doc["classes"][0] == "Surprise"
    good, failed = doc["images"]
    assert len(good["faces"]) == 1 and abs(sum(good["faces"][0]["probabilities"].values()) - 1) < 1e-3
    assert "not an image" in failed["error"]
    annotated = np.asarray(Image.open(good["annotated"]))
    assert annotated.shape == (512, 512, 3)


@pytest.mark.slow  # `python -m poster predict` in a process of its own
def test_predict_command_table(deterministic_checkpoint, photo_path):
    result = _run(str(photo_path), "--checkpoint", str(deterministic_checkpoint))
    assert result.returncode == 0, result.stderr
    assert "1 face(s)" in result.stdout and "Happiness" in result.stdout


@pytest.mark.slow  # `python -m poster predict` in a process of its own
def test_predict_command_without_checkpoint_says_what_is_missing(photo_path, tmp_path):
    result = _run(str(photo_path), env_dir=tmp_path / "empty", cwd=tmp_path)
    assert result.returncode == 1
    assert "no RAF-DB weights found" in result.stderr and "python -m poster download raf-db" in result.stderr
    assert "Traceback" not in result.stderr

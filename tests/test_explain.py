"""Explanations: attention maps against the reference, Grad-CAM sanity checks, rendering, warping.

A float64 model with the deterministic weights runs the reference batch once (float64 convolutions are slow on CPU); a
float32 copy explains real faces (the astronaut and Grace Hopper, cropped by ``poster.inference.faces``).
Every expensive pass runs once per module.
"""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam

import explain
from explain import attention
from poster.weights.checkpoints import load_checkpoint
from poster.inference.faces import FaceCrop, align_face
from poster.inference.transforms import to_batch
from tests._reference import reference, reference_input
from tests._checkpoints import checkpoint_file

LEVEL_SIDES = (28, 14, 7)


# --- Fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model64(tmp_path_factory: pytest.TempPathFactory):
    path = checkpoint_file(tmp_path_factory.mktemp("explain") / "deterministic64.pth", "poster-v2", 7, torch.float64)
    # channels_last float64 convolutions are ~4x slower on CPU than contiguous ones
    return load_checkpoint(path, dtype=torch.float64, channels_last=False)


@pytest.fixture(scope="module")
def model32(model64):
    """The float32 model as the app loads it (channels_last)."""
    return copy.deepcopy(model64).to(torch.float32).to(memory_format=torch.channels_last)


@pytest.fixture(scope="module")
def reference_maps(model64) -> list[torch.Tensor]:
    return explain.cross_attention_maps(model64, reference_input(torch.float64))


@pytest.fixture(scope="module")
def crops(astronaut: np.ndarray, grace_hopper: np.ndarray, face_detector) -> list[FaceCrop]:
    out = []
    for photo in (astronaut, grace_hopper):
        faces = face_detector.detect(photo).faces
        assert faces, "the test photo should show a face"
        out.append(align_face(photo, faces[0]))
    return out


@pytest.fixture(scope="module")
def face_batch(crops) -> torch.Tensor:
    return to_batch([crop.image for crop in crops])


@pytest.fixture(scope="module")
def face_pass(model32, face_batch) -> explain.GradCamPass:
    """One-pass Grad-CAM (and recorded attention) for both faces."""
    return explain.gradcam_pass(model32, face_batch)


@pytest.fixture(scope="module")
def explainer(model32) -> explain.Explainer:
    return explain.Explainer(model32)


@pytest.fixture(scope="module")
def explained(explainer, crops) -> list[explain.FaceExplanation]:
    return explainer.explain(crops)


@pytest.fixture(scope="module")
def astronaut_alone(explainer, face_batch) -> list[explain.FaceExplanation]:
    """The astronaut on its own, given as a normalized tensor rather than a FaceCrop."""
    return explainer.explain(face_batch[:1].clone())


def _all_maps(face: explain.FaceExplanation) -> list[np.ndarray]:
    return [m.values for m in face.gradcam + face.attention + face.rollout]


def _cross_attention(output) -> list[torch.Tensor]:
    return [a.value for a in output.attention]


def _gradcam(face: explain.FaceExplanation) -> list[np.ndarray]:
    return [m.values for m in face.gradcam]


def _received(face: explain.FaceExplanation) -> list[np.ndarray]:
    return [m.values for m in face.attention]


# --- Cross-attention -----------------------------------------------------------------------

def test_received_attention_equals_reference(reference_maps):
    maps = reference_maps
    expected = reference()["cross_attention_key_mean_7cls"]
    assert [tuple(m.shape) for m in maps] == [(2, s, s) for s in LEVEL_SIDES]
    for level, got in enumerate(maps, start=1):
        want = np.asarray(expected[f"level{level}"]).reshape(got.shape)
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-6)
        assert (got >= 0).all()
        torch.testing.assert_close(got.sum((1, 2)), torch.ones(2, dtype=got.dtype), rtol=0, atol=1e-12)


def test_cross_attention_is_a_probability_distribution(face_pass):
    for attn, side in zip(_cross_attention(face_pass.output), LEVEL_SIDES):
        assert (attn >= 0).all()
        # every query row is a softmax over the keys
        torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]), rtol=0, atol=1e-5)
        received = explain.received_attention(attn)
        torch.testing.assert_close(received.sum((1, 2)), torch.ones(2), rtol=0, atol=1e-5)
        per_head = explain.received_attention(attn, per_head=True)
        assert per_head.shape == (2, attn.shape[1], side, side)
        torch.testing.assert_close(per_head.mean(1), received, rtol=1e-6, atol=1e-9)


def test_query_index_exact():
    assert attention.query_index((0, 0), 28) == 0
    assert attention.query_index((223, 223), 28) == 28 * 28 - 1
    assert attention.query_index((-40, 500), 7) == 6 * 7  # clamped to the bottom-left cell
    # cell 3 of 7 spans crop pixels 96..127 (32 px per cell)
    assert attention.query_index((95.4, 0), 7) == 2
    assert attention.query_index((95.6, 127.4), 7) == 3 * 7 + 3


def test_query_attention_is_that_query_row(face_pass, explained):
    point = (112.0, 85.0)  # between the eyes of an aligned crop
    maps = explain.query_attention(_cross_attention(face_pass.output), point)
    for attn, got, side in zip(_cross_attention(face_pass.output), maps, LEVEL_SIDES):
        row = attention.query_index(point, side)
        assert got.shape == (2, side, side)
        torch.testing.assert_close(got.reshape(2, -1), attn[:, :, row].mean(1), rtol=0, atol=0)
        torch.testing.assert_close(got.sum((1, 2)), torch.ones(2), rtol=0, atol=1e-5)
    for face, per_face in zip(explained, zip(*[m.numpy() for m in maps])):
        for a, b in zip(face.query_attention(point), per_face, strict=True):
            np.testing.assert_allclose(a.values, b, rtol=1e-4, atol=1e-7)


# --- Rollout -------------------------------------------------------------------------------

def test_rollout_rows_sum_to_one_and_maps_are_non_negative(face_pass):
    vit = [a.value for a in face_pass.output.self_attention]
    matrix = explain.rollout_matrix(vit)
    assert matrix.shape == (2, 148, 148)
    torch.testing.assert_close(matrix.sum(-1), torch.ones(2, 148), rtol=0, atol=1e-5)
    maps = explain.attention_rollout(vit)
    assert [tuple(m.shape) for m in maps] == [(2, 7, 7)] * 3
    assert all((m >= 0).all() for m in maps)
    total = sum(m.sum((1, 2)) for m in maps)
    torch.testing.assert_close(total, 1 - matrix[:, 0, 0], rtol=0, atol=1e-5)


def test_rollout_of_uniform_attention_exact():
    # Uniform attention U = J/T per block: each joint step is (U + I) / 2, and U @ U = U, so two
    # blocks give 3/4 U + 1/4 I: every image token gets 0.75 / 148 from CLS.
    uniform = torch.full((1, 8, 148, 148), 1 / 148, dtype=torch.float64)
    maps = explain.attention_rollout([uniform, uniform])
    for m in maps:
        torch.testing.assert_close(m, torch.full((1, 7, 7), 0.75 / 148, dtype=torch.float64), rtol=0, atol=1e-15)


# --- Grad-CAM ------------------------------------------------------------------------------

@pytest.mark.parametrize("stream, level", [("image", 1), ("landmark", 0)])
def test_one_pass_gradcam_equals_captum_layer_gradcam(model32, face_batch, face_pass, stream, level):
    """Captum's own LayerGradCam, one layer per forward + backward, on the plain ``model(x)``."""
    index = {"image": 0, "landmark": 3}[stream] + level
    layer = model32.gradcam_layers()[index]
    assert layer.label == f"{stream} stream" and face_pass.layers[index] == layer
    target = face_pass.target.tolist()
    separate = LayerGradCam(model32, layer.module).attribute(face_batch, target=target, relu_attributions=True)
    one_pass = face_pass.maps[index]
    assert one_pass.shape == (2, LEVEL_SIDES[level], LEVEL_SIDES[level])
    assert (one_pass.amax((1, 2)) > 0).all()
    # float32, and the plain forward uses fused attention where the recording one has an explicit
    # softmax: cells where the channel sum cancels to near zero differ by ~1e-4 of the map's peak.
    torch.testing.assert_close(one_pass, separate[:, 0], rtol=1e-3, atol=1e-3 * float(one_pass.max()))


def test_gradcam_while_another_thread_predicts_with_the_same_model(model32, face_batch, face_pass):
    """A server classifies with the explained model from other threads meanwhile: their passes run
    through the hooked layers, and every explanation still equals the one made alone."""
    stop, predicted, failures = threading.Event(), threading.Event(), []

    def classify() -> None:
        try:
            with torch.inference_mode():
                while not stop.is_set():
                    model32(face_batch)
                    predicted.set()
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
            predicted.set()

    thread = threading.Thread(target=classify)
    thread.start()
    try:
        predicted.wait()  # the other thread is classifying in a loop from here on
        passes = [explain.gradcam_pass(model32, face_batch) for _ in range(3)]
    finally:
        stop.set()
        thread.join()
    assert failures == []
    for done in passes:
        assert torch.equal(done.target, face_pass.target)
        for concurrent, alone in zip(done.maps, face_pass.maps):
            torch.testing.assert_close(concurrent, alone, rtol=1e-5, atol=1e-6 * float(alone.max()))


def test_gradcam_maps_have_native_shapes(explained):
    for face in explained:
        assert [m.name for m in face.gradcam] == [f"{stream} stream ({s}x{s})" for stream in ("image", "landmark")
                                                  for s in LEVEL_SIDES]
        assert [m.values.shape for m in face.gradcam] == [(s, s) for s in LEVEL_SIDES] * 2
        assert [m.values.shape for m in face.attention] == [(s, s) for s in LEVEL_SIDES]
        assert [m.values.shape for m in face.rollout] == [(7, 7)] * 3
        assert [q.matrix.shape for q in face.queries] == [(s * s, s * s) for s in LEVEL_SIDES]
        assert face.clickable and face.native == []
        assert all(m.min() >= 0 and m.max() > 0 for m in _gradcam(face))
        assert face.target == face.predicted
        np.testing.assert_allclose(face.probabilities.sum(), 1.0, atol=1e-9)


def test_same_face_same_maps_in_batch_of_one_and_of_two(explained, astronaut_alone):
    together, alone = explained[0], astronaut_alone[0]
    np.testing.assert_allclose(together.logits, alone.logits, rtol=1e-4, atol=1e-5)
    # float32 convolutions sum in a batch-size-dependent order: equal up to rounding, which
    # shows near Grad-CAM's ReLU cut-off, so compare against each map's scale.
    for a, b in zip(_all_maps(together), _all_maps(alone)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-3 * float(np.abs(b).max()))


def test_gradcam_is_identical_for_the_same_input_twice(explainer, crops, astronaut_alone):
    again = explainer.explain([crops[0]])[0]
    for a, b in zip(_all_maps(again), _all_maps(astronaut_alone[0])):
        np.testing.assert_array_equal(a, b)


def test_gradcam_differs_between_target_classes(explainer, crops):
    first, second = explainer.explain([crops[0], crops[0]], target=[0, 1])
    assert (first.target, second.target) == (0, 1)
    for a, b in zip(_gradcam(first), _gradcam(second)):
        assert not np.allclose(a, b, rtol=1e-2, atol=0)
    # the attention does not depend on the target: same forward pass
    for a, b in zip(_received(first), _received(second)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=0)


def test_gradcam_changes_when_the_head_is_randomized(model32, crops, astronaut_alone):
    randomized = copy.deepcopy(model32)
    generator = torch.Generator().manual_seed(2018)  # Adebayo et al.'s model-randomization test
    with torch.no_grad():
        head = randomized.transformer.head
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * head.weight.std())
    original = astronaut_alone[0]
    changed = explain.Explainer(randomized).explain([crops[0]], target=original.target)[0]
    for a, b in zip(_gradcam(original), _gradcam(changed)):
        assert not np.allclose(a, b, rtol=1e-2, atol=0)
    for a, b in zip(_received(original), _received(changed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=0)  # the head comes after all attention


def test_target_must_name_a_class_for_every_face(explainer, crops):
    with pytest.raises(ValueError, match="targets for"):
        explainer.explain([crops[0]], target=[1, 2])
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        explainer.explain([crops[0]], target=7)
    assert explainer.explain([]) == []


# --- Maps on the crop and the photo ----------------------------------------------------------

def test_maps_upsample_to_the_crop_and_warp_onto_the_photo(explained, astronaut, grace_hopper):
    for face, photo in zip(explained, (astronaut, grace_hopper)):
        for m in _gradcam(face)[3:] + _received(face):
            on_crop = face.on_crop(m)
            assert on_crop.shape == (224, 224)
            on_photo = face.on_photo(m, photo.shape)
            assert on_photo.shape == photo.shape[:2]
            assert np.isfinite(on_photo).all() and on_photo.max() > 0


def test_upsample_exact_on_constant_map():
    np.testing.assert_array_equal(explain.upsample(np.full((7, 7), 0.25), 224), np.full((224, 224), 0.25, np.float32))
    np.testing.assert_array_equal(explain.normalize(np.zeros((3, 3))), np.zeros((3, 3), np.float32))
    np.testing.assert_array_equal(explain.normalize(np.array([[1.0, 4.0]])), np.array([[0.25, 1.0]], np.float32))


def test_tensor_input_needs_the_crop_for_the_photo(astronaut_alone, crops):
    face = astronaut_alone[0]
    assert face.image.shape == (224, 224, 3) and face.image.dtype == np.uint8
    with pytest.raises(ValueError, match="FaceCrop"):
        face.on_photo(face.rollout[0].values, (100, 100))
    assert face.on_photo(face.rollout[0].values, (100, 80), crop=crops[0]).shape == (100, 80)


# --- Rendering -----------------------------------------------------------------------------

def test_overlay_and_panel_are_uint8_of_the_expected_size(explained):
    face = explained[0]
    image = face.image
    assert explain.overlay(image, face.gradcam[0].values).shape == (224, 224, 3)
    tile = 100
    picture = explain.panel(image, _received(face), ["a", "b", "c"], tile=tile)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert picture.shape[1] == 3 * tile + 2 * 8
    summary = explain.summary(face)
    assert summary.dtype == np.uint8 and summary.shape[2] == 3
    assert summary.shape[0] > 224 and summary.shape[1] > 224 + 3 * 160
    panels = explain.explanation_panels(face)
    assert [p.title for p in panels] == [
        "Grad-CAM · image stream", "Grad-CAM · landmark stream",
        "Attention received (28x28, 14x14, 7x7): attention each image position receives from the landmark "
        "queries at this scale", "Attention rollout (class token → tokens)"]
    assert all(p.image.shape[1] == 3 * 160 + 2 * 8 for p in panels)
    assert explain.explanation_notes(face) == []
    assert explain.query_panel(face, (112.0, 85.0)).shape == panels[0].image.shape


def test_overlay_leaves_nan_cells_and_zero_opacity_untouched():
    image = np.full((4, 4, 3), 100, np.uint8)
    values = np.ones((4, 4), np.float32)
    values[0, 0] = np.nan
    out = explain.overlay(image, values, alpha=0.6, vmin=0.0, vmax=1.0)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    assert not np.array_equal(out[1, 1], [100, 100, 100])
    np.testing.assert_array_equal(explain.overlay(image, values, alpha=0.0), image)


def test_colorize_uses_the_shared_scale():
    low_high = explain.colorize(np.array([[0.0, 1.0]]), cmap="gray", vmin=0.0, vmax=2.0)
    np.testing.assert_array_equal(low_high[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(low_high[0, 1], [128, 128, 128])

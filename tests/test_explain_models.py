"""Explanations of POSTER (v1) and ARM through the model contract, by the same explainer as
POSTER++'s: Grad-CAM on each model's own spatial layers, v1's landmark attention on the 7x7 grid,
its image tokens reported without a picture, ARM's 11x11 de-albino map."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from explain import Explainer, explanation_notes, explanation_panels
from explain.gradcam import gradcam_map
from poster import load_checkpoint
from poster.inference.transforms import model_batch
from poster.data.sample_faces import face_crops
from tests._checkpoints import checkpoint_file


@pytest.fixture(scope="module")
def v1_model(poster_v1_model):
    return poster_v1_model


@pytest.fixture(scope="module")
def arm_model(tmp_path_factory: pytest.TempPathFactory):
    return load_checkpoint(checkpoint_file(tmp_path_factory.mktemp("arm") / "epoch59_acc0.9205.pth", "arm"))


def _crops(n: int) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.fromarray(c).resize((224, 224), Image.BILINEAR)) for c in face_crops()[:n]]


def test_poster_v1_maps_are_labelled_with_their_grids(v1_model) -> None:
    crops = _crops(2)
    explanations = Explainer(v1_model).explain(crops)
    e = explanations[0]
    assert [m.name for m in e.gradcam] == ["IR-50 stage 1 (56x56)", "IR-50 stage 2 (28x28)",
                                           "IR-50 stage 3 (14x14)", "MobileFaceNet (7x7)"]
    assert [m.values.shape for m in e.gradcam] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    landmark = [m for m in e.attention if m.spatial]
    image = [m for m in e.attention if not m.spatial]
    assert len(landmark) == len(image) == 24
    assert landmark[0].values.shape == (7, 7) and landmark[0].name == "block 0 large landmark-from-image"
    assert "mean token" in landmark[0].meaning and "blends both streams" in landmark[3].meaning
    assert "channel group, no position" in image[0].meaning
    assert [m.name for m in e.native] == ["image tokens"] and not e.native[0].spatial
    assert e.rollout == [] and not e.clickable and e.query_attention((112.0, 85.0)) == []
    # The 49 position shares plus the mean token's share make the whole softmax.
    assert 0 < landmark[0].values.sum() < 1
    with torch.inference_mode():
        logits = v1_model(model_batch(crops, v1_model))  # the BGR input the checkpoint expects
    np.testing.assert_allclose(np.stack([x.logits for x in explanations]), logits.numpy(), atol=1e-4)


def test_gradcam_equals_a_hand_computation(arm_model) -> None:
    crops = _crops(2)
    e = Explainer(arm_model).explain(crops, target=3)
    batch = model_batch(crops, arm_model)
    captured = {}
    handle = arm_model.backbone.layer3.register_forward_hook(lambda m, i, o: captured.update(a=o))
    try:
        logits = arm_model.forward_alone(batch)
        grad, = torch.autograd.grad(logits[:, 3].sum(), captured["a"])
    finally:
        handle.remove()
    expected = gradcam_map(captured["a"].detach(), grad).numpy()
    for i in range(2):
        assert e[i].target == 3
        np.testing.assert_allclose(e[i].gradcam[2].values, expected[i], rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in arm_model.parameters())


def test_arm_native_map_is_the_de_albino_map_of_each_face_alone(arm_model) -> None:
    crops = _crops(2)
    pair = Explainer(arm_model).explain(crops)
    single = Explainer(arm_model).explain(crops[:1])
    assert [m.name for m in pair[0].native] == ["de-albino map", "amended map"]
    assert pair[0].native[0].values.shape == (11, 11)
    np.testing.assert_allclose(pair[0].native[1].values, single[0].native[1].values, atol=1e-5)
    np.testing.assert_allclose(pair[0].logits, single[0].logits, atol=1e-5)
    assert [m.values.shape for m in pair[0].gradcam] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert pair[0].on_crop(pair[0].native[0].values).shape == (224, 224)


def test_panels_label_every_map_and_note_what_has_no_picture(v1_model, arm_model) -> None:
    explanation = Explainer(v1_model).explain(_crops(1))[0]
    panels, notes = explanation_panels(explanation, tile=64), explanation_notes(explanation)
    assert [p.title.split(" (")[0] for p in panels] == ["Grad-CAM · IR-50 stages and MobileFaceNet",
                                                        "Attention received"]
    assert panels[0].image.shape[1] == 4 * 64 + 3 * 8 and panels[1].image.shape[1] == 3 * 64 + 2 * 8
    assert any("no spatial picture" in n for n in notes) and any("channel group" in n for n in notes)
    explanation = Explainer(arm_model).explain(_crops(1))[0]
    panels, notes = explanation_panels(explanation, tile=64), explanation_notes(explanation)
    assert [p.title for p in panels] == ["Grad-CAM · ResNet-18 layers",
                                         "The model's own maps · de-albino map, amended map (11x11)"]
    assert notes == []

"""POSTER (v1) and ARM beside POSTER++ in the app: the picker, colour order, explanations,
comparison, model cards and the webcam, called as plain handlers on checkpoints shaped like the
released files (recipe weights)."""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from demo.model import tab as model_tab
from demo.webcam import precision as precisions
from demo.serving.camera_slots import CameraSlots
from demo.photo.compare_panel import compare_checkpoints
from demo.ui.explain_panel import PREDICTED, explain_subject
from demo.model.cards import model_card
from demo.ui.download_row import dataset_choices
from demo.webcam.live_tracking import LiveSession
from demo.ui.photo_result import faces_json
from demo.photo.tab import analyze_photo
from demo.serving.store import ModelStore
from demo.webcam.tab import live_frame
from explain import Explainer
from poster import load_checkpoint
from poster.inference.faces import Face, align_face
from poster.inference.predictor import Predictor
from poster.inference.transforms import to_batch
from tests._app import architectures_dir, astronaut_path  # noqa: F401

# slow: POSTER and ARM checkpoints through every tab, beside POSTER++ (test_app_handlers covers POSTER++ alone)
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers"), pytest.mark.slow]

KEYS = {"POSTER++ · RAF-DB": "raf-db", "POSTER · RAF-DB": "poster-v1-raf-db", "ARM · RAF-DB": "arm-raf-db"}


@pytest.fixture(scope="module")
def folder(architectures_dir: Path) -> Path:
    return architectures_dir


@pytest.fixture(scope="module")
def store(folder: Path) -> ModelStore:
    return ModelStore(device="cpu", checkpoint_dirs=[folder])


@pytest.fixture(scope="module")
def analyzed(store: ModelStore) -> dict:
    return {key: analyze_photo(str(astronaut_path()), key, store=store) for key in KEYS.values()}


def test_one_picker_over_every_architecture_grouped_by_architecture(store):
    assert [c.label for c in store.choices()] == list(KEYS)
    assert [c.architecture for c in store.choices()] == ["POSTER++", "POSTER", "ARM"]
    dropdown = model_tab.checkpoint_dropdown("poster-v1-raf-db", [], store=store)
    assert [key for _, key in dropdown["choices"]] == list(KEYS.values())
    assert dropdown["value"] == "poster-v1-raf-db"
    labels = [label for label, _ in dataset_choices()]
    assert labels[:4] == ["POSTER++ · RAF-DB (92.21 %)", "POSTER++ · AffectNet-7 (67.49 %)",
                          "POSTER++ · AffectNet-8 (63.77 %)", "POSTER++ · CAER-S (93.00 %)"]
    assert labels[4:] == ["POSTER · RAF-DB (92.05 %)", "ARM · RAF-DB (92.05 %)"]
    view = model_tab.switch_checkpoint("arm-raf-db", "raf-db", store=store)
    key, status = view.model_key, view.switch_status
    assert key == "arm-raf-db" and "ARM · RAF-DB" in status
    assert "Active checkpoint: POSTER · RAF-DB" in model_tab.header_line("poster-v1-raf-db", store=store)


def test_poster_v1_photo_probabilities_are_the_predictors_on_bgr(store, analyzed, folder, astronaut):
    faces = faces_json(analyzed["poster-v1-raf-db"].result)
    assert len(faces) == 1 and faces[0]["checkpoint"] == "POSTER · RAF-DB"
    app = analyzed["poster-v1-raf-db"].result.faces[0].probabilities
    model = load_checkpoint(folder / "poster-v1" / "rafdb_best.pth")
    expected = Predictor(model, detector=store.detector()).predict(astronaut)
    np.testing.assert_allclose(app, expected[0].probabilities, rtol=0, atol=1e-6)
    crop = analyzed["poster-v1-raf-db"].result.faces[0].crop.image
    with torch.inference_mode():
        as_rgb = torch.softmax(model(to_batch([crop])), dim=1)[0].numpy()
        as_bgr = torch.softmax(model(to_batch([np.ascontiguousarray(crop[..., ::-1])])), dim=1)[0].numpy()
    np.testing.assert_allclose(app, as_bgr, rtol=0, atol=1e-6)
    assert np.abs(app - as_rgb).max() > 1e-4  # the colour order made a difference


def test_each_checkpoint_gets_its_own_explainer_of_one_kind(store):
    explainers = [store.explainer(key) for key in ("raf-db", "poster-v1-raf-db", "arm-raf-db")]
    assert all(type(e) is Explainer for e in explainers) and len({id(e) for e in explainers}) == 3
    assert store.explainer("arm-raf-db") is explainers[2]


def _panel(store, analyzed, key):
    return explain_subject(analyzed[key].subject, PREDICTED, store=store)


def test_poster_v1_panel_labels_its_maps_and_says_what_has_no_picture(store, analyzed):
    view = _panel(store, analyzed, "poster-v1-raf-db")
    assert [p is not None for p in view.images] == [True, True, False, False]
    titles = [t["value"] for t in view.titles]
    assert "Grad-CAM · IR-50 stages and MobileFaceNet" in titles[0]
    assert "Attention received (7x7): attention each landmark position" in titles[1]
    assert [s["visible"] for s in view.slots] == [True, True, False, False]
    notes = view.notes
    assert notes["visible"] and "no spatial picture" in notes["value"] and "image tokens" in notes["value"]
    assert view.point_row["visible"] is False  # no click-a-point view: that is POSTER++'s cross-attention
    # The crop is shown as the photo's colours, while the network saw BGR: same probabilities as the photo.
    explanation = view.explanation
    np.testing.assert_array_equal(explanation.image, analyzed["poster-v1-raf-db"].subject.crop)
    np.testing.assert_allclose(explanation.probabilities,
                               analyzed["poster-v1-raf-db"].result.faces[0].probabilities, atol=1e-5)
    assert "Click a point" not in view.status


def test_arm_panel_shows_resnet_gradcam_and_its_de_albino_map(store, analyzed):
    view = _panel(store, analyzed, "arm-raf-db")
    assert [p is not None for p in view.images] == [True, True, False, False]
    titles = [t["value"] for t in view.titles]
    assert "Grad-CAM · ResNet-18 layers" in titles[0]
    assert "de-albino map" in titles[1] and "(11x11)" in titles[1]
    assert view.notes["visible"] is False


def test_poster_v2_panel_is_unchanged(store, analyzed):
    view = _panel(store, analyzed, "raf-db")
    assert all(p is not None for p in view.images)
    titles = ["Grad-CAM · image stream", "Grad-CAM · landmark stream", "Attention received (28x28, 14x14, 7x7): "
              "attention each image position receives from the landmark queries at this scale",
              "Attention rollout (class token → tokens)"]
    assert [t["value"] for t in view.titles] == [f'<div class="poster-panel-title">{escape(t)}</div>'
                                                 for t in titles]
    assert all(s["visible"] for s in view.slots) and view.point_row["visible"] is True


def test_compare_runs_every_architecture_with_its_gradcam(store, analyzed):
    view = compare_checkpoints(analyzed["raf-db"].subject, store=store)
    for label in KEYS:
        assert label in view.table
    assert [caption.split(":")[0] for _, caption in view.gallery] == list(KEYS)
    widths = [strip.shape[1] for strip, _ in view.gallery]
    assert widths[0] > widths[1] == widths[2]  # POSTER++: 6 maps; POSTER and ARM: 4 layers each
    assert "POSTER++ · AffectNet-7" in view.status
    assert "POSTER · RAF-DB" not in view.status.split("Not available")[-1]


def test_arm_classifies_each_face_alone_in_the_app(store, astronaut, grace_hopper, tmp_path):
    left = np.asarray(Image.fromarray(astronaut).resize((400, 400)))
    right = np.asarray(Image.fromarray(grace_hopper).resize((int(400 * grace_hopper.shape[1] / grace_hopper.shape[0]), 400)))
    path = tmp_path / "two.png"
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)
    result = analyze_photo(str(path), "arm-raf-db", store=store).result
    assert len(result.faces) == 2
    model = store.predictor("arm-raf-db").model
    together = torch.softmax(model(to_batch([f.crop.image for f in result.faces])).detach(), dim=1).numpy()
    for i, face in enumerate(result.faces):
        with torch.inference_mode():
            alone = torch.softmax(model(to_batch([face.crop.image])), dim=1)[0].numpy()
        np.testing.assert_allclose(face.probabilities, alone, atol=1e-6)
        assert np.abs(face.probabilities - together[i]).max() > 1e-6  # a batch of two would differ


def test_model_tab_shows_each_architectures_card(store):
    card = model_card()
    for words in ("arXiv 2301.12149", "arXiv 2204.04083", "arXiv 2103.10189", "58.91 M", "71.85 M", "11.18 M",
                  "7.86 G", "1.81 G", "BGR", "classified alone", "90.42 %", "batches of 64", "91.62 %",
                  "POSTER · RAF-DB", "ARM · RAF-DB", "Not for decisions about people"):
        assert words in card, words
    facts = model_tab.model_facts("poster-v1-raf-db", store=store)
    assert "POSTER" in facts and "BGR" in facts and "92.05 %" in facts
    assert "RGB" in model_tab.model_facts("arm-raf-db", store=store)


@pytest.mark.parametrize("key", list(KEYS.values()))
def test_webcam_classifies_with_each_architecture(key, store, astronaut):
    frame = np.asarray(Image.fromarray(astronaut).resize((360, 360)).crop((-60, 0, 420, 360)))
    url = handlers_data_url(frame)
    session = LiveSession()
    result = json.loads(live_frame({"frame": url}, session, key, "float32", 0.6, store=store,
                                   slots=CameraSlots(1, 120), visitor="v").live)
    assert result["status"] == "ok" and len(result["faces"]) == 1, result
    track = session.tracks[0]
    crop = align_face(session.last_frame, Face(track.box, 1.0, track.landmarks)).image
    model = store.predictor(key).model
    colour = crop[..., ::-1] if key == "poster-v1-raf-db" else crop  # POSTER's checkpoint saw BGR
    with torch.inference_mode():
        expected = torch.softmax(model(to_batch([np.ascontiguousarray(colour)])), dim=1)[0].numpy()
    np.testing.assert_allclose(result["faces"][0]["p"], expected, atol=1e-4)
    assert result["classes"] == list(store.predictor(key).class_names)
    if "bfloat16" in precisions.choices(on_gpu=False):  # the fast format copies the model with its record
        fast = json.loads(live_frame({"frame": url}, LiveSession(), key, "bfloat16", 0.6, store=store,
                                     slots=CameraSlots(1, 120), visitor="w").live)
        assert fast["precision"] == "bfloat16" and len(fast["faces"]) == 1
        np.testing.assert_allclose(fast["faces"][0]["p"], expected, atol=3e-2)


def handlers_data_url(image: np.ndarray) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=95)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()

"""Photo tab: upload, paste or pick a photo; boxes, labels, probabilities, explanations, comparison."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from .compare_panel import build_checkpoint_compare_panel
from ..ui.explain_panel import ExplainPanel, build_explain_panel
from ..serving.files import example_photos, files_out
from ..serving.gpu import gpu
from ..serving.limits import Limits
from ..ui.messages import friendly
from ..ui.outputs import bound, outputs_of, returning
from ..ui.photo_result import (FaceChoice, FaceClick, PhotoView, empty_view, find_faces, on_face_click, photo_view,
                               read_photo, select_face)
from ..serving.store import ModelStore


@dataclass
class PhotoTab:
    """The Photo tab's components that the page wires to other tabs."""

    photo: gr.Image
    annotated: gr.Image
    summary: gr.HTML
    bars: gr.HTML
    faces: gr.Radio
    as_json: gr.JSON
    result: gr.State
    subject: gr.State
    panel: ExplainPanel


@friendly("Analyzing the photo")
def analyze_photo(image: Any, model_key: str | None, store: ModelStore) -> PhotoView:
    """Photo in (a file payload, path or array) -> every face boxed, labeled and explained, the first selected."""
    if image is None:
        return empty_view()
    return photo_view(find_faces(read_photo(image), model_key, store))


def _cleared() -> PhotoView:
    return empty_view()


def build_photo_tab(model_key: gr.State, store: ModelStore, limits: Limits) -> PhotoTab:
    gr.Markdown("Upload a photo, paste one from the clipboard or pick an example. Every face is found, "
                "aligned and labeled; the bars show each face's probabilities. Pick a face (or click it) "
                "to see what the model looked at.")
    result = gr.State(None)
    subject = gr.State(None)
    with gr.Row():
        with gr.Column(scale=5):
            photo = gr.Image(sources=["upload", "clipboard"], type="filepath", label="Photo", height=440,
                             elem_id="photo-input")
            examples = example_photos()
            if examples:
                gr.Examples(examples=[[p] for p in examples], inputs=[photo], cache_examples=False,
                            example_labels=["Astronaut (scikit-image)", "Grace Hopper (matplotlib)"][:len(examples)],
                            label="Example photos")
        with gr.Column(scale=6):
            shown = gr.Image(label="Faces and expressions (click a face to explain it)", interactive=False,
                             height=440, format="jpeg", elem_id="photo-output")
            summary = gr.HTML(elem_id="photo-summary")
            faces = gr.Radio(label="Face to explain", visible=False, elem_id="photo-faces")
            bars = gr.HTML(elem_id="photo-bars")
            with gr.Accordion("Result as JSON", open=False):
                as_json = gr.JSON(label="Faces", elem_id="photo-json")

    with gr.Accordion("Why this expression? Explanation of the selected face", open=True):
        panel = build_explain_panel(subject, store, limits, "photo")

    with gr.Accordion("Compare every checkpoint on this face", open=False):
        build_checkpoint_compare_panel(subject, store, limits)

    tab = PhotoTab(photo=photo, annotated=shown, summary=summary, bars=bars, faces=faces, as_json=as_json,
                   result=result, subject=subject, panel=panel)
    outputs = outputs_of(PhotoView, tab)
    # Old results go at once; a failed analysis then shows its message, never a stale result.
    cleared = photo.change(returning(PhotoView, _cleared), None, outputs, queue=False, show_progress="hidden",
                           trigger_mode="always_last", api_visibility="private")
    analysis = cleared.then(gpu(files_out(returning(PhotoView, bound(analyze_photo, store=store)))), [photo, model_key], outputs,
                            api_name="analyze", preprocess=False, show_progress="full", show_progress_on=[shown],
                            **limits.model_event(public=True))
    panel.explain_after(analysis)
    picked = faces.input(files_out(returning(FaceChoice, select_face)), [result, faces], outputs_of(FaceChoice, tab),
                         **limits.light_event())
    panel.explain_after(picked)
    clicked = shown.select(files_out(returning(FaceClick, on_face_click)), [result], outputs_of(FaceClick, tab),
                           **limits.light_event())
    panel.explain_after(clicked)
    return tab


__all__ = ["PhotoTab", "analyze_photo", "build_photo_tab"]

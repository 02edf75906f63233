"""Photo tab: upload, paste or pick a photo; boxes, labels, probabilities, explanations, comparison."""
from __future__ import annotations

import gradio as gr

from .explain_panel import build_explain_panel, on_face_click
from .files import files_out
from .gpu import gpu
from .handlers import analyze_photo, compare_checkpoints, example_photos, select_face
from .limits import Limits


def _cleared():
    return None, "", "", gr.update(choices=[], value=None, visible=False), [], None, None


def _compare(subject, progress=gr.Progress()):
    return compare_checkpoints(subject, progress=progress)


def build_photo_tab(model_key: gr.State, limits: Limits) -> dict:
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
            annotated = gr.Image(label="Faces and expressions (click a face to explain it)", interactive=False,
                                 height=440, format="jpeg", elem_id="photo-output")
            summary = gr.HTML(elem_id="photo-summary")
            faces = gr.Radio(label="Face to explain", visible=False, elem_id="photo-faces")
            bars = gr.HTML(elem_id="photo-bars")
            with gr.Accordion("Result as JSON", open=False):
                as_json = gr.JSON(label="Faces", elem_id="photo-json")

    with gr.Accordion("Why this expression? Explanation of the selected face", open=True):
        panel = build_explain_panel(subject, limits, "photo")

    with gr.Accordion("Compare every checkpoint on this face", open=False):
        gr.Markdown("Runs every available checkpoint of every architecture (POSTER++, POSTER, ARM) on the "
                    "selected face; ARM classifies it alone. Classes are lined up by name (Happy = Happiness); "
                    "Contempt exists only in AffectNet-8. Below: each checkpoint's Grad-CAM maps, one row each.")
        compare_button = gr.Button("Compare checkpoints", variant="secondary", elem_id="compare-button")
        compare_status = gr.HTML()
        compare_table = gr.HTML(elem_id="compare-table")
        compare_gallery = gr.Gallery(label="Grad-CAM per checkpoint (its own layers)", columns=1, height="auto",
                                     object_fit="contain", allow_preview=True, fit_columns=False,
                                     elem_id="compare-gallery")

    outputs = [annotated, summary, bars, faces, as_json, result, subject]
    # Old results go at once; a failed analysis then shows its message, never a stale result.
    cleared = photo.change(_cleared, None, outputs, queue=False, show_progress="hidden", trigger_mode="always_last",
                           api_visibility="private")
    analysis = cleared.then(gpu(files_out(analyze_photo)), [photo, model_key], outputs, api_name="analyze", preprocess=False,
                            show_progress="full", show_progress_on=[annotated], **limits.model_event(public=True))
    panel.explain_after(analysis)
    picked = faces.input(files_out(select_face), [result, faces], [annotated, subject], **limits.light_event())
    panel.explain_after(picked)
    clicked = annotated.select(files_out(on_face_click), [result], [faces, annotated, subject], **limits.light_event())
    panel.explain_after(clicked)
    compare_button.click(gpu(files_out(_compare)), [subject], [compare_table, compare_gallery, compare_status],
                         show_progress_on=[compare_status], **limits.model_event())
    return {"photo": photo, "annotated": annotated, "summary": summary, "bars": bars, "faces": faces,
            "json": as_json, "result": result, "subject": subject, "panel": panel}

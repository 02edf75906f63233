"""Webcam tab: the browser's camera streamed to the server, labeled live; freeze a frame to explain it."""
from __future__ import annotations

import gradio as gr

from .explain_panel import build_explain_panel, on_face_click
from .files import files_out
from .gpu import gpu
from .handlers import select_face
from .limits import Limits
from .webcam import LiveSession, freeze_frame, stats_html, webcam_frame


def _freeze(session, model_key):
    return (*freeze_frame(session, model_key), gr.update(visible=True))


def build_webcam_tab(model_key: gr.State, limits: Limits) -> dict:
    per_second = 1 / limits.stream_every
    gr.Markdown(
        f"Allow the camera, then press **Record**. Up to {per_second:.0f} frames per second go to the server; "
        f"a frame that arrives while another is being processed is skipped, so the labels stay current "
        f"on a slow CPU. Labels are averaged over recent frames of the same face so they do not flicker. "
        f"A session lasts {limits.webcam_seconds // 60} minutes{'' if limits.webcam_streams > 1 else ' and one camera is served at a time'}; "
        f"press Record again to continue.")
    session = gr.State(LiveSession())
    frozen_result = gr.State(None)
    frozen_json = gr.State([])
    subject = gr.State(None)
    with gr.Row():
        camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Your camera", height=400,
                          webcam_options=gr.WebcamOptions(mirror=True), elem_id="webcam-input")
        live = gr.Image(label="Live result", interactive=False, height=400, format="jpeg", elem_id="webcam-output",
                        buttons=["fullscreen"])
    with gr.Row(equal_height=True):
        stats = gr.HTML(stats_html(None), elem_id="webcam-stats")
    with gr.Row():
        smoothing = gr.Slider(0.0, 0.9, value=0.6, step=0.05, label="Smoothing",
                              info="Weight of past frames in each face's probabilities (0: none).", scale=3)
        with gr.Column(scale=1, min_width=200):
            freeze = gr.Button("Freeze frame & explain", variant="primary", elem_id="webcam-freeze")

    with gr.Column(visible=False) as frozen_section:
        gr.Markdown("### Frozen frame")
        with gr.Row():
            with gr.Column(scale=3):
                frozen = gr.Image(label="Frozen frame (click a face to explain it)", interactive=False, height=360,
                                  format="jpeg", elem_id="webcam-frozen")
            with gr.Column(scale=2):
                frozen_summary = gr.HTML()
                faces = gr.Radio(label="Face to explain", visible=False)
                frozen_bars = gr.HTML()
        panel = build_explain_panel(subject, limits, "webcam")

    camera.stream(gpu(files_out(webcam_frame)), [camera, session, model_key, smoothing], [live, stats, session],
                  **limits.stream_event())
    frozen_event = freeze.click(gpu(files_out(_freeze)), [session, model_key],
                                [frozen, frozen_summary, frozen_bars, faces, frozen_json, frozen_result, subject,
                                 frozen_section],
                                show_progress_on=[frozen], **limits.model_event())
    panel.explain_after(frozen_event)
    picked = faces.input(files_out(select_face), [frozen_result, faces], [frozen, subject], **limits.light_event())
    panel.explain_after(picked)
    clicked = frozen.select(files_out(on_face_click), [frozen_result], [faces, frozen, subject], **limits.light_event())
    panel.explain_after(clicked)
    return {"camera": camera, "live": live, "stats": stats, "session": session, "freeze": freeze,
            "frozen": frozen, "panel": panel}

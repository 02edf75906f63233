"""Webcam tab: the browser's own camera preview with labels drawn over it live; freeze a frame to
explain it; download the session's results."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from poster.inference.draw import PALETTE

from . import precision as precisions
from .camera_slots import CameraSlots
from .explain_panel import build_explain_panel
from .files import files_out
from .gpu import gpu
from .outputs import returning
from .photo_tab import FaceChoice, FaceClick, on_face_click, select_face
from .limits import Limits
from .store import get_store
from .webcam import FRAME_MAX_SIDE, LiveSession, live_frame, stop_stream
from .webcam_record import freeze_frame, results_file

LIVE_HTML = """
<div class="poster-live" data-state="idle">
  <div class="poster-live-stage">
    <video class="poster-live-video" autoplay muted playsinline></video>
    <canvas class="poster-live-overlay"></canvas>
  </div>
  <div class="poster-live-bar">
    <button type="button" class="poster-live-start">Start camera</button>
    <button type="button" class="poster-live-stop" disabled>Stop</button>
    <span class="poster-live-rate" aria-live="off"></span>
    <span class="poster-live-message" data-kind="info">Press Start camera: the page asks for your camera.</span>
  </div>
</div>
"""

LIVE_CSS = """
.poster-live-stage { position: relative; width: 100%; height: 420px; background: #0f172a; border-radius: 8px;
  overflow: hidden; }
.poster-live-video { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain;
  transform: scaleX(-1); }
.poster-live-overlay { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
.poster-live-bar { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin-top: 8px; }
.poster-live-bar button { padding: 6px 14px; border-radius: 6px; border: 1px solid #6366f1; cursor: pointer;
  background: #6366f1; color: #fff; font-weight: 600; }
.poster-live-bar button.poster-live-stop { background: transparent; color: #6366f1; }
.poster-live-bar button:disabled { opacity: 0.45; cursor: default; }
.poster-live-rate { font-variant-numeric: tabular-nums; font-weight: 600; }
.poster-live-message[data-kind="error"], .poster-live-message[data-kind="warn"] { color: #b45309; }
.poster-live-message[data-kind="wait"] { color: #4f46e5; }
"""


def live_js(max_side: int = FRAME_MAX_SIDE) -> str:
    source = (Path(__file__).with_name("webcam_live.js")).read_text()
    return source.replace("__MAX_SIDE__", str(int(max_side))).replace("__PALETTE__", json.dumps(PALETTE))


def _visitor(request: gr.Request | None) -> str:
    return (getattr(request, "session_hash", None) or "anonymous") if request is not None else "anonymous"


def _freeze(session, model_key):
    return (*freeze_frame(session, model_key), gr.update(visible=True))


def build_webcam_tab(model_key: gr.State, limits: Limits) -> dict:
    slots = CameraSlots(limits.webcam_streams, limits.webcam_seconds)
    on_gpu = get_store().on_gpu
    choices = precisions.choices(on_gpu)
    shared = "" if limits.webcam_streams > 1 else " One camera is served at a time; others wait for their turn."
    gr.Markdown(
        f"Press **Start camera** and allow the camera. Your picture stays in your browser at full rate; a small "
        f"copy of the newest frame goes to the server whenever the previous answer is back, and the faces found "
        f"are drawn over the picture. Labels are averaged over recent frames of the same face so they do not "
        f"flicker. A session lasts {limits.webcam_seconds // 60} minutes.{shared}")
    session = gr.State(LiveSession())
    frozen_result = gr.State(None)
    frozen_json = gr.State([])
    subject = gr.State(None)
    live = gr.HTML("", html_template=LIVE_HTML, css_template=LIVE_CSS, js_on_load=live_js(),
                   elem_id="webcam-live")
    with gr.Row(equal_height=True):
        precision = gr.Radio([(precisions.LABELS[c], c) for c in choices], value=choices[0],
                             label="Webcam precision", elem_id="webcam-precision", scale=2,
                             info=("half precision on this GPU" if on_gpu else
                                   "this CPU runs bfloat16 natively" if precisions.BFLOAT16 in choices else
                                   "this CPU has no fast bfloat16") + "; photos always use float32.")
        smoothing = gr.Slider(0.0, 0.9, value=0.6, step=0.05, label="Smoothing", scale=2,
                              info="Weight of past frames in each face's probabilities (0: none).")
        with gr.Column(scale=1, min_width=200):
            freeze = gr.Button("Freeze frame & explain", variant="primary", elem_id="webcam-freeze")
            download = gr.Button("Download results (CSV)", elem_id="webcam-download")
    results = gr.File(label="Results of this session", visible=False, elem_id="webcam-results")

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

    def on_frame(session, model_key, precision, smoothing, request: gr.Request, evt: gr.EventData):
        text, _ = live_frame(getattr(evt, "_data", None), session, model_key, precision, smoothing,
                             store=get_store(), slots=slots, visitor=_visitor(request))
        return text

    def on_stop(session, request: gr.Request):
        stop_stream(session, slots=slots, visitor=_visitor(request))

    def on_download(session):
        path = results_file(session)
        return gr.update(value=path, visible=path is not None)

    # Waiting visitors are answered at once, so they need a worker beside the streaming ones.
    # The session is changed in place, so it is no output: only the small result travels back.
    live.live_frame(gpu(on_frame), [session, model_key, precision, smoothing], [live],
                    concurrency_id="webcam", concurrency_limit=limits.webcam_streams + 1, show_progress="hidden",
                    api_visibility="private", trigger_mode="multiple", queue=True)
    live.live_stop(on_stop, [session], None, **limits.light_event())
    download.click(on_download, [session], [results], **limits.light_event())
    frozen_event = freeze.click(gpu(files_out(_freeze)), [session, model_key],
                                [frozen, frozen_summary, frozen_bars, faces, frozen_json, frozen_result, subject,
                                 frozen_section],
                                show_progress_on=[frozen], **limits.model_event())
    panel.explain_after(frozen_event)
    picked = faces.input(files_out(returning(FaceChoice, select_face)), [frozen_result, faces], [frozen, subject], **limits.light_event())
    panel.explain_after(picked)
    clicked = frozen.select(files_out(returning(FaceClick, on_face_click)), [frozen_result], [faces, frozen, subject], **limits.light_event())
    panel.explain_after(clicked)
    return {"live": live, "session": session, "precision": precision, "freeze": freeze, "download": download,
            "results": results, "frozen": frozen, "panel": panel, "slots": slots}

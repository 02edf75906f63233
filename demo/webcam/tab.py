"""Webcam tab: the browser's own camera preview with labels drawn over it live; freeze a frame to
explain it; download the session's results.

The browser shows its own camera preview and draws what comes back (boxes, labels,
probabilities) over it, so only a downscaled JPEG goes up and a few hundred bytes come down per
frame. Frames travel by the live view's server function (``demo.webcam.live_channel`` says why), and
``demo.webcam.live_tracking`` follows the faces.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from poster.errors import ImageError

from . import precision as precisions
from ..ui import render
from ..serving.camera_slots import CameraSlots, Claim
from ..serving.clients import client_address
from ..ui.explain_panel import ExplainPanel, build_explain_panel
from ..serving.files import files_out
from ..serving.gpu import gpu
from ..ui.messages import friendly, sentence
from ..ui.photo_result import (FaceChoice, FaceClick, PhotoResult, Subject, empty_view, find_faces, on_face_click,
                               photo_view, select_face)
from ..serving.limits import Limits
from .live_channel import LiveChannels
from .live_page import LIVE_CSS, LIVE_HTML, live_js
from .live_tracking import FRAME_MAX_SIDE, LiveSession, LiveSettings, decode_frame, process_frame, too_small
from ..ui.outputs import bound, outputs_of, returning
from ..serving.store import ModelStore
from .record import results_file

log = logging.getLogger("demo")

@dataclass
class LiveView:
    """What one streamed frame sends back (the result, drawn by ``webcam_live.js``), or what the Start
    event sends (the frame channel's token), as JSON text."""

    live: str


@dataclass
class StartView:
    """What the Start event sends: the frame channel's token for the page, and the visitor's
    ``LiveSession`` for their Gradio session (made here, by the first Start)."""

    live: str
    session: LiveSession


@dataclass
class FrozenView:
    """The newest frame, analyzed like a photo."""

    frozen: np.ndarray | None
    frozen_summary: str
    frozen_bars: str
    faces: dict  # the face picker
    frozen_json: list
    frozen_result: PhotoResult | None
    subject: Subject | None
    frozen_section: dict


@dataclass
class ResultsView:
    """The session's results file, shown once there is one."""

    results: dict


@dataclass
class WebcamTab:
    """The Webcam tab's components."""

    live: gr.HTML
    session: gr.State
    precision: gr.Radio
    smoothing: gr.Slider
    freeze: gr.Button
    download: gr.Button
    results: gr.File
    frozen_section: gr.Column
    frozen: gr.Image
    frozen_summary: gr.HTML
    faces: gr.Radio
    frozen_bars: gr.HTML
    frozen_json: gr.State
    frozen_result: gr.State
    subject: gr.State
    panel: ExplainPanel
    slots: CameraSlots


# --- handlers -------------------------------------------------------------------------------

def start_stream(session: LiveSession | None, model_key: str | None, precision: str | None, smoothing: Any, *,
                 channels: LiveChannels, visitor: str) -> StartView:
    """The visitor pressed Start: their session (made now, the first time) opens a frame channel and
    the page gets its token."""
    # A Gradio session gets its LiveSession here, not when it is made: a session that never starts
    # the camera (a made-up session hash, say) keeps none.
    session = session if isinstance(session, LiveSession) else LiveSession()
    update_settings(session, model_key, precision, smoothing)
    token = channels.open(session, visitor)
    return StartView(json.dumps({"status": "started", "token": token, "opened": round(time.time(), 3)}), session)


def update_settings(session: LiveSession | None, model_key: str | None, precision: str | None,
                    smoothing: Any) -> None:
    """The page's checkpoint, precision or smoothing changed: the stream uses them from the next frame."""
    if isinstance(session, LiveSession):
        session.settings = LiveSettings(model_key, precision or "", _weight(smoothing))


def send_frame(payload: Any, *, channels: LiveChannels, store: ModelStore, slots: CameraSlots) -> str:
    """One frame from the page's server function (``{"token", "frame": data URL, "t"}``) -> its result as
    JSON text. A payload without the token of an open session is answered, never processed."""
    session = channels.find(payload.get("token") if isinstance(payload, dict) else None)
    if session is None:
        return json.dumps({"status": "closed", "message": "This camera session is closed (the page was reloaded "
                                                          "or left the server); press Start camera."})
    wanted = session.settings
    return live_frame(payload, session, wanted.model_key, wanted.precision, wanted.smoothing, store=store,
                      slots=slots, visitor=session.visitor).live


def live_frame(data: Any, session: LiveSession | None, model_key: str | None, precision: str | None,
               smoothing: Any, *, store: ModelStore, slots: CameraSlots, visitor: str) -> LiveView:
    """One frame (``{"frame": data URL, "t": capture time}``) -> its result for the page.
    ``session`` is changed in place. Never raises: every problem is a message in the result and
    the stream goes on."""
    session = session if isinstance(session, LiveSession) else LiveSession()
    payload = data if isinstance(data, dict) else {"frame": data}
    sent_at = payload.get("t")
    result = _answer(payload.get("frame"), session, model_key, precision, smoothing, store, slots, visitor)
    if isinstance(sent_at, (int, float)) and not isinstance(sent_at, bool):
        result["t"] = sent_at  # the page's capture time, echoed so it can tell the result's age
    return LiveView(json.dumps(result))


def _answer(frame: Any, session: LiveSession, model_key: str | None, precision: str | None, smoothing: Any,
            store: ModelStore, slots: CameraSlots, visitor: str) -> dict:
    claim = slots.claim(visitor)
    if not claim.granted:
        return _not_granted(claim, slots)
    with slots.processing(visitor) as free:
        if not free:
            return {"status": "busy", "message": "the previous frame is still being processed"}
        try:
            image = decode_frame(frame)
            small = too_small(image)
            if small:
                return {"status": "ok", "faces": [], "message": small, "width": image.shape[1],
                        "height": image.shape[0], "classes": list(session.class_names)}
            return process_frame(render.fit(image, FRAME_MAX_SIDE), session, model_key or store.default_key(),
                                 precision or "", store, _weight(smoothing))
        except ImageError as exc:
            return {"status": "error", "message": sentence(str(exc))}
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end the stream
            log.exception("webcam frame failed")
            return {"status": "error", "message": f"Processing the frame failed ({type(exc).__name__})"}


def _weight(smoothing: Any) -> float:
    try:
        return float(min(max(float(smoothing), 0.0), 0.95))
    except (TypeError, ValueError):
        return LiveSettings.smoothing


def _not_granted(claim: Claim, slots: CameraSlots) -> dict:
    if claim.state == "waiting":
        ahead = "" if claim.position <= 1 else f" ({claim.position - 1} ahead of you)"
        return {"status": "waiting", "waited": round(claim.waited, 1), "position": claim.position,
                "expected": round(claim.expected), "message": f"waiting for the camera slot, {claim.waited:.0f} s"
                f"{ahead}; your turn in at most {claim.expected:.0f} s"}
    if claim.state == "full":
        return {"status": "waiting", "waited": 0.0, "position": claim.position,
                "message": f"{claim.position - 1} visitors are waiting for the camera already; try again in a few minutes"}
    if claim.state == "ended":
        minutes = slots.session_seconds / 60
        return {"status": "ended", "message": f"The camera session ended after {minutes:g} minutes so others get "
                                              "a turn; press Start to continue."}
    return {"status": "busy", "message": "the previous frame is still being processed"}


def stop_stream(session: LiveSession | None, *, slots: CameraSlots, visitor: str,
                channels: LiveChannels | None = None) -> None:
    """The visitor pressed Stop (or left): free their camera slot now and close their frame channel
    (Start opens a new one); tracks start afresh."""
    slots.release(visitor)
    if isinstance(session, LiveSession):
        session.tracks, session.detected_last = [], False
        if channels is not None:
            channels.close(session)


@friendly("Freezing the frame")
def freeze_frame(session: LiveSession | None, model_key: str | None, store: ModelStore) -> FrozenView:
    """The newest streamed frame, analyzed like a photo."""
    if not isinstance(session, LiveSession) or session.last_frame is None:
        view = empty_view(render.notice("Start the camera first; the newest frame is frozen.", "info"))
    else:
        view = photo_view(find_faces(session.last_frame.copy(), model_key, store))
    return FrozenView(view.annotated, view.summary, view.bars, view.faces, view.as_json, view.result, view.subject,
                      frozen_section=gr.update(visible=True))


def download_results(session: LiveSession | None) -> ResultsView:
    """The session's results as a fresh CSV file (hidden while there is nothing to download)."""
    path = results_file(session)
    return ResultsView(gr.update(value=path, visible=path is not None))


def _visitor(request: gr.Request | None) -> str:
    # Camera turns go by client address: new session hashes do not buy more places in line.
    return client_address(request)


# --- the tab --------------------------------------------------------------------------------

def build_webcam_tab(model_key: gr.State, store: ModelStore, limits: Limits) -> WebcamTab:
    slots = CameraSlots(limits.webcam_streams, limits.webcam_seconds, max_waiting=limits.camera_waiting)
    on_gpu = store.on_gpu
    choices = precisions.choices(on_gpu)
    shared = "" if limits.webcam_streams > 1 else " One camera is served at a time; others wait for their turn."
    gr.Markdown(
        f"Press **Start camera** and allow the camera. Your picture stays in your browser at full rate; a small "
        f"copy of the newest frame goes to the server whenever the previous answer is back, and the faces found "
        f"are drawn over the picture. Labels are averaged over recent frames of the same face so they do not "
        f"flicker. A session lasts {limits.webcam_seconds // 60} minutes.{shared}")
    session = gr.State(None)  # the visitor's LiveSession, from their first Start (start_stream)
    frozen_result = gr.State(None)
    frozen_json = gr.State([])
    subject = gr.State(None)
    channels = LiveChannels()

    def frame(payload: Any) -> str:  # the page calls it as server.frame(...)
        return send_frame(payload, channels=channels, store=store, slots=slots)

    live = gr.HTML("", html_template=LIVE_HTML, css_template=LIVE_CSS, js_on_load=live_js(),
                   server_functions=[gpu(frame)], elem_id="webcam-live")
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
        panel = build_explain_panel(subject, store, limits, "webcam")
    tab = WebcamTab(live, session, precision, smoothing, freeze, download, results, frozen_section, frozen,
                    frozen_summary, faces, frozen_bars, frozen_json, frozen_result, subject, panel, slots)

    def on_start(session, model_key, precision, smoothing, request: gr.Request):
        return start_stream(session, model_key, precision, smoothing, channels=channels, visitor=_visitor(request))

    def on_stop(session, request: gr.Request):
        stop_stream(session, slots=slots, visitor=_visitor(request), channels=channels)

    light = limits.light_event()
    settings = [session, model_key, precision, smoothing]
    live.live_start(returning(StartView, on_start), settings, outputs_of(StartView, tab), **light)
    live.live_stop(on_stop, [session], None, **light)
    # Once made, the session is changed in place, so these events have it as no output.
    for control in (precision, smoothing, model_key):
        control.change(update_settings, settings, None, **light)
    download.click(returning(ResultsView, download_results), [session], outputs_of(ResultsView, tab), **light)
    freeze_event = gpu(files_out(returning(FrozenView, bound(freeze_frame, store=store))))
    frozen_event = freeze.click(freeze_event, [session, model_key], outputs_of(FrozenView, tab),
                                show_progress_on=[frozen], **limits.model_event())
    panel.explain_after(frozen_event)
    picked = faces.input(files_out(returning(FaceChoice, select_face)), [frozen_result, faces], [frozen, subject],
                         **light)
    panel.explain_after(picked)
    clicked = frozen.select(files_out(returning(FaceClick, on_face_click)), [frozen_result], [faces, frozen, subject],
                            **light)
    panel.explain_after(clicked)
    return tab

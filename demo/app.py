"""The whole app: one ``gr.Blocks`` from one builder per tab, the wiring between tabs, and the
launch settings.

Every tab builds its own events; what crosses tabs is wired here: a checkpoint switch updates the
header, the missing-checkpoint banner, the Model tab's facts and picker and re-analyzes the photo;
the page's load chain; the end of a visitor's session.
"""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import gradio as gr
from starlette.middleware import Middleware

from .ui import render
from .ui.download_row import build_download_row
from .explorer.tab import RunListView, build_explorer_tab, run_pickers_on_load
from .serving.clients import SessionBook, cap_queue_per_client, sweep_unused_uploads_every, upload_ledger
from .serving.files import files_out
from .serving.gpu import gpu
from .serving.hosting import GuardedBlocks, RequestLimits
from .serving.limits import Limits, limits_for, max_image_bytes, max_upload_bytes
from .model.tab import banner, build_model_tab, checkpoint_dropdown, header_line, model_facts
from .ui.outputs import bound, outputs_of, returning, unchanged
from .ui.photo_result import PhotoResult, PhotoView
from .photo.tab import analyze_photo, build_photo_tab
from .serving.store import ModelStore
from .video import build_video_tab
from .webcam.tab import build_webcam_tab

# Gradio deletes what it cached for the app (uploads, outputs) after an hour, checking every 10 minutes.
CACHE_SECONDS = (600, 3600)
# Gradio's queue keeps these many events for its monitoring summary, and redoes the summary every so many.
ANALYTICS_SETTINGS = {"GRADIO_ANALYTICS_MAX_EVENTS": "200", "GRADIO_ANALYTICS_CACHE_FREQUENCY": "100"}

TITLE = "POSTER++ facial expressions"
HEADER = """
<div class="poster-header">
  <h1>POSTER++ facial expression recognition</h1>
  <p>Find every face in a photo or your webcam, read its expression with POSTER++ (Mao et al. 2023, state of the art on
  RAF-DB, AffectNet and CAER-S) or its predecessors POSTER (2022) and ARM (2021), see <i>why</i> with Grad-CAM and
  attention maps, compare them on one face, and browse where each model goes wrong.
  A research demo: <b>not for decisions about people</b> (see the Model tab).</p>
</div>
"""
FOOTER = ('<div class="poster-footer">POSTER++: Mao et al., <i>POSTER++: A simpler and stronger facial expression '
          'recognition network</i>, 2023 · POSTER: Zheng et al., 2022 · ARM: Shi and Zhu, 2021 · faces detected with MTCNN · '
          'nothing you upload is stored.</div>')


def theme() -> gr.themes.Base:
    # System fonts only: the page must not wait for a font server.
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="sky", neutral_hue="slate",
                          font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
                          font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])


def _on_load(model_key, store: ModelStore):
    """A new visitor starts on the default checkpoint (or none)."""
    return model_key or store.default_key()


@dataclass
class ModelViews:
    """What shows the visitor's checkpoint outside the Model tab's own events."""

    header: dict
    missing_row: dict
    missing_text: str
    facts: str
    choice: dict


@dataclass
class Reanalysis(PhotoView):
    """The photo analyzed again with the new checkpoint, and the counter that tells the panel to explain it."""

    rerun: int | dict


def _refresh_model_views(model_key: str | None, uploads: list[str], store: ModelStore) -> ModelViews:
    row, message = banner(model_key)
    header = header_line(model_key, store)
    return ModelViews(header=gr.update(value=header, visible=bool(header)), missing_row=row, missing_text=message,
                      facts=model_facts(model_key, store), choice=checkpoint_dropdown(model_key, uploads, store))


def _reanalyze(photo, result: PhotoResult | None, model_key: str | None, rerun: int,
               store: ModelStore) -> Reanalysis:
    """Run the visitor's photo again after they switch checkpoints (and only then: when the page
    opens, the key is set while a first photo may already be on its way)."""
    if photo is None or result is None or result.model_key == model_key:
        return unchanged(Reanalysis)
    view = analyze_photo(photo, model_key, store)
    return Reanalysis(**vars(view), rerun=rerun + 1)


def build_demo(store: ModelStore | None = None, limits: Limits | None = None) -> gr.Blocks:
    """Build the app around ``store``, the one model store every tab uses (a new one by default)."""
    store = store if store is not None else ModelStore()
    limits = limits or limits_for(store.on_gpu)
    with GuardedBlocks(title=TITLE, delete_cache=CACHE_SECONDS) as demo:
        model_key = gr.State(None)   # this visitor's checkpoint
        # This visitor's uploaded checkpoints; they go with the session (and with its state).
        uploads = gr.State([], delete_callback=store.forget_uploads)
        gr.HTML(HEADER)
        header = gr.HTML(elem_id="active-checkpoint")
        with gr.Row(visible=False, variant="panel", elem_id="missing-banner") as missing_row:
            with gr.Column():
                missing_text = gr.HTML()
                build_download_row(model_key, store, limits, "banner")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Photo", id="photo"):
                photo = build_photo_tab(model_key, store, limits)
            with gr.Tab("Webcam", id="webcam"):
                build_webcam_tab(model_key, store, limits)
            with gr.Tab("Video", id="video"):
                build_video_tab(model_key, store, limits)
            with gr.Tab("Explorer", id="explorer"):
                explorer = build_explorer_tab(model_key, store, limits, uploads)
            with gr.Tab("Model", id="model"):
                model = build_model_tab(model_key, uploads, store, limits)
        gr.HTML(FOOTER)

        light = limits.light_event()
        model_views = outputs_of(ModelViews, {"header": header, "missing_row": missing_row,
                                              "missing_text": missing_text, "facts": model.facts,
                                              "choice": model.choice})
        refresh = returning(ModelViews, bound(_refresh_model_views, store=store))
        model_key.change(refresh, [model_key, uploads], model_views, **limits.model_event())
        load = demo.load(bound(_on_load, store=store), [model_key], [model_key], **light)
        # The State's change event does not fire when a visitor starts without a checkpoint (None stays None).
        load.then(refresh, [model_key, uploads], model_views, **light)
        # Explorer runs are listed when the page opens.
        load.then(returning(RunListView, run_pickers_on_load), None, outputs_of(RunListView, explorer), **light)
        # A visitor who switches checkpoints sees the photo again with the new one.
        rerun = gr.State(0)  # bumped when a checkpoint switch re-analyzed the photo
        model_key.change(gpu(files_out(returning(Reanalysis, bound(_reanalyze, store=store)))),
                         [photo.photo, photo.result, model_key, rerun],
                         [*outputs_of(PhotoView, photo), rerun], preprocess=False, show_progress="hidden",
                         **limits.model_event())
        photo.panel.explain_when_changed(rerun)
        demo.unload(_session_ended(demo, store))
    # After every event Gradio summarizes up to 10,000 past events with pandas, for a monitoring page
    # this app does not open: about 20 ms per webcam frame once a stream has run for a quarter hour.
    for name, value in ANALYTICS_SETTINGS.items():
        os.environ.setdefault(name, value)
    demo.queue(default_concurrency_limit=limits.light_concurrency, max_size=limits.queue_size)
    sweep_unused_uploads_every(min(60.0, max(1.0, upload_ledger().unused_seconds / 2)))
    sessions = SessionBook(limits.sessions_per_address, limits.max_sessions, end=_end_session(demo, store))
    cap_queue_per_client(demo, limits.session_waiting, sessions)
    return demo


def _session_ended(demo: GuardedBlocks, store: ModelStore):
    def on_unload(request: gr.Request) -> None:
        """A visitor closed or reloaded the page: their uploads (photos, checkpoints) go."""
        session = getattr(request, "session_hash", None)
        store.forget_session(session)
        demo.session_files.end(session)

    return on_unload


def _end_session(demo: GuardedBlocks, store: ModelStore):
    def end(session: str) -> None:
        """A client opened more sessions than it may keep: its least recently active one goes, state and all."""
        store.forget_session(session)
        demo.session_files.end(session)
        demo.state_holder.end(session)  # runs the states' delete callbacks (uploaded checkpoints)

    return end


def launch_kwargs(store: ModelStore, limits: Limits | None = None) -> dict:
    """``demo.launch`` settings shared by ``app.py`` and the tests, for an app built around ``store``."""
    limits = limits or limits_for(store.on_gpu)
    # Uvicorn takes X-Forwarded-For from any peer on loopback as the client's address; the app decides
    # itself whom to believe (POSTER_TRUSTED_PROXY, see demo.serving.clients), so uvicorn believes nobody.
    os.environ.setdefault("FORWARDED_ALLOW_IPS", "")
    middleware = Middleware(RequestLimits, max_body=int(limits.max_body_mb * 2**20), max_image=max_image_bytes(),
                            max_file=max_upload_bytes())
    return {"theme": theme(), "css": render.CSS, "max_file_size": max_upload_bytes(), "show_error": False,
            "footer_links": ["api", "gradio"], "app_kwargs": {"middleware": [middleware]}}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served_on_loopback(store: ModelStore) -> Iterator[str]:
    """The app with ``store`` on 127.0.0.1 (a free port) for the duration of the block; yields its URL.

    For tests and benchmarks that talk to a real server; the uploads this server took are deleted with it.
    """
    with served_demo(store) as (_, url):
        yield url


@contextmanager
def served_demo(store: ModelStore) -> Iterator[tuple[gr.Blocks, str]]:
    """As ``served_on_loopback``, yielding the served app too (tests look into its sessions)."""
    port = free_port()
    app = build_demo(store)
    try:
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_kwargs(store))
        yield app, f"http://127.0.0.1:{port}/"
    finally:
        app.close()
        store.forget_all_uploads()


__all__ = ["build_demo", "free_port", "launch_kwargs", "render", "served_demo", "served_on_loopback"]

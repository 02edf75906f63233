"""Model tab: the active checkpoint, switching, uploading and downloading, and the model card; and
the checkpoint header and banner the page shows above every tab.

A checkpoint that fails to load, upload or download leaves the visitor's active checkpoint as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Sequence

import gradio as gr

from poster.errors import CheckpointError
from poster.weights.checkpoints import count_parameters
from poster.weights.registry import ARCHITECTURES, list_weights

from ..ui import render
from ..ui.download_row import DownloadRow, build_download_row
from ..serving.files import discard_upload, uploaded_path
from ..ui.messages import friendly, quote, sentence
from ..serving.limits import Limits, max_upload_bytes
from .cards import dataset_title, model_card
from ..ui.outputs import bound, outputs_of, returning
from ..serving.store import ModelStore, missing_checkpoint_message
from ..serving.uploads import UPLOAD_PREFIX

UPLOAD_TYPES = [".pth", ".pt", ".tar", ".safetensors"]


@dataclass
class SwitchView:
    """After a switch: the visitor's checkpoint (the old one when the new one fails) and why."""

    model_key: str | None
    switch_status: str


@dataclass
class UploadView:
    """After an upload: the visitor's checkpoint, their uploads still kept, and what happened."""

    model_key: str | None
    uploads: list[str]
    upload_status: str


@dataclass
class ModelTab:
    """The Model tab's components (``facts`` and ``choice`` follow the visitor's checkpoint)."""

    model_key: gr.State
    uploads: gr.State
    facts: gr.HTML
    choice: gr.Dropdown
    switch_status: gr.HTML
    upload: gr.File
    upload_status: gr.HTML
    download: DownloadRow


# --- what the page shows about the visitor's checkpoint ---------------------------------------

def model_facts(model_key: str | None, store: ModelStore) -> str:
    """HTML facts about the visitor's active checkpoint (loads it if needed)."""
    if not model_key:
        return render.notice(f"No checkpoint active. {missing_checkpoint_message()}", "warn")
    predictor, reason = store.try_predictor(model_key)
    if predictor is None:
        return render.notice(f"{store.label(model_key)} could not be loaded: {reason}", "error")
    info = predictor.model.info
    accuracy = f"{info.published_accuracy:.2f} %" if info.published_accuracy is not None else "not published"
    dataset = dataset_title(info.dataset) if info.dataset else "unknown (uploaded file)"
    source = "uploaded file" if model_key.startswith(UPLOAD_PREFIX) else Path(info.source).name
    rows = [
        ("Checkpoint", escape(store.label(model_key))),
        ("Architecture", escape(ARCHITECTURES[info.arch].title)),
        ("Trained on", escape(dataset)),
        ("Colour order", escape(info.preprocessing.colour_order)),
        ("Classes", ", ".join(escape(c) for c in info.class_names)),
        ("Published accuracy", accuracy),
        ("sha256", f"<code>{escape(info.sha256)}</code>"),
        ("File", escape(source)),
        ("Parameters", f"{count_parameters(predictor.model) / 1e6:.1f} M"),
        ("Runs on", "CPU" if store.device == "cpu" else escape(store.device)),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="poster-kv">{body}</table>'


def checkpoint_dropdown(model_key: str | None, uploads: Sequence[str] | None, store: ModelStore) -> dict:
    """The switch dropdown: every checkpoint this visitor can choose, theirs selected."""
    choices = [(f"{c.label} — {c.origin}", c.key) for c in store.choices(tuple(uploads or ()))]
    keys = [k for _, k in choices]
    if model_key and model_key not in keys:
        choices.append((store.label(model_key), model_key))
    return gr.update(choices=choices, value=model_key if model_key else None, interactive=bool(choices))


def header_line(model_key: str | None, store: ModelStore) -> str:
    """The line above the tabs naming the active checkpoint ('' without one: the banner speaks then)."""
    device = "GPU" if store.on_gpu else "CPU"
    if not model_key:
        return ""
    predictor, reason = store.try_predictor(model_key)
    if predictor is None:
        return render.notice(f"{store.label(model_key)}: {reason}", "error")
    info = predictor.model.info
    acc = f", published accuracy {info.published_accuracy:.2f} %" if info.published_accuracy else ""
    return render.notice(f"Active checkpoint: {store.label(model_key)} ({len(info.class_names)} classes{acc}) · "
                         f"running on {device}")


def banner(model_key: str | None) -> tuple[dict, str]:
    """The empty-state row above the tabs -> (its visibility: only while the visitor has no
    checkpoint, its text)."""
    return gr.update(visible=not model_key), render.notice(missing_checkpoint_message(), "warn")


# --- handlers ---------------------------------------------------------------------------------

@friendly("Switching checkpoints")
def switch_checkpoint(new_key: str | None, old_key: str | None, store: ModelStore,
                      uploads: Sequence[str] | None = None) -> SwitchView:
    """Switch to ``new_key`` if it loads: a released checkpoint, or one of the visitor's own
    ``uploads``; anything else keeps ``old_key``."""
    if not new_key or new_key == old_key:
        return SwitchView(old_key, "")
    known = {w.key for w in list_weights()} | {c.key for c in store.choices(tuple(uploads or ()))}
    if new_key not in known:
        return SwitchView(old_key, render.notice(f"{quote(new_key, 80)} is not a checkpoint you can choose", "error"))
    predictor, reason = store.try_predictor(new_key)
    if predictor is None:
        gr.Warning(sentence(reason))
        return SwitchView(old_key, render.notice(reason, "error"))
    return SwitchView(new_key, render.notice(f"Switched to {store.label(new_key)}."))


@friendly("Uploading the checkpoint")
def upload_checkpoint(file: Any, model_key: str | None, uploads: Sequence[str] | None, store: ModelStore,
                      owner: str = "") -> UploadView:
    """An uploaded checkpoint file becomes the visitor's checkpoint. Bad files leave everything as
    it was and are deleted from Gradio's cache. ``file`` is Gradio's payload (checked with
    ``uploaded_path``) or a path; ``owner`` is the visitor's session."""
    uploads = list(uploads or ())
    if file is None:
        return UploadView(model_key, uploads, "")
    path = uploaded_path(file) if isinstance(file, dict) else Path(getattr(file, "name", file))
    try:
        key = store.add_upload(path, name=path.name, owner=owner)
    except CheckpointError as exc:
        discard_upload(path)  # only ever a file in Gradio's upload cache
        message = sentence(str(exc))
        gr.Warning(message)
        return UploadView(model_key, uploads, render.notice(f"Upload refused: {message}", "error"))
    discard_upload(path)  # the store keeps its own copy
    # The visitor's list keeps only the uploads the store still keeps for them.
    uploads = [k for k in uploads if store.owns(owner, k)] + [key]
    return UploadView(key, uploads, render.notice(f"Loaded {escape(quote(path.name, 120))} safely and switched to it."))


def _upload(file, model_key, uploads, request: gr.Request, store: ModelStore):
    return upload_checkpoint(file, model_key, uploads, store, owner=getattr(request, "session_hash", None) or "")


def _switch(new_key, old_key, uploads, store: ModelStore):
    return switch_checkpoint(new_key, old_key, store, uploads=uploads)


# --- the tab ----------------------------------------------------------------------------------

def build_model_tab(model_key: gr.State, uploads: gr.State, store: ModelStore, limits: Limits) -> ModelTab:
    with gr.Row():
        with gr.Column(scale=3):
            gr.Markdown("### Active checkpoint")
            facts = gr.HTML(elem_id="model-facts")
            choice = gr.Dropdown(label="Switch to an available checkpoint", choices=[], elem_id="model-choice")
            switch_status = gr.HTML()
        with gr.Column(scale=2):
            gr.Markdown("### Add a checkpoint")
            upload = gr.File(label=f"Upload a checkpoint (.pth or .safetensors, up to {max_upload_bytes() // 2**20} MB)",
                             file_types=UPLOAD_TYPES, type="filepath", elem_id="model-upload")
            gr.Markdown("Files are opened with a restricted unpickler that refuses code, checked against "
                        "the layout of POSTER++, POSTER or ARM (told from its keys), and kept for this session only.",
                        elem_classes=["poster-small"])
            upload_status = gr.HTML()
            gr.Markdown("Or download a released checkpoint (verified by its sha256) into the checkpoint folder:")
            download = build_download_row(model_key, store, limits, "model")
    gr.Markdown(model_card())
    tab = ModelTab(model_key, uploads, facts, choice, switch_status, upload, upload_status, download)

    choice.input(returning(SwitchView, bound(_switch, store=store)), [choice, model_key, uploads],
                 outputs_of(SwitchView, tab), show_progress_on=[switch_status], **limits.model_event())
    upload.upload(returning(UploadView, bound(_upload, store=store)), [upload, model_key, uploads],
                  outputs_of(UploadView, tab), concurrency_id="upload", concurrency_limit=1, api_visibility="private")
    return tab


__all__ = ["ModelTab", "SwitchView", "UploadView", "banner", "build_model_tab", "checkpoint_dropdown",
           "header_line", "model_facts", "switch_checkpoint", "upload_checkpoint"]

"""Event handlers of the Model tab and of the checkpoint header and banner shown above every tab.

Plain functions of plain values, like ``demo.handlers``; a checkpoint that fails to load, upload
or download leaves the visitor's active checkpoint as it was.
"""
from __future__ import annotations

import logging
import time
from html import escape
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr

from poster.weights.checkpoints import count_parameters
from poster.errors import CheckpointError, DownloadError
from poster.weights.registry import ARCHITECTURES, checkpoint_weights, dataset_weights

from . import render
from .files import discard_upload, uploaded_path
from .messages import friendly, quote, sentence
from .model_cards import model_card
from .store import UPLOAD_PREFIX, ModelStore, checkpoint_label, get_store, missing_checkpoint_message, registry_weights

log = logging.getLogger("demo")

def model_facts(model_key: str | None, store: ModelStore | None = None) -> str:
    """HTML facts about the visitor's active checkpoint (loads it if needed)."""
    store = store or get_store()
    if not model_key:
        return render.notice(f"No checkpoint active. {missing_checkpoint_message()}", "warn")
    predictor, reason = store.try_predictor(model_key)
    if predictor is None:
        return render.notice(f"{store.label(model_key)} could not be loaded: {reason}", "error")
    info = predictor.model.info
    accuracy = f"{info.published_accuracy:.2f} %" if info.published_accuracy is not None else "not published"
    dataset = _dataset_title(info.dataset) if info.dataset else "unknown (uploaded file)"
    source = "uploaded file" if model_key.startswith(UPLOAD_PREFIX) else Path(info.source).name
    arch = ARCHITECTURES.get(getattr(info, "arch", "poster-v2"))
    colour = getattr(getattr(info, "preprocessing", None), "colour_order", "RGB")
    rows = [
        ("Checkpoint", escape(store.label(model_key))),
        ("Architecture", escape(arch.title if arch else str(info.arch))),
        ("Trained on", escape(dataset)),
        ("Colour order", escape(colour)),
        ("Classes", ", ".join(escape(c) for c in info.class_names)),
        ("Published accuracy", accuracy),
        ("sha256", f"<code>{escape(info.sha256)}</code>"),
        ("File", escape(source)),
        ("Parameters", f"{count_parameters(predictor.model) / 1e6:.1f} M"),
        ("Runs on", "CPU" if store.device == "cpu" else escape(store.device)),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="poster-kv">{body}</table>'


def _dataset_title(key: str) -> str:
    try:
        return dataset_weights(key).title
    except KeyError:
        return key


def checkpoint_dropdown(model_key: str | None, uploads: Sequence[str] | None, store: ModelStore | None = None) -> dict:
    store = store or get_store()
    choices = [(f"{c.label} — {c.origin}", c.key) for c in store.choices(tuple(uploads or ()))]
    keys = [k for _, k in choices]
    if model_key and model_key not in keys:
        choices.append((store.label(model_key), model_key))
    return gr.update(choices=choices, value=model_key if model_key else None, interactive=bool(choices))


def header_line(model_key: str | None, store: ModelStore | None = None) -> str:
    store = store or get_store()
    device = "GPU" if store.on_gpu else "CPU"
    if not model_key:
        return ""  # the empty-state banner says what is missing
    predictor, reason = store.try_predictor(model_key)
    if predictor is None:
        return render.notice(f"{store.label(model_key)}: {reason}", "error")
    info = predictor.model.info
    acc = f", published accuracy {info.published_accuracy:.2f} %" if info.published_accuracy else ""
    return render.notice(f"Active checkpoint: {store.label(model_key)} ({len(info.class_names)} classes{acc}) · "
                         f"running on {device}")


@friendly("Switching checkpoints")
def switch_checkpoint(new_key: str | None, old_key: str | None, store: ModelStore | None = None,
                      uploads: Sequence[str] | None = None):
    """-> (the visitor's checkpoint key, status line). A checkpoint that fails to load is not kept;
    dataset checkpoints and the visitor's choices can be chosen, their own uploads (``uploads``)
    among them."""
    store = store or get_store()
    if not new_key or new_key == old_key:
        return old_key, ""
    known = {w.key for w in checkpoint_weights()} | {c.key for c in store.choices(tuple(uploads or ()))}
    if new_key not in known:
        message = f"{quote(new_key, 80)} is not a checkpoint you can choose"
        return old_key, render.notice(message, "error")
    predictor, reason = store.try_predictor(new_key)
    if predictor is None:
        gr.Warning(sentence(reason))
        return old_key, render.notice(reason, "error")
    return new_key, render.notice(f"Switched to {store.label(new_key)}.")


@friendly("Uploading the checkpoint")
def upload_checkpoint(file: Any, model_key: str | None, uploads: Sequence[str] | None,
                      store: ModelStore | None = None, owner: str = ""):
    """An uploaded checkpoint file -> (key, uploads, status line). Bad files leave everything as
    it was and are deleted from Gradio's cache. ``file`` is Gradio's payload (checked with
    ``uploaded_path``) or a path; ``owner`` is the visitor's session."""
    store = store or get_store()
    uploads = list(uploads or ())
    if file is None:
        return model_key, uploads, ""
    if isinstance(file, dict):
        path = uploaded_path(file)
    else:
        path = Path(getattr(file, "name", file))
    name = path.name
    try:
        key = store.add_upload(path, name=name, owner=owner)
    except CheckpointError as exc:
        discard_upload(path)  # only ever a file in Gradio's upload cache
        message = sentence(str(exc))
        gr.Warning(message)
        return model_key, uploads, render.notice(f"Upload refused: {message}", "error")
    discard_upload(path)  # the store keeps its own copy
    # The visitor's list keeps only the uploads the store still keeps for them.
    uploads = [k for k in uploads if store.owns(owner, k)] + [key]
    return key, uploads, render.notice(f"Loaded {escape(quote(name, 120))} safely and switched to it.")


def download_checkpoint(dataset_key: str | None, model_key: str | None,
                        progress: Callable | None = None, store: ModelStore | None = None,
                        downloader: Callable | None = None):
    """Download a dataset checkpoint (verified) and switch to it -> (key, status line)."""
    store = store or get_store()
    if not dataset_key:
        return model_key, render.notice("Pick a dataset checkpoint to download.", "info")
    if downloader is None:
        from poster.weights.download import download as downloader
    weights = registry_weights(dataset_key)
    if weights is None:
        return model_key, render.notice(f"{quote(dataset_key, 80)} is not a released checkpoint", "error")
    label = checkpoint_label(weights)
    started = time.perf_counter()

    def on_progress(done: int, total: int | None) -> None:
        if progress is None:
            return
        speed = done / max(time.perf_counter() - started, 1e-6) / 2**20
        if total:
            progress(done / total, desc=f"{label}: {done / 2**20:.0f} / {total / 2**20:.0f} MB, {speed:.1f} MB/s")
        else:
            progress(None, desc=f"{label}: {done / 2**20:.0f} MB, {speed:.1f} MB/s")

    try:
        path = downloader(weights.key, progress=on_progress, quiet=True)
    except (DownloadError, CheckpointError) as exc:
        message = sentence(str(exc))
        gr.Warning(message[:300])
        return model_key, render.notice(f"Download failed: {message}", "error")
    except Exception as exc:  # noqa: BLE001
        log.exception("download failed")
        return model_key, render.notice(f"Download failed ({type(exc).__name__}); try again later.", "error")
    predictor, reason = store.try_predictor(weights.key)
    if predictor is None:
        return model_key, render.notice(f"Downloaded to {path}, but it does not load: {reason}", "error")
    return weights.key, render.notice(f"Downloaded {label} to {path} and switched to it.")


def banner(model_key: str | None) -> tuple[dict, str]:
    """The empty-state row above the tabs: visible only while the visitor has no checkpoint."""
    return gr.update(visible=not model_key), render.notice(missing_checkpoint_message(), "warn")

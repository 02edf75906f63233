"""The checkpoint download row: pick a released checkpoint, download it (verified) and use it.

Shown in the Model tab and in the banner above the tabs while a visitor has no checkpoint.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from poster.errors import CheckpointError, DownloadError
from poster.models.poster_v2 import PosterV2Weights
from poster.weights.registry import list_weights

from . import render
from .messages import quote, sentence
from ..serving.limits import Limits
from .outputs import bound, outputs_of, returning
from ..serving.store import ModelStore, checkpoint_label, registry_weights

log = logging.getLogger("demo")


@dataclass
class DownloadView:
    """After a download: the visitor's checkpoint (the new one, or the old one on failure) and why."""

    model_key: str | None
    status: str


@dataclass
class DownloadRow:
    """The row's components and the visitor's checkpoint it sets."""

    model_key: gr.State
    dataset: gr.Dropdown
    button: gr.Button
    status: gr.HTML


def dataset_choices() -> list[tuple[str, str]]:
    """Every released checkpoint, grouped by architecture, with its published accuracy."""
    return [(f"{checkpoint_label(w)} ({w.published_accuracy:.2f} %)", w.key) for w in list_weights()]


def download_checkpoint(dataset_key: str | None, model_key: str | None, store: ModelStore,
                        progress: Callable | None = None, downloader: Callable | None = None) -> DownloadView:
    """Download a released checkpoint (verified by its sha256) into ``store``'s reach and switch to it."""
    if not dataset_key:
        return DownloadView(model_key, render.notice("Pick a dataset checkpoint to download.", "info"))
    if downloader is None:
        from poster.weights.download import download as downloader
    weights = registry_weights(dataset_key)
    if weights is None:
        return DownloadView(model_key, render.notice(f"{quote(dataset_key, 80)} is not a released checkpoint", "error"))
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
        return DownloadView(model_key, render.notice(f"Download failed: {message}", "error"))
    except Exception as exc:  # noqa: BLE001 - a failed download must leave the visitor where they were
        log.exception("download failed")
        return DownloadView(model_key, render.notice(f"Download failed ({type(exc).__name__}); try again later.",
                                                     "error"))
    predictor, reason = store.try_predictor(weights.key)
    if predictor is None:
        return DownloadView(model_key, render.notice(f"Downloaded to {path}, but it does not load: {reason}", "error"))
    return DownloadView(weights.key, render.notice(f"Downloaded {label} to {path} and switched to it."))


def _download(dataset_key, model_key, store: ModelStore, progress=gr.Progress()):
    return download_checkpoint(dataset_key, model_key, store, progress=progress)


def build_download_row(model_key: gr.State, store: ModelStore, limits: Limits, prefix: str) -> DownloadRow:
    """Dataset picker + download button + status; ``prefix`` keeps the element ids of two rows apart."""
    with gr.Row():
        dataset = gr.Dropdown(dataset_choices(), value=PosterV2Weights.RAF_DB.value.key, label="Released checkpoint",
                              scale=3, elem_id=f"{prefix}-dataset")
        with gr.Column(scale=1, min_width=190):
            button = gr.Button("Download and use", variant="primary", elem_id=f"{prefix}-download")
    status = gr.HTML()
    row = DownloadRow(model_key, dataset, button, status)
    # One download at a time: they share the checkpoint folder and the network.
    button.click(returning(DownloadView, bound(_download, store=store)), [dataset, model_key], outputs_of(DownloadView, row),
                 concurrency_id="download", concurrency_limit=1, api_visibility="private")
    return row


__all__ = ["DownloadRow", "DownloadView", "build_download_row", "dataset_choices", "download_checkpoint"]

"""Model tab: the active checkpoint, switching, uploading and downloading, and the model card."""
from __future__ import annotations

import gradio as gr

from poster.weights.registry import PosterV2Weights, checkpoint_weights

from .model_handlers import (banner, checkpoint_dropdown, download_checkpoint, header_line, model_card,  # noqa: F401
                             model_facts, switch_checkpoint, upload_checkpoint)
from .limits import Limits
from .limits import max_upload_bytes
from .store import checkpoint_label

UPLOAD_TYPES = [".pth", ".pt", ".tar", ".safetensors"]


def dataset_choices() -> list[tuple[str, str]]:
    """Every released checkpoint, grouped by architecture, with its published accuracy."""
    return [(f"{checkpoint_label(w)} ({w.published_accuracy:.2f} %)", w.key) for w in checkpoint_weights()]


def _download(dataset_key, model_key, progress=gr.Progress()):
    return download_checkpoint(dataset_key, model_key, progress=progress)


def _upload(file, model_key, uploads, request: gr.Request):
    return upload_checkpoint(file, model_key, uploads, owner=getattr(request, "session_hash", None) or "")


def _switch(new_key, old_key, uploads):
    return switch_checkpoint(new_key, old_key, uploads=uploads)


def build_download_row(model_key: gr.State, limits: Limits, prefix: str) -> dict:
    """Dataset picker + download button + status; used in the Model tab and the empty-state banner."""
    with gr.Row():
        dataset = gr.Dropdown(dataset_choices(), value=PosterV2Weights.RAF_DB.value.key, label="Released checkpoint",
                              scale=3, elem_id=f"{prefix}-dataset")
        with gr.Column(scale=1, min_width=190):
            button = gr.Button("Download and use", variant="primary", elem_id=f"{prefix}-download")
    status = gr.HTML()
    button.click(_download, [dataset, model_key], [model_key, status], concurrency_id="download",
                 concurrency_limit=1, api_visibility="private")
    return {"dataset": dataset, "button": button, "status": status}


def build_model_tab(model_key: gr.State, uploads: gr.State, limits: Limits) -> dict:
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
                        "the layout of POSTER++, POSTER or ARM (told from its keys), and kept for this session only.", elem_classes=["poster-small"])
            upload_status = gr.HTML()
            gr.Markdown("Or download a released checkpoint (verified by its sha256) into the checkpoint folder:")
            download = build_download_row(model_key, limits, "model")
    gr.Markdown(model_card())

    choice.input(_switch, [choice, model_key, uploads], [model_key, switch_status], show_progress_on=[switch_status],
                 **limits.model_event())
    upload.upload(_upload, [upload, model_key, uploads], [model_key, uploads, upload_status],
                  concurrency_id="upload", concurrency_limit=1, api_visibility="private")
    return {"facts": facts, "choice": choice, "upload": upload, "upload_status": upload_status,
            "download": download}

"""The Video tab's components and events."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr


from ..serving.clients import client_address
from ..serving.files import files_out, to_files
from ..serving.gpu import gpu
from ..serving.limits import Limits
from ..serving.store import ModelStore
from ..ui.explain_panel import build_explain_panel
from ..ui.messages import click_point, friendly
from ..ui.outputs import bound, outputs_of, returning, values
from ..ui.photo_result import Subject
from .handlers import (ENV_FPS, ENV_JOBS, ENV_MAX_MB, ENV_MAX_SECONDS, Moment, MomentView, VideoCaps, VideoView,
                       analyze_clip, moment_at, remove_session_folder)
from .views import progress_html


INTRO = ("Upload a video clip (an interview, a lecture, a study session). Every face is found and followed "
         "through the clip, its expression read several times a second; you get the annotated video, a timeline "
         "per face (click it to see that moment, and pick a face there to explain it), a summary per face and "
         "the table as CSV or parquet.")


@dataclass
class FaceSubject:
    subject: Subject | None


@friendly("Analysing the clip")
def _analyze(upload, model_key, folder, request: gr.Request, *, store: ModelStore):
    """The Analyse event: a generator, so Gradio streams each step and Cancel closes it."""
    visitor = client_address(request)  # one clip per client, however many sessions it opens
    for view in analyze_clip(upload, model_key, folder, visitor, store=store):
        yield tuple(to_files(v) for v in values(view))


@friendly("Showing that moment")
def _moment(result, evt: gr.SelectData, *, store: ModelStore) -> MomentView:
    x, _ = click_point(evt.index)
    return moment_at(result, x, store)


def _pick_face(moment: Moment | None, index: int | None, model_key: str | None) -> FaceSubject:
    if moment is None or index is None or index >= len(moment.crops):
        return FaceSubject(subject=None)
    row = moment.rows.iloc[int(index)]
    crop = moment.crops[int(index)]
    return FaceSubject(subject=Subject(crop=crop.image, model_key=model_key, face_crop=crop,
                                       title=f"face {int(row['track'])} at {moment.time:.2f} s"))


def _cancelled() -> str:
    return progress_html("cancelled", 0, None)


def build_video_tab(model_key: gr.State, store: ModelStore, limits: Limits) -> Any:
    """Upload, Analyse / Cancel, progress, annotated video, timeline, moment, summaries, downloads."""
    caps = VideoCaps.from_env(store.on_gpu)
    folder = gr.State(None, delete_callback=remove_session_folder)
    result = gr.State(None)
    moment = gr.State(None)
    subject = gr.State(None)
    gr.Markdown(INTRO)
    gr.Markdown(f"{caps.describe()} (`{ENV_MAX_MB}`, `{ENV_MAX_SECONDS}`, `{ENV_FPS}`, `{ENV_JOBS}`)",
                elem_id="video-caps")
    with gr.Row():
        with gr.Column(scale=5):
            clip = gr.Video(sources=["upload"], label="Video clip", height=320, elem_id="video-input")
            with gr.Row():
                start = gr.Button("Analyse", variant="primary", elem_id="video-start")
                cancel = gr.Button("Cancel", variant="stop", elem_id="video-cancel")
            progress = gr.HTML(elem_id="video-progress")
        with gr.Column(scale=6):
            annotated = gr.Video(label="Annotated video", interactive=False, height=320, elem_id="video-annotated")
    timeline = gr.Image(label="Timeline: one row per face, colour = expression, height = probability (click a moment)",
                        interactive=False, format="png", elem_id="video-timeline")
    with gr.Row():
        with gr.Column(scale=6):
            frame = gr.Image(label="That moment", interactive=False, format="jpeg", height=360, elem_id="video-frame")
            caption = gr.HTML(elem_id="video-moment")
            faces = gr.Radio(label="Face to explain", choices=[], type="index", elem_id="video-faces")
        with gr.Column(scale=5):
            summary = gr.HTML(elem_id="video-summary")
            downloads = gr.File(label="Downloads (CSV, parquet, annotated MP4)", file_count="multiple",
                                interactive=False, elem_id="video-downloads")
    with gr.Accordion("Why this expression? Explanation of the picked face", open=False):
        panel = build_explain_panel(subject, store, limits, "video")

    ui = {"progress": progress, "annotated": annotated, "timeline": timeline, "summary": summary,
          "downloads": downloads, "result": result, "frame": frame, "caption": caption, "faces": faces,
          "moment": moment, "subject": subject, "folder": folder}
    # Clips have their own concurrency group: photos and webcams keep their model slots meanwhile.
    running = start.click(gpu(bound(_analyze, store=store)), [clip, model_key, folder], outputs_of(VideoView, ui), show_progress="hidden",
                          concurrency_id="video", concurrency_limit=caps.jobs, api_visibility="private",
                          trigger_mode="multiple")
    cancel.click(_cancelled, None, [progress], cancels=[running], **limits.light_event())
    timeline.select(files_out(returning(MomentView, bound(_moment, store=store))), [result], outputs_of(MomentView, ui),
                    **limits.model_event())
    picked = faces.input(returning(FaceSubject, _pick_face), [moment, faces, model_key], [subject],
                         **limits.light_event())
    panel.explain_after(picked)
    return ui


__all__ = ["build_video_tab"]

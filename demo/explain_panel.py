"""The explanation panel, built the same way in the Photo, Webcam and Explorer tabs."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from . import render
from .files import files_out
from .gpu import gpu
from .handlers import PANEL_TITLES, PREDICTED, click_point, explain_subject, face_at, friendly, point_attention, select_face
from .limits import Limits


@dataclass
class ExplainPanel:
    subject: gr.State
    explanation: gr.State
    body: gr.Column
    status: gr.HTML
    target: gr.Dropdown
    panels: list[gr.Image]
    crop: gr.Image
    point: gr.Image
    limits: Limits

    @property
    def outputs(self) -> list:
        return [*self.panels, self.crop, self.point, self.explanation, self.status, self.target, self.body]

    def explain_after(self, dependency) -> None:
        """Explain the (new) subject once ``dependency`` has set it; the target resets to predicted."""
        dependency.then(gpu(files_out(_explain_predicted)), [self.subject], self.outputs,
                        show_progress_on=[self.status], **self.limits.model_event())

    def explain_when_changed(self, state: gr.State) -> None:
        """Explain the subject whenever ``state`` changes (a counter bumped by whoever set it)."""
        state.change(gpu(files_out(_explain_predicted)), [self.subject], self.outputs,
                     show_progress_on=[self.status], **self.limits.model_event())


@friendly("Selecting the face")
def on_face_click(result, evt: gr.SelectData):
    """A click on an annotated image selects the face under it (face picker, image, subject)."""
    index = face_at(result, *click_point(evt.index))
    if index is None:
        return gr.update(), gr.update(), None
    image, subject = select_face(result, index)
    return gr.update(value=index), image, subject


def _with_body(outputs: tuple, subject) -> tuple:
    """The panels show once there is a face with an explanation (empty panels look broken)."""
    has_maps = outputs[0] is not None
    status = outputs[7] if subject is not None else HINT
    return (*outputs[:7], status, outputs[8], gr.update(visible=has_maps))


def _explain_predicted(subject):
    return _with_body(explain_subject(subject, PREDICTED), subject)


def _on_target(subject, target):
    return _with_body(explain_subject(subject, target), subject)


@friendly("Showing where the point attends")
def _on_point(explanation, evt: gr.SelectData):
    return point_attention(explanation, *click_point(evt.index))


HINT = render.notice("The explanation of the selected face appears here.")


def build_explain_panel(subject: gr.State, limits: Limits, prefix: str) -> ExplainPanel:
    """Status line, Grad-CAM class picker, the four map panels and the click-a-point view."""
    explanation = gr.State(None)
    status = gr.HTML(HINT, elem_id=f"{prefix}-explain-status")
    with gr.Column(visible=False) as body:
        with gr.Row():
            target = gr.Dropdown(choices=[PREDICTED], value=PREDICTED, label="Grad-CAM explains the class",
                                 info="Grad-CAM maps show what raises this class's score.", scale=1,
                                 elem_id=f"{prefix}-target")
        panels = []
        keys = list(PANEL_TITLES)
        for i in range(0, len(keys), 2):
            with gr.Row():
                for key in keys[i:i + 2]:
                    with gr.Column(min_width=300):
                        gr.HTML(f'<div class="poster-panel-title">{PANEL_TITLES[key]}</div>')
                        panels.append(gr.Image(show_label=False, interactive=False, format="png",
                                               buttons=["download", "fullscreen"], elem_id=f"{prefix}-{key}"))
        with gr.Row():
            with gr.Column(scale=1, min_width=220):
                gr.HTML('<div class="poster-panel-title">Click a point on the face</div>')
                crop = gr.Image(show_label=False, interactive=False, format="png", buttons=[],
                                elem_id=f"{prefix}-crop")
            with gr.Column(scale=2):
                gr.HTML('<div class="poster-panel-title">Where the landmark query at that point attends, '
                        'at the three cross-attention levels</div>')
                point = gr.Image(show_label=False, interactive=False, format="png",
                                 buttons=["download", "fullscreen"], elem_id=f"{prefix}-point")
    panel = ExplainPanel(subject, explanation, body, status, target, panels, crop, point, limits)
    target.input(gpu(files_out(_on_target)), [subject, target], panel.outputs, show_progress_on=[status], **limits.model_event())
    crop.select(files_out(_on_point), [explanation], [crop, point], **limits.light_event())
    return panel

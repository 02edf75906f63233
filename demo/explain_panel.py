"""The explanation panel, built the same way in the Photo, Webcam and Explorer tabs."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

import gradio as gr

from . import render
from .explanation_views import (PANEL_SLOTS, POINT_TITLE, POSTER_V2_TITLES, PanelView, is_model_explanation,
                                notes_html, panel_view)
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
    titles: list[gr.HTML]
    slots: list[gr.Column]
    notes: gr.HTML
    point_row: gr.Row

    @property
    def outputs(self) -> list:
        return [*self.panels, self.crop, self.point, self.explanation, self.status, self.target, self.body,
                *self.titles, *self.slots, self.notes, self.point_row]

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
    """The panels show once there is a face with an explanation (empty panels look broken); each
    slot is titled with what its maps are, and slots the model has nothing for are hidden."""
    has_maps = outputs[0] is not None
    status = outputs[7] if subject is not None else HINT
    explanation = outputs[6]
    if explanation is not None:
        view = panel_view_titles(explanation)
        titles = [gr.update(value=_title(t)) for t in view.titles]
        slots = [gr.update(visible=bool(t)) for t in view.titles]
        notes, clickable = notes_html(view), view.clickable
    else:
        titles, slots, notes, clickable = [gr.update()] * PANEL_SLOTS, [gr.update()] * PANEL_SLOTS, "", True
    return (*outputs[:7], status, outputs[8], gr.update(visible=has_maps), *titles, *slots,
            gr.update(value=notes, visible=bool(notes)), gr.update(visible=clickable))


def _title(text: str) -> str:
    return f'<div class="poster-panel-title">{escape(text)}</div>'


def panel_view_titles(explanation) -> PanelView:
    """The titles and notes of ``explanation``'s panel (images already drawn by the handler)."""
    if not is_model_explanation(explanation):
        return PanelView([None] * PANEL_SLOTS, list(POSTER_V2_TITLES), clickable=True)
    return panel_view(explanation)


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
        panels, titles, slots = [], [], []
        keys = list(PANEL_TITLES)
        for i in range(0, len(keys), 2):
            with gr.Row():
                for key in keys[i:i + 2]:
                    with gr.Column(min_width=300) as slot:
                        titles.append(gr.HTML(_title(PANEL_TITLES[key]), elem_id=f"{prefix}-{key}-title"))
                        panels.append(gr.Image(show_label=False, interactive=False, format="png",
                                               buttons=["download", "fullscreen"], elem_id=f"{prefix}-{key}"))
                    slots.append(slot)
        notes = gr.HTML(visible=False, elem_id=f"{prefix}-explain-notes")
        with gr.Row() as point_row:
            with gr.Column(scale=1, min_width=220):
                gr.HTML('<div class="poster-panel-title">Click a point on the face</div>')
                crop = gr.Image(show_label=False, interactive=False, format="png", buttons=[],
                                elem_id=f"{prefix}-crop")
            with gr.Column(scale=2):
                gr.HTML(_title(POINT_TITLE))
                point = gr.Image(show_label=False, interactive=False, format="png",
                                 buttons=["download", "fullscreen"], elem_id=f"{prefix}-point")
    panel = ExplainPanel(subject, explanation, body, status, target, panels, crop, point, limits, titles, slots,
                         notes, point_row)
    target.input(gpu(files_out(_on_target)), [subject, target], panel.outputs, show_progress_on=[status], **limits.model_event())
    crop.select(files_out(_on_point), [explanation], [crop, point], **limits.light_event())
    return panel

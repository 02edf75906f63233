"""The explanation panel, built the same way in the Photo, Webcam and Explorer tabs.

Whoever sets the panel's subject (a face to explain) asks it to ``explain_after`` that event;
the panel then draws the face's Grad-CAM and attention maps (``explain_subject``), lets the
visitor pick the class Grad-CAM explains, and shows where a clicked point attends
(``point_attention``, where the model's attention queries are positions).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from typing import Any, Sequence

import gradio as gr
import numpy as np

from poster.inference.faces import template
from poster.inference.transforms import model_batch

from . import render
from .explanation_views import PANEL_SLOTS, POINT_TITLE, SLOT_KEYS, SLOT_TITLES, PanelView, notes_html, panel_view
from ..serving.files import files_out
from ..serving.gpu import gpu
from ..serving.limits import Limits
from .messages import click_point, friendly
from .outputs import bound, keep, outputs_of, returning
from .photo_result import Subject, short_reason
from ..serving.store import ModelStore

PREDICTED = "Predicted class"
PANEL_TITLES = dict(zip(SLOT_KEYS, SLOT_TITLES))
HINT = render.notice("The explanation of the selected face appears here.")


@dataclass
class ExplanationView:
    """Everything the panel shows: four map slots (image, title, whether shown), the clickable crop
    and its point-attention panel, the explanation kept for clicks, the status and the class picker."""

    gradcam_image: np.ndarray | None
    gradcam_landmark: np.ndarray | None
    cross_attention: np.ndarray | None
    rollout: np.ndarray | None
    crop: np.ndarray | None
    point: np.ndarray | None
    explanation: Any
    status: str
    target: dict
    body: dict
    gradcam_image_title: dict
    gradcam_landmark_title: dict
    cross_attention_title: dict
    rollout_title: dict
    gradcam_image_slot: dict
    gradcam_landmark_slot: dict
    cross_attention_slot: dict
    rollout_slot: dict
    notes: dict
    point_row: dict

    @property
    def images(self) -> list[np.ndarray | None]:
        return [getattr(self, key) for key in SLOT_KEYS]

    @property
    def titles(self) -> list[dict]:
        return [getattr(self, f"{key}_title") for key in SLOT_KEYS]

    @property
    def slots(self) -> list[dict]:
        return [getattr(self, f"{key}_slot") for key in SLOT_KEYS]


@dataclass
class PointView:
    """The crop with the clicked point marked, and where that point attends."""

    crop: np.ndarray | None
    point: np.ndarray | None


@dataclass
class ExplainPanel:
    """The panel's components other tabs wire: its subject and the events that explain it."""

    subject: gr.State
    store: ModelStore
    status: gr.HTML
    outputs: list  # the components of ``ExplanationView``, in its field order
    limits: Limits

    def explain_after(self, dependency) -> None:
        """Explain the (new) subject once ``dependency`` has set it; the target resets to predicted."""
        dependency.then(gpu(files_out(returning(ExplanationView, bound(_explain_predicted, store=self.store)))),
                        [self.subject],
                        self.outputs, show_progress_on=[self.status], **self.limits.model_event())

    def explain_when_changed(self, state: gr.State) -> None:
        """Explain the subject whenever ``state`` changes (a counter bumped by whoever set it)."""
        state.change(gpu(files_out(returning(ExplanationView, bound(_explain_predicted, store=self.store)))),
                     [self.subject],
                     self.outputs, show_progress_on=[self.status], **self.limits.model_event())


# --- handlers -----------------------------------------------------------------------------

def target_choices(class_names: Sequence[str]) -> list[str]:
    return [PREDICTED, *class_names]


@friendly("Explaining the face")
def explain_subject(subject: Subject | None, target: str | None, store: ModelStore) -> ExplanationView:
    """Face -> its explanation panel. Needs a checkpoint; without one the panel stays hidden and the
    status says why."""
    no_target = gr.update(choices=[PREDICTED], value=PREDICTED)
    if subject is None:
        return _view(None, PointView(None, None), None, HINT, no_target)
    predictor, reason = store.try_predictor(subject.model_key)
    if predictor is None:
        return _view(None, PointView(subject.crop, None), None,
                     render.notice(f"No explanation: {short_reason(reason)}", "warn"), no_target)
    names = predictor.class_names
    target_index = names.index(target) if target in names else None
    explainer = store.explainer(subject.model_key)
    start = time.perf_counter()
    with store.using(subject.model_key, exclusive=True):
        explanation = explainer.explain(model_batch([subject.crop], predictor.model), target=target_index)[0]
    seconds = time.perf_counter() - start
    target_name = names[explanation.target]
    click = " Click a point on the face to see where it looks." if explanation.clickable else ""
    status = render.notice(f"{subject.title} · explaining '{target_name}' with {store.label(subject.model_key)}"
                           f" · {seconds:.1f} s.{click}")
    picker = gr.update(choices=target_choices(names), value=target_name if target_index is not None else PREDICTED)
    return _view(panel_view(explanation), point_attention(explanation, *default_point()), explanation, status, picker)


def _view(layout: PanelView | None, point: PointView, explanation: Any, status: str, target: dict) -> ExplanationView:
    """The panel shows once there is a face with an explanation (empty panels look broken); each
    slot is titled with what its maps are, and slots the model has nothing for are hidden.
    ``layout`` is None where there is nothing to explain."""
    if layout is not None:
        images = layout.images
        titles = [gr.update(value=_title(t)) for t in layout.titles]
        slots = [gr.update(visible=bool(t)) for t in layout.titles]
        notes, clickable = notes_html(layout), layout.clickable
    else:
        images = [None] * PANEL_SLOTS
        titles, slots, notes, clickable = [keep()] * PANEL_SLOTS, [keep()] * PANEL_SLOTS, "", True
    return ExplanationView(
        **dict(zip(SLOT_KEYS, images)), crop=point.crop, point=point.point, explanation=explanation, status=status,
        target=target, body=gr.update(visible=images[0] is not None),
        **{f"{key}_title": title for key, title in zip(SLOT_KEYS, titles)},
        **{f"{key}_slot": slot for key, slot in zip(SLOT_KEYS, slots)},
        notes=gr.update(value=notes, visible=bool(notes)), point_row=gr.update(visible=clickable))


def default_point() -> tuple[float, float]:
    """The nose tip of the alignment template: a sensible first query point."""
    x, y = template(224)[2]
    return float(x), float(y)


def point_attention(explanation: Any, x: float, y: float) -> PointView:
    """Where the query at crop pixel (x, y) attends, at each attention level whose queries are
    positions (an explanation without such attention gets the crop and no map)."""
    if explanation is None:
        return PointView(None, None)
    if not explanation.clickable:
        return PointView(explanation.image, None)
    from explain import render as explain_render

    size = explanation.image.shape[0]
    x = float(min(max(x, 0), size - 1))
    y = float(min(max(y, 0), size - 1))
    return PointView(render.mark_point(explanation.image, (x, y)), explain_render.query_panel(explanation, (x, y)))


def _explain_predicted(subject: Subject | None, store: ModelStore) -> ExplanationView:
    return explain_subject(subject, PREDICTED, store)


@friendly("Showing where the point attends")
def _on_point(explanation: Any, evt: gr.SelectData) -> PointView:
    return point_attention(explanation, *click_point(evt.index))


# --- the component ------------------------------------------------------------------------

def _title(text: str) -> str:
    return f'<div class="poster-panel-title">{escape(text)}</div>'


def build_explain_panel(subject: gr.State, store: ModelStore, limits: Limits, prefix: str) -> ExplainPanel:
    """Status line, Grad-CAM class picker, the four map panels and the click-a-point view."""
    parts: dict[str, Any] = {"explanation": gr.State(None)}
    parts["status"] = gr.HTML(HINT, elem_id=f"{prefix}-explain-status")
    with gr.Column(visible=False) as parts["body"]:
        with gr.Row():
            parts["target"] = gr.Dropdown(choices=[PREDICTED], value=PREDICTED, label="Grad-CAM explains the class",
                                          info="Grad-CAM maps show what raises this class's score.", scale=1,
                                          elem_id=f"{prefix}-target")
        for i in range(0, len(SLOT_KEYS), 2):
            with gr.Row():
                for key in SLOT_KEYS[i:i + 2]:
                    with gr.Column(min_width=300) as parts[f"{key}_slot"]:
                        parts[f"{key}_title"] = gr.HTML(_title(PANEL_TITLES[key]), elem_id=f"{prefix}-{key}-title")
                        parts[key] = gr.Image(show_label=False, interactive=False, format="png",
                                              buttons=["download", "fullscreen"], elem_id=f"{prefix}-{key}")
        parts["notes"] = gr.HTML(visible=False, elem_id=f"{prefix}-explain-notes")
        with gr.Row() as parts["point_row"]:
            with gr.Column(scale=1, min_width=220):
                gr.HTML('<div class="poster-panel-title">Click a point on the face</div>')
                parts["crop"] = gr.Image(show_label=False, interactive=False, format="png", buttons=[],
                                         elem_id=f"{prefix}-crop")
            with gr.Column(scale=2):
                gr.HTML(_title(POINT_TITLE))
                parts["point"] = gr.Image(show_label=False, interactive=False, format="png",
                                          buttons=["download", "fullscreen"], elem_id=f"{prefix}-point")
    panel = ExplainPanel(subject, store, parts["status"], outputs_of(ExplanationView, parts), limits)
    parts["target"].input(gpu(files_out(returning(ExplanationView, bound(explain_subject, store=store)))), [subject, parts["target"]],
                          panel.outputs, show_progress_on=[parts["status"]], **limits.model_event())
    parts["crop"].select(files_out(returning(PointView, _on_point)), [parts["explanation"]],
                         outputs_of(PointView, parts), **limits.light_event())
    return panel

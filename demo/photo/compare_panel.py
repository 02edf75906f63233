"""The "compare every checkpoint" component: every available checkpoint of every architecture on
one face, its probabilities lined up by class name and its Grad-CAM maps in a row each."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Callable, Sequence

import gradio as gr
import numpy as np

from poster.inference.transforms import model_batch
from poster.weights.registry import canonical_class, list_weights

from ..ui import render
from ..ui.explanation_views import gradcam_strip
from ..serving.files import files_out
from ..serving.gpu import gpu
from ..serving.limits import Limits
from ..ui.messages import friendly
from ..ui.outputs import bound, outputs_of, returning
from ..ui.photo_result import Subject
from ..serving.store import ModelStore, checkpoint_label, missing_checkpoint_message

# Order of classes in the side-by-side comparison (canonical names, see poster.weights.registry).
CANONICAL_ORDER = ("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger", "Contempt")

Compared = tuple[str, Sequence[str], np.ndarray]  # checkpoint label, its class names, its probabilities


@dataclass
class CompareView:
    """The comparison: the probability table, one Grad-CAM strip per checkpoint, and a status line."""

    table: str
    gallery: list[tuple[np.ndarray, str]]
    status: str


@dataclass
class CheckpointComparePanel:
    button: gr.Button
    status: gr.HTML
    table: gr.HTML
    gallery: gr.Gallery


@friendly("Comparing checkpoints")
def compare_checkpoints(subject: Subject | None, store: ModelStore,
                        progress: Callable | None = None) -> CompareView:
    """Every available checkpoint of every architecture on the same face. ARM classifies the face
    alone, as everywhere."""
    if subject is None:
        return CompareView("", [], render.notice("Analyze a photo first.", "info"))
    choices = [c for c in store.choices() if c.weights is not None]
    if not choices:
        return CompareView("", [], render.notice(missing_checkpoint_message(), "warn"))
    results: list[Compared] = []
    problems, gallery = [], []
    for n, choice in enumerate(choices):
        if progress is not None:
            progress(n / len(choices), desc=f"{choice.label}")
        predictor, reason = store.try_predictor(choice.key)
        if predictor is None:
            problems.append(f"{choice.label}: {reason}")
            continue
        with store.using(choice.key):
            probs = predictor.classify([subject.crop])[0]
        explainer = store.explainer(choice.key)
        with store.using(choice.key, exclusive=True):
            explanation = explainer.explain(model_batch([subject.crop], predictor.model))[0]
        results.append((choice.label, predictor.class_names, probs))
        top = int(np.argmax(probs))
        gallery.append((gradcam_strip(explanation), f"{choice.label}: {predictor.class_names[top]} {probs[top]:.0%}"))
    compared = {r[0] for r in results}
    missing = [label for label in map(checkpoint_label, list_weights()) if label not in compared]
    note = f"{len(results)} checkpoint{'s' if len(results) != 1 else ''} compared on {subject.title}."
    if missing:
        note += f" Not available: {', '.join(missing)} (add them in the Model tab)."
    if problems:
        note += " " + " ".join(problems)
    return CompareView(compare_table(results), gallery, render.notice(note, "info" if not problems else "warn"))


def compare_rows(results: Sequence[Compared]) -> tuple[list[str], list[list[float | None]]]:
    """Classes aligned by canonical name: (class names, one row per class of each checkpoint's
    probability or None where that checkpoint has no such class)."""
    present = {canonical_class(n) for _, names, _ in results for n in names}
    order = [c for c in CANONICAL_ORDER if c in present] + sorted(present - set(CANONICAL_ORDER))
    rows = []
    for cls in order:
        row = []
        for _, names, probs in results:
            canon = [canonical_class(n) for n in names]
            row.append(float(probs[canon.index(cls)]) if cls in canon else None)
        rows.append(row)
    return order, rows


def compare_table(results: Sequence[Compared]) -> str:
    """The probabilities as an HTML table: one row per class, one column per checkpoint."""
    if not results:
        return ""
    order, rows = compare_rows(results)
    tops = [canonical_class(names[int(np.argmax(p))]) for _, names, p in results]
    body = [[f"<b>{escape(cls)}</b>"] + [render.bar_cell(v, strong=(cls == tops[j])) for j, v in enumerate(row)]
            for cls, row in zip(order, rows)]
    return render.table_html(["Class"] + [escape(r[0]) for r in results], body,
                             "Probabilities per checkpoint, classes lined up by name (— : the checkpoint has no such class)")


def _compare(subject: Subject | None, store: ModelStore, progress=gr.Progress()) -> CompareView:
    return compare_checkpoints(subject, store, progress=progress)


def build_checkpoint_compare_panel(subject: gr.State, store: ModelStore, limits: Limits) -> CheckpointComparePanel:
    """The button, status line, table and Grad-CAM gallery comparing every checkpoint on ``subject``."""
    gr.Markdown("Runs every available checkpoint of every architecture (POSTER++, POSTER, ARM) on the "
                "selected face; ARM classifies it alone. Classes are lined up by name (Happy = Happiness); "
                "Contempt exists only in AffectNet-8. Below: each checkpoint's Grad-CAM maps, one row each.")
    panel = CheckpointComparePanel(
        button=gr.Button("Compare checkpoints", variant="secondary", elem_id="compare-button"),
        status=gr.HTML(),
        table=gr.HTML(elem_id="compare-table"),
        gallery=gr.Gallery(label="Grad-CAM per checkpoint (its own layers)", columns=1, height="auto",
                           object_fit="contain", allow_preview=True, fit_columns=False, elem_id="compare-gallery"))
    panel.button.click(gpu(files_out(returning(CompareView, bound(_compare, store=store)))), [subject], outputs_of(CompareView, panel),
                       show_progress_on=[panel.status], **limits.model_event())
    return panel

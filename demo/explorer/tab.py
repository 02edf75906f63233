"""Explorer tab: evaluation runs, the clickable confusion matrix, per-class metrics, label errors,
evaluating an uploaded set and comparing two runs.

Runs are folders written by ``python -m poster evaluate`` (see ``data_explorer.runs``); how they
are shown is ``demo.explorer.views``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from data_explorer import analysis
from data_explorer.label_errors import suspected_label_errors

from ..ui import render
from .evaluate_upload import SESSION_TTL_S, remove_session_dir
from ..ui.explain_panel import ExplainPanel, build_explain_panel
from .panels import RunComparePanel, EvaluatePanel, build_run_compare_panel, build_evaluate_panel
from .runs import all_run_choices, get_run, run_checkpoint_key, run_choices
from .views import (DEFAULT_SORT, SORTS, cell_rows, class_table, confusion_table, gallery_items,
                    label_order_notice, rows_table, run_image, summary_html)
from ..serving.files import files_out
from ..ui.messages import cell_index, friendly
from ..ui.photo_result import Subject
from ..serving.limits import Limits
from ..ui.outputs import bound, outputs_of, returning, unchanged
from ..serving.store import ModelStore


@dataclass
class RunListView:
    """Every run this visitor may open, in the run picker and both comparison pickers."""

    run: dict
    runs_note: str
    run_a: dict
    run_b: dict


@dataclass
class RunView:
    """An opened run; the cell gallery is cleared until a cell is clicked."""

    summary: str
    matrix: Any  # a DataFrame, or its Styler with colours
    classes: pd.DataFrame
    suspects: list
    suspect_rows: list[int]
    cell_gallery: list
    cell_rows: list[int]
    cell_caption: str


@dataclass
class CellView:
    """A clicked cell of the confusion matrix (row, column as clicked): its images and table."""

    cell_gallery: list
    cell_rows: list[int]
    cell_caption: str
    cell: tuple[int, int] | None
    cell_table: pd.DataFrame


@dataclass
class ImageView:
    """A clicked image: shown large, its prediction card, the subject to explain (None: none)."""

    image: np.ndarray | None
    card: str
    subject: Subject | None
    selected: dict  # the section showing them


@dataclass
class ExplorerTab:
    """The Explorer tab's components."""

    session_dir: gr.State
    run: gr.Dropdown
    runs_note: gr.HTML
    run_a: gr.Dropdown
    run_b: gr.Dropdown
    summary: gr.HTML
    matrix: gr.Dataframe
    classes: gr.Dataframe
    suspects: gr.Gallery
    suspect_rows: gr.State
    cell_gallery: gr.Gallery
    cell_rows: gr.State
    cell_caption: gr.HTML
    cell: gr.State
    cell_table: gr.Dataframe
    image: gr.Image
    card: gr.HTML
    subject: gr.State
    selected: gr.Column
    panel: ExplainPanel
    evaluation: EvaluatePanel
    comparison: RunComparePanel


# --- handlers -------------------------------------------------------------------------------

def run_pickers(session_dir: str | None = None, selected: str | None = None) -> RunListView:
    """Every run this visitor may open (``selected`` chosen when it is listed)."""
    dropdown, note = run_choices(None, session_dir, selected)
    choices, _, _ = all_run_choices(None, session_dir)
    return RunListView(dropdown, note, gr.update(choices=choices), gr.update(choices=choices))


def run_pickers_on_load() -> RunListView:
    """The runs a new page lists (it has no runs of its own yet)."""
    return run_pickers(None)


@friendly("Opening the run")
def open_run(name: str | None, root: str | Path | None = None, session_dir: str | Path | None = None) -> RunView:
    """A run's headline figures, confusion matrix, per-class metrics and suspected label errors."""
    run = get_run(name, root, session_dir)
    if run is None:
        return RunView("", pd.DataFrame(), pd.DataFrame(), [], [], [], [], "")
    suspects = suspected_label_errors(run.predictions)
    items, rows = gallery_items(run, suspects, limit=24)
    caption = (f"{len(suspects)} suspected label errors (the model is confidently sure of another class); "
               f"lowest probability of the given label first." if len(suspects) else
               "No suspected label errors.")
    return RunView(summary_html(run) + label_order_notice(run), confusion_table(run), class_table(run), items, rows,
                   [], [], render.notice(f"Click a cell of the confusion matrix to see its images. {caption}"))


@friendly("Opening the cell")
def select_cell(name: str | None, row: int, col: int, sort: str | None = DEFAULT_SORT,
                root: str | Path | None = None, session_dir: str | Path | None = None) -> CellView:
    """The images of a clicked confusion-matrix cell (column 0 selects the true class's whole row)."""
    cell = (int(row), int(col))
    run = get_run(name, root, session_dir)
    found = cell_rows(run, *cell, sort) if run is not None else None
    if found is None:
        return CellView([], [], "", cell, pd.DataFrame())
    rows, what = found
    items, kept = gallery_items(run, rows)
    shown = f"showing {len(kept)} of {len(rows)}" if len(rows) > len(kept) else f"{len(rows)} image{'s' if len(rows) != 1 else ''}"
    caption = render.notice(f"{what}: {shown}, sorted by {sort or DEFAULT_SORT}.")
    return CellView(items, kept, caption, cell, rows_table(run, rows))


@friendly("Opening the image")
def select_image(name: str | None, rows: Sequence[int] | None, index: int | None, model_key: str | None,
                 root: str | Path | None = None, *, store: ModelStore,
                 session_dir: str | Path | None = None) -> ImageView:
    """A clicked gallery image (``index`` into its gallery's ``rows``): its prediction, and the
    subject to explain when a checkpoint of the run's kind is available."""
    run = get_run(name, root, session_dir)
    shown = gr.update(visible=True)
    if run is None or rows is None or index is None or not 0 <= int(index) < len(rows):
        return ImageView(None, "", None, shown)
    row = run.predictions.loc[rows[int(index)]]
    probs = analysis.probabilities(run.predictions.loc[[rows[int(index)]]])[0]
    image = run_image(run, row["path"])
    verdict = "correct" if row["correct"] else "wrong"
    title = f"{row['pred_name']} {row['confidence']:.0%} · labeled {row['label_name']} · {verdict}"
    note = f"loss {row['loss']:.2f} · margin {row['margin']:.2f} · {row['path']}"
    card = render.probability_bars(title, list(run.class_names), probs, "#4e79a7", note=note)
    subject = None
    if image is None:
        card += render.notice("The image file is not available here (neither the dataset nor a thumbnail), "
                              "so it cannot be explained.", "warn")
    else:
        key, why = run_checkpoint_key(run, model_key, store)
        if key is None:
            card += render.notice(f"No explanation: {why}.", "warn")
        else:
            crop = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BILINEAR))
            title = Path(str(row["path"])).name
            path = run.image_file(row["path"])
            if path is not None and run.path in path.parents:
                title += " (explained from the run's thumbnail: the dataset is not on this machine)"
            subject = Subject(crop=crop, model_key=key, title=title)
    return ImageView(_at_least_224(image), card, subject, shown)


def _at_least_224(image: np.ndarray | None) -> np.ndarray | None:
    """Dataset crops are small: they are shown at 224 pixels on their longer side."""
    if image is None or max(image.shape[:2]) >= 224:
        return image
    scale = 224 / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


@friendly("Opening the cell")
def _on_cell(name, sort, session, evt: gr.SelectData):
    return select_cell(name, *cell_index(evt.index), sort, None, session)


def _on_sort(name, sort, cell, session):
    return select_cell(name, cell[0], cell[1], sort, None, session) if cell else unchanged(CellView)


def _on_image(name, rows, model_key, session, evt: gr.SelectData, store: ModelStore):
    return select_image(name, rows, evt.index, model_key, store=store, session_dir=session)


def _open(name, session):
    return open_run(name, None, session)


def _after_evaluation(summary, session):
    """Once a run is written: list it and open it."""
    return run_pickers(session, (summary or {}).get("run"))


# --- the tab --------------------------------------------------------------------------------

def build_explorer_tab(model_key: gr.State, store: ModelStore, limits: Limits,
                       uploads: gr.State | None = None) -> ExplorerTab:
    gr.Markdown("Browse an evaluation run written by `python -m poster evaluate`, published to the Hub, or evaluated "
                "here from an uploaded set: accuracy with its 95 % interval next to the published figure, the "
                "confusion matrix (click a cell to see its images), per-class metrics and images whose label looks "
                "wrong. Click an image for its prediction and explanation.")
    # This visitor's own runs live in a folder of their session, deleted when Gradio ends the session.
    session_dir = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=remove_session_dir)
    evaluation = build_evaluate_panel(limits, store, session_dir, uploads)
    cell_rows_state = gr.State([])
    suspect_rows = gr.State([])
    cell = gr.State(None)
    subject = gr.State(None)
    with gr.Row():
        run = gr.Dropdown(label="Evaluation run", choices=[], scale=5, elem_id="explorer-run")
        with gr.Column(scale=1, min_width=140):
            refresh = gr.Button("Reload runs", size="md")
    runs_note = gr.HTML()
    summary = gr.HTML(elem_id="explorer-summary")
    with gr.Row():
        with gr.Column(scale=3):
            matrix = gr.Dataframe(label="Confusion matrix (rows: true class, columns: predicted) — click a cell",
                                  interactive=False, wrap=True, elem_id="explorer-matrix")
        with gr.Column(scale=2):
            classes = gr.Dataframe(label="Per-class metrics", interactive=False, elem_id="explorer-classes")
    with gr.Row(equal_height=True):
        cell_caption = gr.HTML(elem_id="explorer-cell-caption")
        sort = gr.Dropdown(label="Sort the cell's images by", choices=list(SORTS), value=DEFAULT_SORT, scale=0,
                           min_width=240)
    cell_gallery = gr.Gallery(label="Images of the selected cell (click one)", columns=6, height=320,
                              object_fit="contain", allow_preview=False, fit_columns=False,
                              elem_id="explorer-cell-gallery")
    with gr.Accordion("The selected cell's images as a table (file names, labels, probabilities)", open=False):
        cell_table = gr.Dataframe(interactive=False, elem_id="explorer-cell-table")
    with gr.Column(visible=False) as selected:
        gr.Markdown("### Selected image")
        with gr.Row():
            with gr.Column(scale=1, min_width=200):
                image = gr.Image(show_label=False, interactive=False, height=240, elem_id="explorer-image")
            with gr.Column(scale=3):
                card = gr.HTML(elem_id="explorer-card")
        panel = build_explain_panel(subject, store, limits, "explorer")
    with gr.Accordion("Suspected label errors", open=False):
        gr.Markdown("Images the model confidently puts in another class than their label (confident learning, "
                    "Northcutt et al. 2021). Some are model mistakes; many are worth a second look at the label.")
        suspects = gr.Gallery(label="Suspected label errors (click one)", columns=6, height=320,
                              object_fit="contain", allow_preview=False, fit_columns=False,
                              elem_id="explorer-suspects")
    comparison = build_run_compare_panel(limits, session_dir)
    tab = ExplorerTab(session_dir, run, runs_note, comparison.run_a, comparison.run_b, summary, matrix, classes,
                      suspects, suspect_rows, cell_gallery, cell_rows_state, cell_caption, cell, cell_table, image,
                      card, subject, selected, panel, evaluation, comparison)

    light = limits.light_event()
    listed, opened = outputs_of(RunListView, tab), outputs_of(RunView, tab)
    open_event = files_out(returning(RunView, _open))
    refresh.click(returning(RunListView, run_pickers), [session_dir], listed, **light).then(
        open_event, [run, session_dir], opened, **light)
    evaluation.running.success(returning(RunListView, _after_evaluation), [evaluation.summary, session_dir], listed,
                               **light)
    run.change(open_event, [run, session_dir], opened, **light)
    matrix.select(files_out(returning(CellView, _on_cell)), [run, sort, session_dir], outputs_of(CellView, tab),
                  **light)
    sort.input(files_out(returning(CellView, _on_sort)), [run, sort, cell, session_dir], outputs_of(CellView, tab),
               **light)
    on_image = files_out(returning(ImageView, bound(_on_image, store=store)))
    for gallery, rows in ((cell_gallery, cell_rows_state), (suspects, suspect_rows)):
        picked = gallery.select(on_image, [run, rows, model_key, session_dir], outputs_of(ImageView, tab), **light)
        panel.explain_after(picked)
    return tab


__all__ = ["CellView", "ExplorerTab", "ImageView", "RunListView", "RunView", "build_explorer_tab", "run_pickers",
           "run_pickers_on_load", "open_run", "select_cell", "select_image"]

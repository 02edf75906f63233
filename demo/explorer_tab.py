"""Explorer tab: evaluation runs, the clickable confusion matrix, per-class metrics, label errors."""
from __future__ import annotations

import gradio as gr

from .explain_panel import build_explain_panel
from .explorer import DEFAULT_SORT, SORTS, open_run, run_choices, select_cell, select_image
from .files import files_out
from .limits import Limits


def _on_cell(name, sort, evt: gr.SelectData):
    row, col = evt.index[:2]
    items, rows, caption = select_cell(name, row, col, sort)
    return items, rows, caption, (row, col)


def _on_sort(name, sort, cell):
    if not cell:
        return gr.update(), gr.update(), gr.update()
    return select_cell(name, cell[0], cell[1], sort)


def _on_image(name, rows, model_key, evt: gr.SelectData):
    return (*select_image(name, rows, evt.index, model_key), gr.update(visible=True))


def build_explorer_tab(model_key: gr.State, limits: Limits) -> dict:
    gr.Markdown("Browse an evaluation run written by `python -m poster evaluate`: accuracy next to the published "
                "figure, the confusion matrix (click a cell to see its images), per-class metrics and images "
                "whose label looks wrong. Click an image for its prediction and explanation.")
    cell_rows = gr.State([])
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
    with gr.Column(visible=False) as selected:
        gr.Markdown("### Selected image")
        with gr.Row():
            with gr.Column(scale=1, min_width=200):
                image = gr.Image(show_label=False, interactive=False, height=240, elem_id="explorer-image")
            with gr.Column(scale=3):
                card = gr.HTML(elem_id="explorer-card")
        panel = build_explain_panel(subject, limits, "explorer")
    with gr.Accordion("Suspected label errors", open=False):
        gr.Markdown("Images the model confidently puts in another class than their label (confident learning, "
                    "Northcutt et al. 2021). Some are model mistakes; many are worth a second look at the label.")
        suspects = gr.Gallery(label="Suspected label errors (click one)", columns=6, height=320,
                              object_fit="contain", allow_preview=False, fit_columns=False,
                              elem_id="explorer-suspects")

    light = limits.light_event()
    opened_outputs = [summary, matrix, classes, suspects, suspect_rows, cell_gallery, cell_rows, cell_caption]
    refresh.click(run_choices, None, [run, runs_note], **light).then(files_out(open_run), [run], opened_outputs, **light)
    run.change(files_out(open_run), [run], opened_outputs, **light)
    matrix.select(files_out(_on_cell), [run, sort], [cell_gallery, cell_rows, cell_caption, cell], **light)
    sort.input(files_out(_on_sort), [run, sort, cell], [cell_gallery, cell_rows, cell_caption], **light)
    picked = cell_gallery.select(files_out(_on_image), [run, cell_rows, model_key], [image, card, subject, selected], **light)
    panel.explain_after(picked)
    picked_suspect = suspects.select(files_out(_on_image), [run, suspect_rows, model_key], [image, card, subject, selected],
                                     **light)
    panel.explain_after(picked_suspect)
    return {"run": run, "runs_note": runs_note, "matrix": matrix, "cell_gallery": cell_gallery,
            "summary": summary, "load": (run_choices, [run, runs_note])}

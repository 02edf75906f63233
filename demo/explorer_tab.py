"""Explorer tab: evaluation runs, the clickable confusion matrix, per-class metrics, label errors,
evaluating an uploaded set and comparing two runs."""
from __future__ import annotations

import gradio as gr

from .evaluate_upload import SESSION_TTL_S, remove_session_dir
from .explain_panel import build_explain_panel
from .explorer import DEFAULT_SORT, SORTS, all_run_choices, open_run, run_choices, select_cell, select_image
from .explorer_panels import build_compare_panel, build_evaluate_panel
from .files import files_out
from .limits import Limits
from .store import get_store


def _on_cell(name, sort, session, evt: gr.SelectData):
    row, col = evt.index[:2]
    items, rows, caption, table = select_cell(name, row, col, sort, None, session, with_table=True)
    return items, rows, caption, (row, col), table


def _on_sort(name, sort, cell, session):
    if not cell:
        return gr.update(), gr.update(), gr.update(), gr.update()
    return select_cell(name, cell[0], cell[1], sort, None, session, with_table=True)


def _on_image(name, rows, model_key, session, evt: gr.SelectData):
    return (*select_image(name, rows, evt.index, model_key, session_dir=session), gr.update(visible=True))


def _open(name, session):
    return open_run(name, None, session)


def _list_runs(session, selected=None):
    """-> (run dropdown, notice, compare A, compare B): every run this visitor may open."""
    dropdown, note = run_choices(None, session, selected)
    choices, _, _ = all_run_choices(None, session)
    return dropdown, note, gr.update(choices=choices), gr.update(choices=choices)


def _list_runs_on_load():
    return _list_runs(None)  # a new page has no runs of its own yet


def _after_evaluation(summary, session):
    """Once a run is written: list it and open it."""
    return _list_runs(session, (summary or {}).get("run"))


def build_explorer_tab(model_key: gr.State, limits: Limits, uploads: gr.State | None = None) -> dict:
    gr.Markdown("Browse an evaluation run written by `python -m poster evaluate`, published to the Hub, or evaluated "
                "here from an uploaded set: accuracy with its 95 % interval next to the published figure, the "
                "confusion matrix (click a cell to see its images), per-class metrics and images whose label looks "
                "wrong. Click an image for its prediction and explanation.")
    # This visitor's own runs live in a folder of their session, deleted when Gradio ends the session.
    session_dir = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=remove_session_dir)
    evaluation = build_evaluate_panel(limits, get_store(), session_dir, uploads)
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
    with gr.Accordion("The selected cell's images as a table (file names, labels, probabilities)", open=False):
        cell_table = gr.Dataframe(interactive=False, elem_id="explorer-cell-table")
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
    comparison = build_compare_panel(limits, session_dir)

    light = limits.light_event()
    listed = [run, runs_note, comparison["run_a"], comparison["run_b"]]
    opened_outputs = [summary, matrix, classes, suspects, suspect_rows, cell_gallery, cell_rows, cell_caption]
    refresh.click(_list_runs, [session_dir], listed, **light).then(files_out(_open), [run, session_dir],
                                                                    opened_outputs, **light)
    evaluation["running"].success(_after_evaluation, [evaluation["summary"], session_dir], listed, **light)
    run.change(files_out(_open), [run, session_dir], opened_outputs, **light)
    matrix.select(files_out(_on_cell), [run, sort, session_dir], [cell_gallery, cell_rows, cell_caption, cell, cell_table],
                  **light)
    sort.input(files_out(_on_sort), [run, sort, cell, session_dir], [cell_gallery, cell_rows, cell_caption, cell_table],
               **light)
    picked = cell_gallery.select(files_out(_on_image), [run, cell_rows, model_key, session_dir],
                                 [image, card, subject, selected], **light)
    panel.explain_after(picked)
    picked_suspect = suspects.select(files_out(_on_image), [run, suspect_rows, model_key, session_dir],
                                     [image, card, subject, selected], **light)
    panel.explain_after(picked_suspect)
    return {"run": run, "runs_note": runs_note, "matrix": matrix, "cell_gallery": cell_gallery,
            "summary": summary, "evaluation": evaluation, "comparison": comparison,
            "load": (_list_runs_on_load, listed)}

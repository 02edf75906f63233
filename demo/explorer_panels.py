"""The Explorer tab's two extra panels: evaluate an uploaded set, and compare two runs."""
from __future__ import annotations

import gradio as gr

from data_explorer.archive import ArchiveCaps

from .compare_runs import compare, select_pair_cell
from .evaluate_upload import evaluate_archive, progress_html, storage_note
from .files import files_out
from .limits import Limits
from .store import ModelStore

LAYOUTS_HELP = ("Any layout `python -m poster evaluate` reads: POSTER++ class folders (`test/1/…`, or class names), "
                "RAF-DB's own release (`EmoLabel/list_patition_label.txt` with `Image/aligned/`), or a CSV of "
                "`path,label` next to the images. Unknown labels are listed and skipped.")


def _evaluate(archive, checkpoint, limit, session_dir, uploads):
    yield from evaluate_archive(archive, checkpoint, limit, session_dir, uploads or ())


def _cancelled():
    return {"status": "cancelled"}


def checkpoint_choices(store: ModelStore, uploads=()) -> list[tuple[str, str]]:
    return [(c.label, c.key) for c in store.choices(tuple(uploads or ()))]


def build_evaluate_panel(limits: Limits, store: ModelStore, session_dir: gr.State, uploads: gr.State | None) -> dict:
    """Upload, checkpoint, limit, Evaluate / Cancel, the progress bar and the run summary."""
    choices = checkpoint_choices(store)
    with gr.Accordion("Evaluate a labeled set (.zip)", open=False, elem_id="evaluate-panel"):
        gr.Markdown(LAYOUTS_HELP)
        gr.Markdown(f"Caps: {ArchiveCaps.from_env().describe()}. {storage_note()}", elem_id="evaluate-caps")
        with gr.Row():
            archive = gr.File(label="Labeled set (.zip)", file_types=[".zip"], type="filepath", scale=3,
                              elem_id="evaluate-archive")
            with gr.Column(scale=2):
                checkpoint = gr.Dropdown(label="Checkpoint", choices=choices,
                                         value=(store.default_key() if choices else None), elem_id="evaluate-checkpoint")
                # The browser sends 0 for an empty box: 0 means every image.
                limit = gr.Number(label="Limit (images spread over the set; 0 or empty for all)", value=None,
                                  precision=0, minimum=0, elem_id="evaluate-limit")
        with gr.Row():
            start = gr.Button("Evaluate", variant="primary", elem_id="evaluate-start")
            cancel = gr.Button("Cancel", variant="stop", elem_id="evaluate-cancel")
        progress = gr.HTML(elem_id="evaluate-progress")
        with gr.Accordion("Run summary (JSON)", open=False):
            summary = gr.JSON(label="Run summary", elem_id="evaluate-summary")

    inputs = [archive, checkpoint, limit, session_dir, uploads if uploads is not None else gr.State([])]
    # "multiple": after a cancel the page may still count the cancelled run as pending, and "once"
    # or "always_last" would then never start the next one.
    running = start.click(_evaluate, inputs, [summary, session_dir], api_name="evaluate", show_progress="hidden",
                          **(limits.model_event(public=True) | {"trigger_mode": "multiple"}))
    summary.change(progress_html, [summary], [progress], **limits.light_event())
    cancel.click(_cancelled, None, [summary], cancels=[running], **limits.light_event())
    if uploads is not None:  # checkpoints this visitor uploads in the Model tab can be evaluated too
        uploads.change(lambda own: gr.update(choices=checkpoint_choices(store, own)), [uploads], [checkpoint],
                       **limits.light_event())
    return {"running": running, "summary": summary, "checkpoint": checkpoint, "progress": progress}


def build_compare_panel(limits: Limits, session_dir: gr.State) -> dict:
    """Two run pickers, the statistics, the clickable 2x2 table and its images."""
    pair_rows = gr.State([])
    with gr.Accordion("Compare two runs", open=False, elem_id="compare-panel"):
        gr.Markdown("Two runs over the same images (two checkpoints, float32 against bfloat16, a fine-tune against "
                    "the release), matched by path: each accuracy with its 95 % interval, the difference with a "
                    "paired bootstrap interval and McNemar's exact test.")
        with gr.Row():
            run_a = gr.Dropdown(label="Run A", choices=[], elem_id="compare-a")
            run_b = gr.Dropdown(label="Run B", choices=[], elem_id="compare-b")
            go = gr.Button("Compare", scale=0, min_width=120, elem_id="compare-start")
        result = gr.HTML(elem_id="compare-summary")
        with gr.Row():
            table = gr.Dataframe(label="Both right, only A, only B, both wrong (click a count)", interactive=False,
                                 elem_id="compare-table")
            per_class = gr.Dataframe(label="Per class", interactive=False, elem_id="compare-classes")
        caption = gr.HTML(elem_id="compare-caption")
        gallery = gr.Gallery(label="Images of the selected cell, with both predictions", columns=6, height=300,
                             object_fit="contain", allow_preview=False, fit_columns=False, elem_id="compare-gallery")
        pairs = gr.Dataframe(label="The selected cell's images", interactive=False, elem_id="compare-pairs")

    def _compare(a, b, session):
        return compare(a, b, None, session)

    def _on_cell(a, b, session, evt: gr.SelectData):
        return select_pair_cell(a, b, *evt.index[:2], None, session)

    light = limits.light_event()
    go.click(_compare, [run_a, run_b, session_dir], [result, table, per_class, gallery, pair_rows, caption], **light)
    table.select(files_out(_on_cell), [run_a, run_b, session_dir], [gallery, pair_rows, caption, pairs], **light)
    return {"run_a": run_a, "run_b": run_b, "result": result, "table": table}

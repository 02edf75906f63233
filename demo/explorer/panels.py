"""The Explorer tab's two extra panels: evaluate an uploaded set, and compare two runs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from data_explorer.archive import ArchiveCaps

from ..ui import render
from .compare_runs import ComparisonView, PairCellView, compare, select_pair_cell
from .evaluate_upload import EvaluationView, evaluate_archive, storage_note
from ..serving.files import files_out
from ..serving.limits import Limits
from ..ui.messages import cell_index, friendly
from ..ui.outputs import bound, outputs_of, returning, values
from ..serving.store import ModelStore

LAYOUTS_HELP = ("Any layout `python -m poster evaluate` reads: POSTER++ class folders (`test/1/…`, or class names), "
                "RAF-DB's own release (`EmoLabel/list_patition_label.txt` with `Image/aligned/`), or a CSV of "
                "`path,label` next to the images. Unknown labels are listed and skipped.")


@dataclass
class EvaluatePanel:
    """The evaluation panel's components; ``running`` is the Evaluate event (others chain on it)."""

    summary: gr.JSON
    session_dir: gr.State
    checkpoint: gr.Dropdown
    progress: gr.HTML
    running: Any = None  # the Evaluate event, once wired


@dataclass
class RunComparePanel:
    """The comparison panel's components."""

    run_a: gr.Dropdown
    run_b: gr.Dropdown
    result: gr.HTML
    table: gr.Dataframe
    per_class: gr.Dataframe
    gallery: gr.Gallery
    pair_rows: gr.State
    caption: gr.HTML
    pairs: gr.Dataframe


def progress_html(payload: dict[str, Any] | None) -> str:
    """The progress bar (images done of total, images per second, time left) or the outcome."""
    if not payload:
        return ""
    status = payload.get("status")
    if status == "unpacking":
        return render.notice(f"Checking and unpacking {payload.get('archive', 'the archive')}…")
    if status == "running":
        done, total = int(payload["done"]), max(int(payload["total"]), 1)
        left = payload.get("seconds_left")
        rate = f"{payload['images_per_second']:.1f} images/s" if payload.get("images_per_second") else "starting"
        eta = f", about {left:.0f} s left" if left is not None else ""
        return (f'<div class="poster-eval-progress"><progress value="{done}" max="{total}" style="width:100%"></progress>'
                f"<div>{done} of {total} images · {rate}{eta}</div></div>")
    if status == "cancelled":
        return render.notice("Cancelled; nothing of this evaluation was kept.", "warn")
    if status == "done":
        low, high = payload["accuracy_ci"]
        skipped = payload.get("skipped") or []
        lines = [f"Done: accuracy {payload['accuracy']:.2f} % (95 % CI {low:.1f}–{high:.1f}) on "
                 f"{payload['num_images']} images at {payload.get('images_per_second') or 0:.1f} images/s; "
                 f"opened below."]
        html = render.notice(" ".join(lines))
        if skipped:
            shown = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:8])
            more = f" and {len(skipped) - 8} more" if len(skipped) > 8 else ""
            html += render.notice(f"Skipped {len(skipped)}: {shown}{more}.", "warn")
        return html
    return ""


def checkpoint_choices(store: ModelStore, uploads=()) -> list[tuple[str, str]]:
    return [(c.label, c.key) for c in store.choices(tuple(uploads or ()))]


def _evaluate(archive, checkpoint, limit=None, session_dir=None, uploads=None, *, store: ModelStore):
    # ``limit=None``: API clients may leave it out (Gradio marks a parameter that defaults to None optional).
    for step in evaluate_archive(archive, checkpoint, limit, session_dir, uploads or (), store=store):
        yield values(step)  # a generator of its own: Gradio streams what a generator function yields


def _cancelled():
    return {"status": "cancelled"}


def build_evaluate_panel(limits: Limits, store: ModelStore, session_dir: gr.State, uploads: gr.State | None
                         ) -> EvaluatePanel:
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

    panel = EvaluatePanel(summary, session_dir, checkpoint, progress)
    inputs = [archive, checkpoint, limit, session_dir, uploads if uploads is not None else gr.State([])]
    # "multiple": after a cancel the page may still count the cancelled run as pending, and "once"
    # or "always_last" would then never start the next one.
    running = start.click(bound(_evaluate, store=store), inputs, outputs_of(EvaluationView, panel), api_name="evaluate",
                          show_progress="hidden", **limits.evaluation_event())
    panel.running = running
    summary.change(progress_html, [summary], [progress], **limits.light_event())
    cancel.click(_cancelled, None, [summary], cancels=[running], **limits.light_event())
    if uploads is not None:  # checkpoints this visitor uploads in the Model tab can be evaluated too
        uploads.change(lambda own: gr.update(choices=checkpoint_choices(store, own)), [uploads], [checkpoint],
                       **limits.light_event())
    return panel


def build_run_compare_panel(limits: Limits, session_dir: gr.State) -> RunComparePanel:
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
    panel = RunComparePanel(run_a, run_b, result, table, per_class, gallery, pair_rows, caption, pairs)

    def _compare(a, b, session):
        return compare(a, b, None, session)

    @friendly("Opening the cell")
    def _on_cell(a, b, session, evt: gr.SelectData):
        return select_pair_cell(a, b, *cell_index(evt.index), None, session)

    light = limits.light_event()
    go.click(returning(ComparisonView, _compare), [run_a, run_b, session_dir], outputs_of(ComparisonView, panel),
             **light)
    table.select(files_out(returning(PairCellView, _on_cell)), [run_a, run_b, session_dir],
                 outputs_of(PairCellView, panel), **light)
    return panel

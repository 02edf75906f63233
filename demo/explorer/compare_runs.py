"""Two runs compared in the Explorer tab: intervals, McNemar's test, a clickable 2x2 table.

The statistics are ``poster.evaluation.compare``'s (the same as ``python -m poster compare``); this module
turns them into cards and tables, and a clicked cell of the 2x2 table into its images with
both predictions side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

import pandas as pd

from poster.evaluation.compare import Comparison, compare_tables, paired_table

from ..ui import render
from .runs import get_run
from .views import gallery_items, stat_cards
from ..ui.messages import friendly

CELL_TITLES = {"both_correct": "both right", "only_a": "only A right", "only_b": "only B right",
               "both_wrong": "both wrong"}
TWO_BY_TWO_CORNER = "A \\ B"


@dataclass
class ComparisonView:
    """Two runs compared; the images of a cell come once one is clicked (the gallery is cleared)."""

    result: str
    table: pd.DataFrame
    per_class: pd.DataFrame
    gallery: list
    pair_rows: list[int]
    caption: str


@dataclass
class PairCellView:
    """A clicked cell of the 2x2 table: its images with both predictions, run A's rows, a table."""

    gallery: list
    pair_rows: list[int]
    caption: str
    pairs: pd.DataFrame


def two_by_two(c: Comparison) -> pd.DataFrame:
    """Rows: A right / A wrong; columns: B right / B wrong (click a count to see its images)."""
    return pd.DataFrame({TWO_BY_TWO_CORNER: ["A right", "A wrong"], "B right": [c.both_correct, c.only_b],
                         "B wrong": [c.only_a, c.both_wrong]})


def cell_at(row: int, col: int) -> str | None:
    """The 2x2 cell named by a click on ``two_by_two`` (column 0 holds the row names)."""
    return {(0, 1): "both_correct", (0, 2): "only_a", (1, 1): "only_b", (1, 2): "both_wrong"}.get((int(row), int(col)))


def comparison_summary_html(c: Comparison, name_a: str, name_b: str) -> str:
    def ci(interval: tuple[float, float]) -> str:
        return f"95 % CI {interval[0]:.1f}–{interval[1]:.1f} %"

    extra = []
    if c.only_in_a or c.only_in_b:
        extra.append(f"{c.only_in_a} images only in A and {c.only_in_b} only in B are left out")
    if c.label_mismatches:
        extra.append(f"{c.label_mismatches} shared images labeled differently are left out")
    verdict = ("the difference is significant at the 5 % level" if c.mcnemar_p < 0.05
               else "the difference is not significant at the 5 % level")
    cards = [
        (f"{c.accuracy_a:.2f} %", f"A: {escape(name_a)}", ci(c.accuracy_a_ci)),
        (f"{c.accuracy_b:.2f} %", f"B: {escape(name_b)}", ci(c.accuracy_b_ci)),
        (f"{c.difference:+.2f}", "A − B (points)",
         f"paired bootstrap 95 % CI {c.difference_ci[0]:+.1f} to {c.difference_ci[1]:+.1f}"),
        (f"{c.mcnemar_p:.3g}", "McNemar exact p", verdict),
    ]
    html = stat_cards(cards)
    note = f"Compared on the {c.n} images they share (matched by path)"
    return html + render.notice(note + ("; " + "; ".join(extra) if extra else "") + ".")


def per_class_table(c: Comparison) -> pd.DataFrame:
    return pd.DataFrame([{
        "class": p["class"], "images": p["n"],
        "A %": round(p["accuracy_a"], 1), "A 95 % CI": f"{p['accuracy_a_ci'][0]:.1f}–{p['accuracy_a_ci'][1]:.1f}",
        "B %": round(p["accuracy_b"], 1), "B 95 % CI": f"{p['accuracy_b_ci'][0]:.1f}–{p['accuracy_b_ci'][1]:.1f}",
        "A − B": round(p["difference"], 1)} for p in c.per_class])


@friendly("Comparing the runs")
def compare(name_a: str | None, name_b: str | None, root: str | Path | None = None,
            session_dir: str | Path | None = None) -> ComparisonView:
    """Runs ``name_a`` and ``name_b`` side by side: accuracies, their difference, McNemar's test."""
    run_a, run_b = get_run(name_a, root, session_dir), get_run(name_b, root, session_dir)
    if run_a is None or run_b is None:
        return ComparisonView(render.notice("Pick two runs to compare.", "info"), pd.DataFrame(), pd.DataFrame(),
                              [], [], "")
    c = compare_tables(run_a.predictions, run_b.predictions)
    if c.n == 0:
        return ComparisonView(
            render.notice("These two runs share no images (matched by path), so they cannot be compared.", "warn"),
            pd.DataFrame(), pd.DataFrame(), [], [], "")
    return ComparisonView(comparison_summary_html(c, run_a.name, run_b.name), two_by_two(c), per_class_table(c), [], [],
                          render.notice("Click a count of the 2x2 table to see its images with both predictions."))


def pair_caption(row: pd.Series) -> str:
    """"label Fear · A ✓ Fear 80% · B ✗ Anger 55%"."""
    def side(which: str) -> str:
        mark = "✓" if row[f"correct_{which}"] else "✗"
        confidence = row[f"confidence_{which}"]
        share = f" {confidence:.0%}" if confidence == confidence else ""  # NaN: an older table
        return f"{which.upper()} {mark} {row[f'pred_name_{which}']}{share}"

    return f"label {row['label_name']} · {side('a')} · {side('b')}"


@friendly("Opening the cell")
def select_pair_cell(name_a: str | None, name_b: str | None, row: int, col: int,
                     root: str | Path | None = None, session_dir: str | Path | None = None) -> PairCellView:
    """The images of a clicked 2x2 cell (row, col of ``two_by_two``) with both predictions."""
    run_a, run_b = get_run(name_a, root, session_dir), get_run(name_b, root, session_dir)
    cell = cell_at(row, col)
    if run_a is None or run_b is None or cell is None:
        return PairCellView([], [], "", pd.DataFrame())
    shared, *_ = paired_table(run_a.predictions, run_b.predictions)
    ca, cb = shared["correct_a"].to_numpy(bool), shared["correct_b"].to_numpy(bool)
    masks = {"both_correct": ca & cb, "only_a": ca & ~cb, "only_b": ~ca & cb, "both_wrong": ~ca & ~cb}
    rows = shared[masks[cell]]
    # The images are run A's (B has them too: they are matched by path).
    by_path = pd.Series(run_a.predictions.index, index=run_a.predictions["path"].astype(str))
    a_rows = run_a.predictions.loc[by_path.reindex(rows["path"].astype(str)).dropna().astype(int)]
    items, kept = gallery_items(run_a, a_rows)
    captions = [pair_caption(r) for _, r in rows.head(len(items)).iterrows()]
    items = [(image, caption) for (image, _), caption in zip(items, captions)]
    table = _pairs_table(rows)
    shown = f"showing {len(items)} of {len(rows)}" if len(rows) > len(items) else f"{len(rows)} images"
    return PairCellView(items, kept, render.notice(f"{CELL_TITLES[cell]}: {shown}."), table)


def _pairs_table(rows: pd.DataFrame, limit: int = 500) -> pd.DataFrame:
    shown = rows.head(limit)
    return pd.DataFrame({
        "file": shown["path"].astype(str), "label": shown["label_name"],
        "A predicted": shown["pred_name_a"], "A confidence %": (100 * shown["confidence_a"]).round(1),
        "B predicted": shown["pred_name_b"], "B confidence %": (100 * shown["confidence_b"]).round(1),
    }).reset_index(drop=True)


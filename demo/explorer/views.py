"""An evaluation run as the Explorer tab shows it: headline cards, the confusion matrix, per-class
and per-image tables, gallery items; plain values, no components.

Images are read from the dataset when it is still where it was evaluated, else from the run's
thumbnails; galleries get small arrays, so no file outside the app's folders is served.
"""
from __future__ import annotations

from html import escape
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from data_explorer import analysis
from data_explorer.runs import Run
from poster.data import metrics
from poster.data.label_order import diagnose

from ..ui import render

GALLERY_LIMIT = 48
THUMB_SIDE = 160
CORNER = "true \\ predicted"
SORTS = {"confidence (high first)": ("confidence", False), "confidence (low first)": ("confidence", True),
         "loss (high first)": ("loss", False), "margin (low first)": ("margin", True)}
DEFAULT_SORT = "confidence (high first)"

def with_interval(successes: int, total: int) -> str:
    """"92.21 % (95 % CI 91.2–93.1)": an accuracy with its Wilson interval."""
    low, high = metrics.wilson_interval(successes, total)
    value = 100 * successes / total if total else 0.0
    return f"{value:.2f} % (95 % CI {100 * low:.1f}–{100 * high:.1f})"


def label_order_notice(run: Run) -> str:
    """A warning when a relabeling of the classes explains the run much better (wrong class order)."""
    matrix = analysis.confusion(run.predictions).to_numpy()
    order = diagnose(matrix, list(run.class_names))
    if not order.suspected:
        return ""
    moved = ", ".join(f"{a} → {b}" for a, b in order.mapping.items() if a != b)
    n = int(matrix.sum())
    return render.notice(
        f"The class order looks wrong: images labeled as one class are mostly predicted as another, one to one. "
        f"Relabeling {moved} would give {with_interval(round(order.accuracy_if_remapped * n), n)} accuracy "
        f"instead of {with_interval(int(np.trace(matrix)), n)}. Check that the class folders (or label numbers) "
        f"are in the checkpoint's order: {', '.join(run.class_names)}.", "warn")


def stat_cards(cards: Sequence[tuple[str, str, str]]) -> str:
    """Headline figures as a grid of cards, each (value, what it is, the line under it); the
    parts are HTML already."""
    return '<div class="poster-stat-grid">' + "".join(
        f'<div class="poster-stat"><div class="poster-stat-value">{v}</div>'
        f'<div class="poster-stat-key">{k}</div><div class="poster-stat-sub">{sub}</div></div>'
        for v, k, sub in cards) + "</div>"


def summary_html(run: Run) -> str:
    """Headline numbers as cards: accuracy next to the published figure, then the other facts."""
    facts = analysis.summary(run.predictions, run.info.get("published_accuracy"))
    published, diff = facts["published_accuracy"], facts["difference"]
    versus = (f"published {published:.2f} % ({'+' if diff >= 0 else '−'}{abs(diff):.2f})"
              if published is not None else "no published figure")
    checkpoint = escape(str(run.info.get("checkpoint", "?")))
    sha = escape(str(run.info.get("checkpoint_sha256", ""))[:12])
    split = escape(str(run.info.get("split", "") or "?"))
    date = escape(str(run.info.get("date", "?"))[:10])
    low, high = metrics.wilson_interval(facts["correct"], facts["images"])
    report = analysis.class_report(run.predictions)
    hits = np.rint(report["recall"] * report["support"]).astype(int)
    mlow, mhigh = metrics.mean_class_accuracy_interval(hits, report["support"].astype(int))
    cards = [
        (f"{facts['accuracy']:.2f} %", "accuracy", f"95 % CI {100 * low:.1f}–{100 * high:.1f} % · {versus}"),
        (f"{facts['mean_class_accuracy']:.2f} %", "mean class accuracy",
         f"95 % CI {100 * mlow:.1f}–{100 * mhigh:.1f} % (class-stratified bootstrap) · average of per-class recall"),
        (f"{facts['macro_f1']:.2f} %", "macro F1", "average of per-class F1"),
        (f"{facts['images']}", "images", f"{facts['correct']} correct · {run.info.get('num_skipped', 0)} skipped"),
        (checkpoint, "checkpoint", f"sha256 {sha}… · {split} split · {date}"),
    ]
    return stat_cards(cards)


def confusion_table(run: Run) -> Any:
    """Counts with the true class as the first column; colored by share of the true class."""
    counts = analysis.confusion(run.predictions)
    frame = counts.reset_index(drop=True)
    frame.insert(0, CORNER, list(counts.index))
    frame.columns = [CORNER, *[str(c) for c in counts.columns]]
    numeric = frame.columns[1:]
    try:
        return frame.style.background_gradient(cmap="Blues", axis=1, subset=list(numeric))
    except ImportError:  # matplotlib missing: plain numbers
        return frame


def class_table(run: Run) -> pd.DataFrame:
    """Per-class precision, recall (the class's accuracy, with its Wilson interval), F1, support."""
    report = analysis.class_report(run.predictions).reset_index()
    right = np.rint(report["recall"] * report["support"]).astype(int)
    bounds = [metrics.wilson_interval(int(k), int(n)) for k, n in zip(right, report["support"])]
    report.insert(3, "recall 95 % CI", [f"{100 * lo:.1f}–{100 * hi:.1f}" for lo, hi in bounds])
    for c in ("precision", "recall", "f1"):
        report[c] = (100 * report[c]).round(1)
    report["support"] = report["support"].astype(int)
    return report.rename(columns={"class": "class", "precision": "precision %", "recall": "recall %", "f1": "F1 %"})


def rows_table(run: Run, rows: pd.DataFrame, limit: int = 500) -> pd.DataFrame:
    """The per-image table of some rows: file, label, prediction, confidence, loss, and each
    class's probability. Needs no image, so it works for runs published without pictures."""
    names = list(run.class_names)
    shown = rows.head(limit)
    table = pd.DataFrame({"file": shown["path"].astype(str), "label": shown["label_name"],
                          "predicted": shown["pred_name"], "confidence %": (100 * shown["confidence"]).round(1),
                          "loss": shown["loss"].round(3)})
    for name in names:
        column = f"prob_{name}"
        if column in shown:
            table[f"{name} %"] = (100 * shown[column]).round(1)
    return table.reset_index(drop=True)


def run_image(run: Run, relative: str, side: int | None = None) -> np.ndarray | None:
    """A row's image (the dataset's file, else the run's thumbnail) as RGB, at most ``side``
    pixels a side; None when neither can be read."""
    path = run.image_file(relative)
    if path is None:
        return None
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if side:
                im.thumbnail((side, side))
            return np.asarray(im)
    except (OSError, ValueError):
        return None


def gallery_items(run: Run, rows: pd.DataFrame, limit: int = GALLERY_LIMIT) -> tuple[list, list[int]]:
    """(image, caption) pairs for the first ``limit`` rows that have an image, and their row labels."""
    items, kept = [], []
    missing = _placeholder()
    for index, row in rows.head(limit).iterrows():
        image = run_image(run, row["path"], THUMB_SIDE)
        caption = gallery_caption(row)
        items.append((image if image is not None else missing, caption))
        kept.append(int(index))
    return items, kept


def gallery_caption(row: pd.Series) -> str:
    """"✓ Happiness 87%" for a correct prediction, "✗ Anger 40% (label Fear)" for a wrong one."""
    if row["correct"]:
        return f"✓ {row['pred_name']} {row['confidence']:.0%}"
    return f"✗ {row['pred_name']} {row['confidence']:.0%} (label {row['label_name']})"


def _placeholder() -> np.ndarray:
    return np.full((THUMB_SIDE, THUMB_SIDE, 3), 225, dtype=np.uint8)


def cell_rows(run: Run, row: int, col: int, sort: str | None = DEFAULT_SORT) -> tuple[pd.DataFrame, str] | None:
    """The sorted rows of a confusion-matrix cell (row = true class, col - 1 = predicted class; the
    first column holds the class names and selects the whole row) and what they are, or None."""
    names = list(run.class_names)
    true = int(row)
    predicted = int(col) - 1 if int(col) >= 1 else None
    if not 0 <= true < len(names) or (predicted is not None and not 0 <= predicted < len(names)):
        return None
    key, ascending = SORTS.get(sort or DEFAULT_SORT, SORTS[DEFAULT_SORT])
    rows = analysis.select(run.predictions, true=true, predicted=predicted, sort_by=key, ascending=ascending)
    what = (f"true {names[true]}, predicted {names[predicted]}" if predicted is not None
            else f"every image labeled {names[true]}")
    return rows, what

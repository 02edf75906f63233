"""Explorer tab handlers: evaluation runs, their confusion matrix, galleries and single images.

Runs are folders written by ``python -m poster evaluate`` (see ``data_explorer.runs``). Images
are shown from the dataset when it is still where it was evaluated, else from the run's
thumbnails; the galleries get small arrays, so no file outside the app's folders is served.
"""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from data_explorer import analysis
from data_explorer.label_errors import suspected_label_errors
from data_explorer.runs import Run
from poster.data import metrics
from poster.data.label_order import diagnose
from poster.weights.registry import PosterV2Weights

from . import render
from .messages import friendly
from .photo_result import Subject
from .explorer_runs import (HUB_PREFIX, SESSION_PREFIX, all_run_choices, get_run, how_to_make_a_run,  # noqa: F401
                            list_runs, run_choices, run_source)
from .store import ModelStore, get_store


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
    return '<div class="poster-stat-grid">' + "".join(
        f'<div class="poster-stat"><div class="poster-stat-value">{v}</div>'
        f'<div class="poster-stat-key">{k}</div><div class="poster-stat-sub">{sub}</div></div>'
        for v, k, sub in cards) + "</div>"


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


def thumbnail(run: Run, relative: str, side: int = THUMB_SIDE) -> np.ndarray | None:
    path = run.image_file(relative)
    if path is None:
        return None
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((side, side))
            return np.asarray(im)
    except (OSError, ValueError):
        return None


def gallery_items(run: Run, rows: pd.DataFrame, limit: int = GALLERY_LIMIT) -> tuple[list, list[int]]:
    """(image, caption) pairs for the first ``limit`` rows that have an image, and their row labels."""
    items, kept = [], []
    missing = _placeholder()
    for index, row in rows.head(limit).iterrows():
        image = thumbnail(run, row["path"])
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


@friendly("Opening the run")
def open_run(name: str | None, root: str | Path | None = None, session_dir: str | Path | None = None):
    """-> (summary, confusion matrix, per-class metrics, label-error gallery, their rows,
    cell gallery, cell rows, cell caption)."""
    run = get_run(name, root, session_dir)
    if run is None:
        empty = pd.DataFrame()
        return "", empty, empty, [], [], [], [], ""
    suspects = suspected_label_errors(run.predictions)
    items, rows = gallery_items(run, suspects, limit=24)
    caption = (f"{len(suspects)} suspected label errors (the model is confidently sure of another class); "
               f"lowest probability of the given label first." if len(suspects) else
               "No suspected label errors.")
    return (summary_html(run) + label_order_notice(run), confusion_table(run), class_table(run), items, rows, [], [],
            render.notice(f"Click a cell of the confusion matrix to see its images. {caption}"))


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


@friendly("Opening the cell")
def select_cell(name: str | None, row: int, col: int, sort: str | None = DEFAULT_SORT,
                root: str | Path | None = None, session_dir: str | Path | None = None, *, with_table: bool = False):
    """A clicked confusion-matrix cell -> (gallery, row labels, caption), and with ``with_table``
    also the cell's per-image table."""
    run = get_run(name, root, session_dir)
    found = cell_rows(run, row, col, sort) if run is not None else None
    if found is None:
        return ([], [], "", pd.DataFrame()) if with_table else ([], [], "")
    rows, what = found
    items, kept = gallery_items(run, rows)
    shown = f"showing {len(kept)} of {len(rows)}" if len(rows) > len(kept) else f"{len(rows)} image{'s' if len(rows) != 1 else ''}"
    caption = render.notice(f"{what}: {shown}, sorted by {sort or DEFAULT_SORT}.")
    return (items, kept, caption, rows_table(run, rows)) if with_table else (items, kept, caption)


def run_checkpoint_key(run: Run, model_key: str | None, store: ModelStore) -> tuple[str | None, str]:
    """The checkpoint that can explain this run's images, or (None, why not)."""
    wanted_sha = run.info.get("checkpoint_sha256")
    if model_key and store.is_loaded(model_key) and wanted_sha:
        if store.predictor(model_key).model.info.sha256 == wanted_sha:
            return model_key, ""
    name = str(run.info.get("checkpoint_dataset") or run.info.get("checkpoint") or "")
    try:
        key = PosterV2Weights.get(name).value.key
    except KeyError:
        return None, f"the run's checkpoint {name or '?'} is not one of the dataset checkpoints; load it in the Model tab"
    if key not in {c.key for c in store.choices()}:
        return None, f"the {key} checkpoint this run used is not available here"
    return key, ""


@friendly("Opening the image")
def select_image(name: str | None, rows: Sequence[int] | None, index: int | None, model_key: str | None,
                 root: str | Path | None = None, store: ModelStore | None = None,
                 session_dir: str | Path | None = None):
    """A clicked gallery image -> (large image, prediction card, subject to explain or None)."""
    store = store or get_store()
    run = get_run(name, root, session_dir)
    if run is None or rows is None or index is None or not 0 <= int(index) < len(rows):
        return None, "", None
    row = run.predictions.loc[rows[int(index)]]
    probs = analysis.probabilities(run.predictions.loc[[rows[int(index)]]])[0]
    path = run.image_file(row["path"])
    image = None
    if path is not None:
        try:
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
        except (OSError, ValueError):
            image = None
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
            if path is not None and run.path in path.parents:
                title += " (explained from the run's thumbnail: the dataset is not on this machine)"
            subject = Subject(crop=crop, model_key=key, title=title)
    if image is not None and max(image.shape[:2]) < 224:  # dataset crops are small: show them larger
        image = np.asarray(Image.fromarray(image).resize(
            (round(image.shape[1] * 224 / max(image.shape[:2])), round(image.shape[0] * 224 / max(image.shape[:2]))),
            Image.Resampling.BICUBIC))
    return image, card, subject

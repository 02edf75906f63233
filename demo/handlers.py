"""Event handlers of the Photo tab and of the explanation panel, and the error wrapper all tabs use.

Each handler is a plain function of plain values (paths, arrays, strings, the visitor's state
objects) returning plain values or ``gr.update``-style component values, so tests call them
directly. Bad input raises ``gr.Error`` with a one-line message: the browser shows it as a
notice and an API client gets it as an error; nothing else is affected.
"""
from __future__ import annotations

import functools
import logging
import os
import time
import traceback
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np

from poster.errors import ImageError, PosterError
from poster.inference.faces import FaceCrop, align_face, template, too_small_for_faces
from poster.inference.images import load_image
from poster.weights.registry import canonical_class, checkpoint_weights
from poster.inference.transforms import model_batch

from . import render
from .explanation_views import POSTER_V2_TITLES, gradcam_strip, is_model_explanation, panel_view
from .files import discard_upload, example_photos, uploaded_path
from .limits import MAX_IMAGE_PIXELS, max_image_bytes
from .store import ModelStore, checkpoint_label, get_store, missing_checkpoint_message

log = logging.getLogger("demo")

PREDICTED = "Predicted class"
QUOTE_CHARS = 200  # user input is quoted at most this long in messages and logs
MESSAGE_CHARS = 600
# Order of classes in the side-by-side comparison (canonical names, see poster.weights.registry).
CANONICAL_ORDER = ("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger", "Contempt")


# --- errors -------------------------------------------------------------------------------

def friendly(action: str) -> Callable:
    """Turn any failure of a handler into a one-line ``gr.Error`` (no traceback reaches a page).

    Our own errors (``PosterError``) carry messages meant for people; anything else is logged
    with its traceback on the server and shown as "``action`` failed (TypeName)".
    """
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except PosterError as exc:
                raise gr.Error(sentence(str(exc)), print_exception=False) from None
            except Exception as exc:  # noqa: BLE001 - the server must keep serving
                # The frames without the message: a message may quote whatever the visitor sent.
                log.error("%s failed: %s\n%s", action, quote(f"{type(exc).__name__}: {exc}", MESSAGE_CHARS),
                          "".join(traceback.format_tb(exc.__traceback__)))
                raise gr.Error(f"{action} failed ({type(exc).__name__}); the app is still running, "
                               "please try again", print_exception=False) from None
        return inner
    return wrap


def sentence(text: str) -> str:
    """One line, at most ``MESSAGE_CHARS`` long; a leading plain word is capitalized (file
    names are left as they are)."""
    text = quote(text, MESSAGE_CHARS)
    if not text:
        return "Something went wrong"
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first.isalpha() else text


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``value`` as one line of at most ``limit`` characters (longer ones end in "…"), so that
    whatever a visitor sends is never echoed or logged in full."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ClickError(PosterError):
    """A click event whose position is not two numbers."""


def click_point(index: Any) -> tuple[float, float]:
    """The (x, y) of a select event's ``index``; raises ``ClickError`` for anything else."""
    try:
        x, y = (float(v) for v in list(index)[:2])
    except (TypeError, ValueError):
        raise ClickError(f"the click position must be two numbers, got {quote(repr(index), 60)}") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ClickError("the click position must be two finite numbers")
    return x, y


# --- per-visitor values -------------------------------------------------------------------

@dataclass
class FaceView:
    """One face of an analyzed photo; ``probabilities`` is None when no checkpoint is loaded."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    crop: FaceCrop
    probabilities: np.ndarray | None

    def label(self, class_names: Sequence[str]) -> str:
        if self.probabilities is None:
            return "face"
        i = int(np.argmax(self.probabilities))
        return f"{class_names[i]} {self.probabilities[i]:.0%}"


@dataclass
class PhotoResult:
    """What the Photo tab (and a frozen webcam frame) keeps per visitor."""

    image: np.ndarray
    faces: list[FaceView]
    class_names: tuple[str, ...]
    model_key: str | None
    checkpoint: str
    reason: str = ""  # why faces are not classified
    note: str = ""  # why no face can be found, when the photo itself rules faces out
    dropped: int = 0
    seconds: float = 0.0

    @property
    def classified(self) -> bool:
        return bool(self.faces) and self.faces[0].probabilities is not None


@dataclass
class Subject:
    """One face to explain: its 224x224 crop and the checkpoint that should explain it."""

    crop: np.ndarray
    model_key: str | None
    title: str
    face_crop: FaceCrop | None = None


# --- photos -------------------------------------------------------------------------------

def read_photo(value: Any) -> np.ndarray:
    """An uploaded image as RGB uint8. ``value`` is Gradio's file payload, a path or an array.

    A payload (what arrives over HTTP) must name an upload in Gradio's cache or an example
    photo (``demo.files.uploaded_path``); paths and arrays come from Python callers. Raises
    ``ImageError`` with a readable message for files that are not images, too large or
    damaged; a refused upload is deleted from the cache.
    """
    if value is None:
        raise ImageError("no image: upload, paste or pick a photo")
    if isinstance(value, dict):
        path = uploaded_path(value)
        try:
            return _read_limited(path)
        except ImageError:
            discard_upload(path)
            raise
    if isinstance(value, (str, os.PathLike)):
        return _read_limited(Path(value))
    return load_image(value, max_pixels=MAX_IMAGE_PIXELS)


def _read_limited(path: Path) -> np.ndarray:
    limit = max_image_bytes()
    if path.is_file() and path.stat().st_size > limit:
        raise ImageError(f"{quote(path.name)} is {path.stat().st_size / 2**20:.0f} MB; "
                         f"images up to {limit / 2**20:.0f} MB are accepted")
    return load_image(path, max_pixels=MAX_IMAGE_PIXELS)


def active_key(model_key: str | None, store: ModelStore) -> str | None:
    """The visitor's checkpoint; API clients (no page, no choice) get the default one."""
    return model_key or store.default_key()


def find_faces(image: np.ndarray, model_key: str | None, store: ModelStore) -> PhotoResult:
    """Detect, align and (when a checkpoint is available) classify every face."""
    start = time.perf_counter()
    model_key = active_key(model_key, store)
    predictor, reason = store.try_predictor(model_key)
    note = too_small_for_faces(image, store.detector().config.min_face_size)
    if note:
        return PhotoResult(image=image, faces=[], class_names=(), model_key=model_key,
                           checkpoint=store.label(model_key) if predictor is not None else "",
                           reason=reason, note=note, seconds=time.perf_counter() - start)
    if predictor is not None:
        with store.using(model_key):
            faces = predictor.predict(image)
        views = [FaceView(f.box, f.landmarks, f.crop, f.probabilities) for f in faces]
        class_names, checkpoint, dropped = predictor.class_names, store.label(model_key), faces.dropped
    else:
        detections = store.detector().detect(image)
        views = [FaceView(f.box, f.landmarks, align_face(image, f), None) for f in detections]
        class_names, checkpoint, dropped = (), "", detections.dropped
    return PhotoResult(image=image, faces=views, class_names=tuple(class_names), model_key=model_key,
                       checkpoint=checkpoint, reason=reason, dropped=dropped,
                       seconds=time.perf_counter() - start)


def face_labels(result: PhotoResult) -> list[str]:
    return [f"{i + 1}: {f.label(result.class_names)}" for i, f in enumerate(result.faces)]


def annotated(result: PhotoResult, selected: int | None = None) -> np.ndarray:
    labels = [f"{i + 1} {f.label(result.class_names)}" for i, f in enumerate(result.faces)]
    return render.annotate(result.image, [f.box for f in result.faces], labels,
                           [f.landmarks for f in result.faces], selected if len(result.faces) > 1 else None)


def summary_line(result: PhotoResult) -> str:
    n = len(result.faces)
    if n == 0 and result.note:
        return render.notice(sentence(result.note) + ".", "warn")
    if n == 0:
        return render.notice("No face found. Try a photo where faces are at least 40 pixels wide, "
                             "frontal and well lit.", "warn")
    faces = f"{n} face{'s' if n != 1 else ''}"
    extra = f" ({result.dropped} smaller faces left out)" if result.dropped else ""
    if not result.classified:
        return render.notice(f"{faces} found{extra}, not classified: {short_reason(result.reason)}", "warn")
    return render.notice(f"{faces} found{extra} · checkpoint {result.checkpoint} · {result.seconds:.2f} s")


def short_reason(reason: str) -> str:
    """Why nothing is classified, short: the page's top note already lists the ways to add one."""
    if not reason or reason == missing_checkpoint_message():
        return "no checkpoint is loaded (the note at the top says how to add one)."
    return reason


def bars_html(result: PhotoResult) -> str:
    items = []
    for i, face in enumerate(result.faces):
        title = f"Face {i + 1}" + (f" · {face.label(result.class_names)}" if face.probabilities is not None else "")
        note = "" if face.probabilities is not None else "not classified: no checkpoint loaded"
        items.append(render.probability_bars(title, result.class_names, face.probabilities,
                                             render.face_color(i), note=note))
    return render.cards(items)


def faces_json(result: PhotoResult | None) -> list[dict]:
    """The result as plain data (for the JSON view and API clients): one dict per face."""
    if result is None:
        return []
    out = []
    for i, face in enumerate(result.faces):
        item: dict[str, Any] = {"face": i + 1, "box": [round(float(v), 1) for v in face.box]}
        if face.probabilities is not None:
            top = int(np.argmax(face.probabilities))
            item.update(label=result.class_names[top], confidence=round(float(face.probabilities[top]), 4),
                        probabilities={n: round(float(p), 4) for n, p in zip(result.class_names, face.probabilities)},
                        checkpoint=result.checkpoint)
        else:
            item.update(label=None, note=result.reason or missing_checkpoint_message())
        out.append(item)
    return out


def face_selector(result: PhotoResult | None, selected: int = 0) -> dict:
    """The Radio that picks the face to explain (hidden for fewer than two faces)."""
    if result is None or not result.faces:
        return gr.update(choices=[], value=None, visible=False)
    choices = [(label, i) for i, label in enumerate(face_labels(result))]
    return gr.update(choices=choices, value=selected, visible=len(choices) > 1)


def subject_of(result: PhotoResult | None, index: int | None) -> Subject | None:
    if result is None or not result.faces:
        return None
    index = min(max(int(index or 0), 0), len(result.faces) - 1)
    face = result.faces[index]
    title = f"Face {index + 1}" + (f" · {face.label(result.class_names)}" if face.probabilities is not None else "")
    return Subject(crop=face.crop.image, model_key=result.model_key, title=title, face_crop=face.crop)


@friendly("Analyzing the photo")
def analyze_photo(image: Any, model_key: str | None, store: ModelStore | None = None):
    """Photo in -> (annotated image, summary line, probability cards, face selector, faces as JSON,
    result, subject)."""
    store = store or get_store()
    if image is None:
        return None, "", "", face_selector(None), [], None, None
    result = find_faces(read_photo(image), model_key, store)
    return (annotated(result, 0), summary_line(result), bars_html(result), face_selector(result, 0),
            faces_json(result), result, subject_of(result, 0))


def select_face(result: PhotoResult | None, index: int | None):
    """A face picked in the selector -> (annotated image with it outlined, its subject)."""
    if result is None or not result.faces or index is None:
        return gr.update(), None
    return annotated(result, int(index)), subject_of(result, index)


def face_at(result: PhotoResult | None, x: float, y: float) -> int | None:
    """The face under a click at (x, y) photo pixels: the smallest box holding it, else the nearest.

    Raises ``ClickError`` when x or y is not a number (a click event comes from the browser)."""
    x, y = click_point((x, y))
    if result is None or not result.faces:
        return None
    inside = [(_area(f.box), i) for i, f in enumerate(result.faces)
              if f.box[0] <= x <= f.box[2] and f.box[1] <= y <= f.box[3]]
    if inside:
        return min(inside)[1]
    centres = [((f.box[0] + f.box[2]) / 2 - x) ** 2 + ((f.box[1] + f.box[3]) / 2 - y) ** 2 for f in result.faces]
    return int(np.argmin(centres))


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


# --- explanations -------------------------------------------------------------------------

PANEL_TITLES = dict(zip(("gradcam_image", "gradcam_landmark", "cross_attention", "rollout"), POSTER_V2_TITLES))


def target_choices(class_names: Sequence[str]) -> list[str]:
    return [PREDICTED, *class_names]


@friendly("Explaining the face")
def explain_subject(subject: Subject | None, target: str | None, store: ModelStore | None = None):
    """Face -> (4 panels, clickable crop, point-attention panel, explanation, status line, target picker).

    Needs a checkpoint; without one the panels stay empty and the status says why.
    """
    store = store or get_store()
    no_target = gr.update(choices=[PREDICTED], value=PREDICTED)
    if subject is None:
        return (None,) * 7 + ("", no_target)
    predictor, reason = store.try_predictor(subject.model_key)
    if predictor is None:
        return (None,) * 4 + (subject.crop, None, None,
                              render.notice(f"No explanation: {short_reason(reason)}", "warn"), no_target)
    names = predictor.class_names
    target_index = names.index(target) if target in names else None
    explainer = store.explainer(subject.model_key)
    start = time.perf_counter()
    with store.using(subject.model_key, exclusive=True):
        explanation = explainer.explain(model_batch([subject.crop], predictor.model), target=target_index)[0]
    seconds = time.perf_counter() - start
    panels = _panels(explanation)
    point = default_point()
    marked, point_panel = point_attention(explanation, *point)
    target_name = names[explanation.target]
    click = " Click a point on the face to see where it looks." if not is_model_explanation(explanation) else ""
    status = render.notice(f"{subject.title} · explaining '{target_name}' with {store.label(subject.model_key)}"
                           f" · {seconds:.1f} s.{click}")
    return (*panels, marked, point_panel, explanation, status,
            gr.update(choices=target_choices(names), value=target_name if target_index is not None else PREDICTED))


def _panels(explanation: Any) -> list[np.ndarray | None]:
    return panel_view(explanation).images


def default_point() -> tuple[float, float]:
    """The nose tip of the alignment template: a sensible first query point."""
    x, y = template(224)[2]
    return float(x), float(y)


def point_attention(explanation: Any, x: float, y: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Where the landmark query at crop pixel (x, y) attends, at the three cross-attention levels
    (POSTER++ only: other models' explanations get the crop and no map)."""
    if explanation is None:
        return None, None
    if is_model_explanation(explanation):
        return explanation.image, None
    from explain import maps
    from explain import render as explain_render

    size = explanation.image.shape[0]
    x = float(min(max(x, 0), size - 1))
    y = float(min(max(y, 0), size - 1))
    attention = explanation.query_attention((x, y))
    sides = [f"{m.shape[0]}x{m.shape[1]}" for m in attention]
    panel = explain_render.panel(
        explanation.image, [maps.relative_to_uniform(m) for m in attention],
        [f"level {i + 1} ({s})" for i, s in enumerate(sides)], vmin=0.0,
        label="attention of the clicked position, x uniform", tile=160)
    return render.mark_point(explanation.image, (x, y)), panel


# --- comparing checkpoints ----------------------------------------------------------------

@friendly("Comparing checkpoints")
def compare_checkpoints(subject: Subject | None, store: ModelStore | None = None,
                        progress: Callable | None = None):
    """Every available checkpoint of every architecture on the same face -> (HTML table, one
    Grad-CAM row per checkpoint, status). ARM classifies the face alone, as everywhere."""
    store = store or get_store()
    if subject is None:
        return "", [], render.notice("Analyze a photo first.", "info")
    choices = [c for c in store.choices() if c.weights is not None]
    if not choices:
        return "", [], render.notice(missing_checkpoint_message(), "warn")
    results, problems, gallery = [], [], []
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
    table = compare_table(results)
    compared = {r[0] for r in results}
    missing = [label for label in map(checkpoint_label, checkpoint_weights()) if label not in compared]
    note = f"{len(results)} checkpoint{'s' if len(results) != 1 else ''} compared on {subject.title}."
    if missing:
        note += f" Not available: {', '.join(missing)} (add them in the Model tab)."
    if problems:
        note += " " + " ".join(problems)
    return table, gallery, render.notice(note, "info" if not problems else "warn")


def compare_rows(results: Sequence[tuple[str, Sequence[str], np.ndarray]]) -> tuple[list[str], list[list[float | None]]]:
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


def compare_table(results: Sequence[tuple[str, Sequence[str], np.ndarray]]) -> str:
    if not results:
        return ""
    order, rows = compare_rows(results)
    tops = [canonical_class(names[int(np.argmax(p))]) for _, names, p in results]
    body = [[f"<b>{escape(cls)}</b>"] + [render.bar_cell(v, strong=(cls == tops[j])) for j, v in enumerate(row)]
            for cls, row in zip(order, rows)]
    return render.table_html(["Class"] + [escape(r[0]) for r in results], body,
                             "Probabilities per checkpoint, classes lined up by name (— : the checkpoint has no such class)")

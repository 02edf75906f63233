"""What a classified photo is: its faces, the face to explain, and how the page shows them.

Shared by the Photo tab and the webcam's frozen frame: ``find_faces`` detects, aligns and
classifies, ``photo_view`` turns the result into what the page shows (annotated image,
summary line, probability cards, face picker, JSON), and ``select_face`` / ``on_face_click``
pick the face to explain.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from poster.errors import ImageError
from poster.inference.faces import FaceCrop, align_face, too_small_for_faces
from poster.inference.images import load_image
from poster.inference.predictor import FacePrediction

from . import render
from ..serving.files import discard_upload, uploaded_path
from ..serving.limits import MAX_IMAGE_PIXELS, max_image_bytes
from .messages import click_point, friendly, quote, sentence
from .outputs import keep
from ..serving.store import ModelStore, missing_checkpoint_message


@dataclass
class PhotoResult:
    """What the Photo tab (and a frozen webcam frame) keeps per visitor."""

    image: np.ndarray
    faces: list[FacePrediction]  # unclassified ones when no checkpoint is loaded
    class_names: tuple[str, ...]
    model_key: str | None
    checkpoint: str
    reason: str = ""  # why faces are not classified
    note: str = ""  # why no face can be found, when the photo itself rules faces out
    dropped: int = 0
    seconds: float = 0.0

    @property
    def classified(self) -> bool:
        return bool(self.faces) and self.faces[0].classified


@dataclass
class Subject:
    """One face to explain: its 224x224 crop and the checkpoint that should explain it."""

    crop: np.ndarray
    model_key: str | None
    title: str
    face_crop: FaceCrop | None = None


@dataclass
class FaceChoice:
    """A face picked in the selector: the photo with it outlined, and it as the subject to explain."""

    annotated: np.ndarray | dict
    subject: Subject | None


@dataclass
class FaceClick:
    """A face clicked on the photo: the selector set to it, the photo outlined, its subject."""

    faces: dict
    annotated: np.ndarray | dict
    subject: Subject | None


@dataclass
class PhotoView:
    """A photo's result as the page shows it (the outputs of the public ``/analyze`` endpoint)."""

    annotated: np.ndarray | None
    summary: str
    bars: str
    faces: dict  # the face picker's update
    as_json: list[dict]
    result: PhotoResult | None
    subject: Subject | None


# --- photos -------------------------------------------------------------------------------

def read_photo(value: Any) -> np.ndarray:
    """An uploaded image as RGB uint8. ``value`` is Gradio's file payload, a path or an array.

    A payload (what arrives over HTTP) must name an upload in Gradio's cache or an example
    photo (``demo.serving.files.uploaded_path``); paths and arrays come from Python callers. Raises
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
            found = predictor.predict(image)
        faces, class_names, checkpoint = list(found), predictor.class_names, store.label(model_key)
    else:
        found = store.detector().detect(image)
        faces = [FacePrediction.unclassified(f, align_face(image, f)) for f in found]
        class_names, checkpoint = (), ""
    return PhotoResult(image=image, faces=faces, class_names=tuple(class_names), model_key=model_key,
                       checkpoint=checkpoint, reason=reason, dropped=found.dropped,
                       seconds=time.perf_counter() - start)


# --- what the page shows ------------------------------------------------------------------

def face_title(result: PhotoResult, index: int) -> str:
    """"Face 2 · Happiness 87%" ("Face 2" alone when it is not classified)."""
    face = result.faces[index]
    return f"Face {index + 1}" + (f" · {face.caption}" if face.classified else "")


def face_labels(result: PhotoResult) -> list[str]:
    return [f"{i + 1}: {f.caption}" for i, f in enumerate(result.faces)]


def annotated(result: PhotoResult, selected: int | None = None) -> np.ndarray:
    """The photo with every face boxed and labeled; ``selected`` is outlined when there are several."""
    labels = [f"{i + 1} {f.caption}" for i, f in enumerate(result.faces)]
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
        note = "" if face.classified else "not classified: no checkpoint loaded"
        items.append(render.probability_bars(face_title(result, i), result.class_names, face.probabilities,
                                             render.face_color(i), note=note))
    return render.cards(items)


def faces_json(result: PhotoResult | None) -> list[dict]:
    """The result as plain data (for the JSON view and API clients): one dict per face."""
    if result is None:
        return []
    out = []
    for i, face in enumerate(result.faces):
        item: dict[str, Any] = {"face": i + 1, "box": [round(float(v), 1) for v in face.box]}
        if face.classified:
            item.update(label=face.label, confidence=round(face.confidence, 4),
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
    """The face at ``index`` (clamped to the faces there are) as the subject to explain."""
    if result is None or not result.faces:
        return None
    index = min(max(int(index or 0), 0), len(result.faces) - 1)
    face = result.faces[index]
    return Subject(crop=face.crop.image, model_key=result.model_key, title=face_title(result, index),
                   face_crop=face.crop)


def photo_view(result: PhotoResult, selected: int = 0) -> PhotoView:
    """Everything the page shows of ``result``, with face ``selected`` outlined and chosen to explain."""
    return PhotoView(annotated=annotated(result, selected), summary=summary_line(result), bars=bars_html(result),
                     faces=face_selector(result, selected), as_json=faces_json(result), result=result,
                     subject=subject_of(result, selected))


def empty_view(summary: str = "") -> PhotoView:
    """No photo: empty outputs, with ``summary`` saying why where there is something to say."""
    return PhotoView(annotated=None, summary=summary, bars="", faces=face_selector(None), as_json=[], result=None,
                     subject=None)


def face_at(result: PhotoResult | None, x: float, y: float) -> int | None:
    """The face under a click at (x, y) photo pixels: the smallest box holding it, else the nearest.

    Raises ``ClickError`` when x or y is not a number (a click event comes from the browser)."""
    x, y = click_point((x, y))
    if result is None or not result.faces:
        return None
    inside = [(f.area, i) for i, f in enumerate(result.faces)
              if f.box[0] <= x <= f.box[2] and f.box[1] <= y <= f.box[3]]
    if inside:
        return min(inside)[1]
    centres = [((f.box[0] + f.box[2]) / 2 - x) ** 2 + ((f.box[1] + f.box[3]) / 2 - y) ** 2 for f in result.faces]
    return int(np.argmin(centres))


def select_face(result: PhotoResult | None, index: int | None) -> FaceChoice:
    """A face picked in the selector -> the photo with it outlined, and its subject."""
    if result is None or not result.faces or index is None:
        return FaceChoice(annotated=keep(), subject=None)
    return FaceChoice(annotated=annotated(result, int(index)), subject=subject_of(result, index))


@friendly("Selecting the face")
def on_face_click(result: PhotoResult | None, evt: gr.SelectData) -> FaceClick:
    """A click on an annotated image selects the face under it."""
    index = face_at(result, *click_point(evt.index))
    if index is None:
        return FaceClick(faces=keep(), annotated=keep(), subject=None)
    choice = select_face(result, index)
    return FaceClick(faces=gr.update(value=index), annotated=choice.annotated, subject=choice.subject)

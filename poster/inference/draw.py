"""Boxes, labels and landmarks drawn onto a photo (for `predict --annotate` and the app)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# One color per face, distinguishable on photos (Tableau 10).
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac"]


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans Bold (shipped with matplotlib) at ``size`` pixels; PIL's own font without it."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size)


def draw_faces(image: np.ndarray, boxes: Sequence[Sequence[float]], labels: Sequence[str] | None = None,
               landmarks: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """A copy of ``image`` with each box, its label above it and its five landmark points."""
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    height, width = image.shape[:2]
    line = max(2, round(max(height, width) / 300))
    font_ = font(max(12, round(max(height, width) / 45)))
    for i, box in enumerate(boxes):
        color = PALETTE[i % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=line)
        if landmarks is not None:
            r = line + 1
            for x, y in np.asarray(landmarks[i]).reshape(-1, 2):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        if labels is not None and labels[i]:
            text = labels[i]
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font_)
            tw, th = right - left, bottom - top
            ty = y1 - th - 2 * line if y1 - th - 2 * line >= 0 else y2 + line
            tx = min(max(0.0, x1), max(0.0, width - tw - 2 * line))
            draw.rectangle([tx, ty, tx + tw + 2 * line, ty + th + 2 * line], fill=color)
            draw.text((tx + line - left, ty + line - top), text, fill="white", font=font_)
    return np.asarray(canvas)


def draw_predictions(image: np.ndarray, faces: Sequence) -> np.ndarray:
    """``draw_faces`` for ``FacePrediction``s: "Happiness 87%" above each face."""
    labels = [f.caption for f in faces]
    return draw_faces(image, [f.box for f in faces], labels, [f.landmarks for f in faces])

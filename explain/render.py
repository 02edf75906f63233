"""Pictures of explanations as uint8 RGB arrays: overlays, titled panels with a color bar, summaries.

Drawn with PIL and matplotlib's colormap tables only (no figures), so a panel takes milliseconds.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import maps
from .explainer import FaceExplanation
from .models import ModelExplanation

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
GAP = 8
TITLE_HEIGHT = 20
BAR_HEIGHT = 12


@lru_cache(maxsize=16)
def _lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colormap."""
    return (matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def colorize(map2d: np.ndarray, cmap: str = "jet", vmin: float | None = None,
             vmax: float | None = None) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 colors; the range defaults to the map's own."""
    values = np.asarray(map2d, dtype=np.float32)
    lo = float(np.nanmin(values)) if vmin is None else vmin
    hi = float(np.nanmax(values)) if vmax is None else vmax
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    index = np.nan_to_num(np.clip(scaled, 0.0, 1.0) * 255, nan=0.0).round().astype(np.intp)
    return _lut(cmap)[index]


def overlay(image: np.ndarray, map2d: np.ndarray, cmap: str = "jet", alpha: float = 0.5,
            vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Blend a colored map over an (H, W, 3) uint8 image; the map is resized bilinearly to fit.

    NaN cells (e.g. photo pixels outside a warped crop) leave the image as it is.
    """
    image = np.asarray(image, dtype=np.uint8)
    values = maps.upsample(map2d, image.shape[:2])
    colors = colorize(values, cmap, vmin, vmax).astype(np.float32)
    weight = np.where(np.isnan(values), 0.0, alpha).astype(np.float32)[..., None]
    return (image * (1.0 - weight) + colors * weight).round().astype(np.uint8)


def colorbar(width: int, vmin: float, vmax: float, cmap: str = "jet", label: str = "") -> np.ndarray:
    """A horizontal legend: the color ramp with its end values and a label underneath."""
    font = _font(11)
    canvas = Image.new("RGB", (width, BAR_HEIGHT + 16), BACKGROUND)
    ramp = np.repeat(_lut(cmap)[None], BAR_HEIGHT, axis=0)
    canvas.paste(Image.fromarray(ramp).resize((width, BAR_HEIGHT), Image.Resampling.BILINEAR), (0, 0))
    draw = ImageDraw.Draw(canvas)
    low, high = _number(vmin), _number(vmax)
    draw.text((0, BAR_HEIGHT + 2), low, fill=INK, font=font)
    draw.text((width - draw.textlength(high, font=font), BAR_HEIGHT + 2), high, fill=INK, font=font)
    if label:
        draw.text(((width - draw.textlength(label, font=font)) / 2, BAR_HEIGHT + 2), label, fill=INK, font=font)
    return np.asarray(canvas)


def panel(image: np.ndarray, map_list: Sequence[np.ndarray], titles: Sequence[str] | None = None,
          cmap: str = "jet", alpha: float = 0.5, vmin: float | None = None, vmax: float | None = None,
          label: str = "", tile: int = 224) -> np.ndarray:
    """Overlays of several maps on one image side by side, titled, on one shared color scale.

    The scale runs from ``vmin``/``vmax`` or else the smallest/largest value over all maps; a color
    bar under the row shows it.
    """
    if not map_list:
        raise ValueError("no maps to draw")
    titles = list(titles) if titles is not None else [""] * len(map_list)
    lo = min(float(np.nanmin(m)) for m in map_list) if vmin is None else vmin
    hi = max(float(np.nanmax(m)) for m in map_list) if vmax is None else vmax
    base = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((tile, tile), Image.Resampling.BILINEAR)
    base = np.asarray(base)
    width = len(map_list) * tile + (len(map_list) - 1) * GAP
    bar = colorbar(width, lo, hi, cmap, label)
    canvas = Image.new("RGB", (width, TITLE_HEIGHT + tile + GAP // 2 + bar.shape[0]), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    for i, (map2d, title) in enumerate(zip(map_list, titles)):
        x = i * (tile + GAP)
        draw.text((x + (tile - draw.textlength(title, font=font)) / 2, 2), title, fill=INK, font=font)
        canvas.paste(Image.fromarray(overlay(base, map2d, cmap, alpha, lo, hi)), (x, TITLE_HEIGHT))
    canvas.paste(Image.fromarray(bar), (0, TITLE_HEIGHT + tile + GAP // 2))
    return np.asarray(canvas)


def explanation_panels(explanation: FaceExplanation, cmap: str = "jet", alpha: float = 0.5,
                       tile: int = 160) -> dict[str, np.ndarray]:
    """One panel per kind of map, each on a scale that makes its three maps comparable.

    Grad-CAM maps of different layers have unrelated magnitudes, so each is divided by its own
    maximum; attention maps are distributions, shown as multiples of the uniform share.
    """
    sides = [f"{m.shape[0]}x{m.shape[1]}" for m in explanation.cross_attention]
    target = explanation.class_names[explanation.target]
    image = explanation.image
    rollout_tokens = sum(m.size for m in explanation.rollout)
    return {
        "gradcam_image": panel(image, [maps.normalize(m) for m in explanation.gradcam_image],
                               [f"image stream {s}" for s in sides], cmap, alpha, 0.0, 1.0,
                               f"Grad-CAM for '{target}' / map max", tile),
        "gradcam_landmark": panel(image, [maps.normalize(m) for m in explanation.gradcam_landmark],
                                  [f"landmark stream {s}" for s in sides], cmap, alpha, 0.0, 1.0,
                                  f"Grad-CAM for '{target}' / map max", tile),
        "cross_attention": panel(image, [maps.relative_to_uniform(m) for m in explanation.cross_attention],
                                 [f"cross-attention {s}" for s in sides], cmap, alpha, 0.0, None,
                                 "attention received, x uniform", tile),
        "rollout": panel(image, [m * rollout_tokens for m in explanation.rollout],
                         [f"ViT rollout, scale {i + 1}" for i in range(len(explanation.rollout))],
                         cmap, alpha, None, None, "CLS rollout, x uniform", tile),
    }


def summary(explanation: FaceExplanation, k: int = 3, cmap: str = "jet", alpha: float = 0.5,
            tile: int = 160) -> np.ndarray:
    """The crop with its top classes on the left, the four panels stacked on the right."""
    rows = list(explanation_panels(explanation, cmap, alpha, tile).values())
    right_width = max(r.shape[1] for r in rows)
    right_height = sum(r.shape[0] for r in rows) + GAP * (len(rows) - 1)
    left = _face_card(explanation, k, width=max(2 * tile, 224))
    canvas = Image.new("RGB", (left.shape[1] + 2 * GAP + right_width + GAP,
                               max(left.shape[0], right_height) + 2 * GAP), BACKGROUND)
    canvas.paste(Image.fromarray(left), (GAP, GAP))
    y = GAP
    for row in rows:
        canvas.paste(Image.fromarray(row), (left.shape[1] + 2 * GAP, y))
        y += row.shape[0] + GAP
    return np.asarray(canvas)


def _face_card(explanation: FaceExplanation, k: int, width: int) -> np.ndarray:
    """The crop, then one probability bar per top class; the explained class is marked."""
    font = _font(13)
    line = 22
    top = explanation.top_classes(k)
    crop = Image.fromarray(explanation.image).resize((width, width), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, width + GAP + line * (len(top) + 1)), BACKGROUND)
    canvas.paste(crop, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = width + GAP
    target = explanation.class_names[explanation.target]
    draw.text((0, y), f"explained: {target}", fill=INK, font=font)
    for name, probability in top:
        y += line
        draw.rectangle((0, y + 2, int(width * probability), y + line - 4), fill=(120, 170, 230))
        draw.text((4, y + 3), f"{name}  {probability:.1%}", fill=INK, font=font)
    return np.asarray(canvas)


def _number(value: float) -> str:
    return f"{value:.3g}"


def model_panels(explanation: ModelExplanation, cmap: str = "jet", alpha: float = 0.5, tile: int = 160,
                 attention_blocks: Sequence[int] = (0,)) -> tuple[dict[str, np.ndarray], list[str]]:
    """Panels of a ``ModelExplainer`` result, each titled with what its maps are, and the notes
    for what has no spatial picture (drawn as text, never as a misleading map).

    Grad-CAM maps are divided by their own maximum; attention maps are shown as multiples of the
    uniform share over their grid. ``attention_blocks``: which blocks' spatial attention to draw.
    """
    target = explanation.class_names[explanation.target]
    image = explanation.image
    panels = {"gradcam": panel(image, [maps.normalize(m.values) for m in explanation.gradcam],
                               [m.name for m in explanation.gradcam], cmap, alpha, 0.0, 1.0,
                               f"Grad-CAM for '{target}' / map max", tile)}
    wanted = tuple(f"block {b} " for b in attention_blocks)
    spatial = [m for m in explanation.attention if m.spatial and m.name.startswith(wanted)]
    if spatial:
        panels["attention"] = panel(image, [maps.relative_to_uniform(m.values / m.values.sum()) for m in spatial],
                                    [m.name.removesuffix(" landmark-from-image") for m in spatial], cmap, alpha,
                                    0.0, None, "landmark positions: attention received, x uniform", tile)
    native = [m for m in explanation.native if m.spatial]
    if native:
        panels["native"] = panel(image, [maps.normalize(np.maximum(m.values - m.values.min(), 0)) for m in native],
                                 [m.name for m in native], cmap, alpha, 0.0, 1.0, "shifted to 0, / map max", tile)
    notes = list(dict.fromkeys(f"{m.name.split(' ', 3)[-1] if m.name.startswith('block') else m.name}: {m.meaning}"
                               for m in explanation.attention + explanation.native if not m.spatial))
    return panels, notes

"""Pictures of explanations as uint8 RGB arrays: overlays, titled panels with a color bar, summaries.

Drawn with PIL and matplotlib's colormap tables only (no figures), so a panel takes milliseconds.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import maps
from .explainer import FaceExplanation, LabelledMap

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


@dataclass(frozen=True)
class Panel:
    """One picture of an explanation and the title that says what its maps are."""

    title: str
    image: np.ndarray


def explanation_panels(explanation: FaceExplanation, cmap: str = "jet", alpha: float = 0.5, tile: int = 160,
                       attention_blocks: Sequence[int] = (0,)) -> list[Panel]:
    """The panels of any model's explanation, in order: Grad-CAM (one panel per family of layers
    at several scales, the single layers together), attention received, the model's own maps,
    the attention rollout. Panels only for what the model has.

    Grad-CAM maps of different layers have unrelated magnitudes, so each is divided by its own
    maximum; attention maps are distributions, shown as multiples of the uniform share.
    ``attention_blocks``: which transformer blocks' attention to draw, where there are several.
    """
    target = explanation.class_names[explanation.target]
    image = explanation.image
    panels = []
    for family in _gradcam_families(explanation.gradcam):
        panels.append(Panel(f"Grad-CAM · {_family_title(family)}",
                            panel(image, [maps.normalize(m.values) for m in family], [m.name for m in family], cmap,
                                  alpha, 0.0, 1.0, f"Grad-CAM for '{target}' / map max", tile)))
    spatial = [m for m in explanation.attention if m.spatial and m.block in (None, *attention_blocks)]
    if spatial:
        grids = ", ".join(dict.fromkeys(_grid(m.values) for m in spatial))
        panels.append(Panel(f"Attention received ({grids}): {spatial[0].meaning.split(';')[0]}",
                            panel(image, [maps.relative_to_uniform(m.values / m.values.sum()) for m in spatial],
                                  _short_names([m.name for m in spatial]), cmap, alpha, 0.0, None,
                                  "attention received, x uniform", tile)))
    native = [m for m in explanation.native if m.spatial]
    if native:
        panels.append(Panel(f"The model's own maps · {', '.join(m.name for m in native)} ({_grid(native[0].values)})",
                            panel(image, [maps.normalize(np.maximum(m.values - m.values.min(), 0)) for m in native],
                                  [m.name for m in native], cmap, alpha, 0.0, 1.0, "shifted to 0, / map max", tile)))
    if explanation.rollout:
        tokens = sum(m.values.size for m in explanation.rollout)
        panels.append(Panel("Attention rollout (class token → tokens)",
                            panel(image, [m.values * tokens for m in explanation.rollout],
                                  [m.name for m in explanation.rollout], cmap, alpha, None, None,
                                  "class-token rollout, x uniform", tile)))
    return panels


def explanation_notes(explanation: FaceExplanation) -> list[str]:
    """What has no spatial picture, in words (drawn as text, never as a misleading map); the same
    note of several blocks once."""
    return list(dict.fromkeys(f"{_unblocked(m.name) if m.block is not None else m.name}: {m.meaning}"
                              for m in explanation.attention + explanation.native if not m.spatial))


def query_panel(explanation: FaceExplanation, point: tuple[float, float], cmap: str = "jet",
                tile: int = 160) -> np.ndarray | None:
    """Where the query at ``point`` (x, y crop pixels) attends, or None where no query is a position."""
    attention = explanation.query_attention(point)
    if not attention:
        return None
    return panel(explanation.image, [maps.relative_to_uniform(m.values) for m in attention],
                 [m.name for m in attention], cmap, vmin=0.0, label="attention of the clicked position, x uniform",
                 tile=tile)


def gradcam_strip(explanation: FaceExplanation, tile: int = 160) -> np.ndarray:
    """Every Grad-CAM map of one explanation in one row, each labelled (for comparisons)."""
    target = explanation.class_names[explanation.target]
    return panel(explanation.image, [maps.normalize(m.values) for m in explanation.gradcam],
                 [m.name for m in explanation.gradcam], vmin=0.0, vmax=1.0,
                 label=f"Grad-CAM for '{target}' / map max", tile=tile)


def summary(explanation: FaceExplanation, k: int = 3, cmap: str = "jet", alpha: float = 0.5,
            tile: int = 160) -> np.ndarray:
    """The crop with its top classes on the left, the panels stacked on the right."""
    rows = [p.image for p in explanation_panels(explanation, cmap, alpha, tile)]
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


def _gradcam_families(layers: list[LabelledMap]) -> list[list[LabelledMap]]:
    """Layers sharing a label (one family at several scales) each get a panel; single layers share one."""
    groups: dict[str, list[LabelledMap]] = {}
    for m in layers:
        groups.setdefault(m.group, []).append(m)
    families = [g for g in groups.values() if len(g) > 1]
    singles = [g[0] for g in groups.values() if len(g) == 1]
    return families + ([singles] if singles else [])


def _family_title(layers: list[LabelledMap]) -> str:
    """ "IR-50 stage 1", "IR-50 stage 2", "MobileFaceNet" -> "IR-50 stages and MobileFaceNet"."""
    plural = {"stage": "stages", "layer": "layers", "block": "blocks"}
    names = []
    for layer in layers:
        kind = re.search(r"\s(stage|layer|block)\s+\d+$", layer.group)
        names.append(f"{layer.group[:kind.start()]} {plural[kind.group(1)]}" if kind else layer.group)
    return " and ".join(dict.fromkeys(names))


def _short_names(names: list[str]) -> list[str]:
    """Tile titles without the words every name ends with ("block 0 large landmark-from-image" -> "block 0 large")."""
    words = [n.split() for n in names]
    common = 0
    while len(names) > 1 and all(len(w) > common + 1 for w in words) and len({w[-1 - common] for w in words}) == 1:
        common += 1
    return [" ".join(w[:len(w) - common]) for w in words]


def _unblocked(name: str) -> str:
    """ "block 3 large image-from-landmark" -> "large image-from-landmark"."""
    return re.sub(r"^block \d+ ", "", name)


def _grid(values: np.ndarray) -> str:
    return f"{values.shape[0]}x{values.shape[1]}"


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

"""What the explanation panel and the comparison draw for each kind of explanation.

POSTER++'s ``FaceExplanation`` fills the panel's four slots as it always has (both streams'
Grad-CAM, cross-attention, rollout). A ``ModelExplanation`` (POSTER, ARM) fills only what its
model has, each slot titled by the model's own map names; maps without a spatial picture become
notes, never drawings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np

TILE = 160

# The panel's slots: POSTER++'s four maps fill them in this order; other models fill what they have.
SLOT_KEYS = ("gradcam_image", "gradcam_landmark", "cross_attention", "rollout")
PANEL_SLOTS = len(SLOT_KEYS)

POSTER_V2_TITLES = (
    "Grad-CAM · image stream (IR-50)",
    "Grad-CAM · landmark stream (MobileFaceNet)",
    "Cross-attention received (landmarks → image)",
    "ViT attention rollout (CLS → tokens)",
)
POINT_TITLE = "Where the landmark query at that point attends, at the three cross-attention levels"


@dataclass
class PanelView:
    """The panel's four slots (an image or None each), their titles, and notes in words."""

    images: list[np.ndarray | None]
    titles: list[str]
    notes: list[str] = field(default_factory=list)
    clickable: bool = False  # whether clicking a point shows where it attends (POSTER++ only)


def is_model_explanation(explanation: Any) -> bool:
    """A self-describing model's explanation (POSTER, ARM) rather than POSTER++'s."""
    from explain import ModelExplanation

    return isinstance(explanation, ModelExplanation)


def panel_view(explanation: Any) -> PanelView:
    """The slots to show for ``explanation`` (POSTER++'s four panels, or what the model has)."""
    from explain import render as explain_render

    if not is_model_explanation(explanation):
        panels = explain_render.explanation_panels(explanation, tile=TILE)
        return PanelView([panels[k] for k in SLOT_KEYS], list(POSTER_V2_TITLES), clickable=True)
    panels, notes = explain_render.model_panels(explanation, tile=TILE)
    images, titles = [panels["gradcam"]], [f"Grad-CAM · {_families(explanation.gradcam)}"]
    if "attention" in panels:
        spatial = [m for m in explanation.attention if m.spatial and m.name.startswith("block 0 ")]
        titles.append(f"Attention received by the landmark positions ({_grid(spatial[0].values)} grid), "
                      "first block, at each width")
        images.append(panels["attention"])
    native = [m for m in explanation.native if m.spatial]
    if "native" in panels:
        titles.append(f"The model's own maps · {', '.join(m.name for m in native)} ({_grid(native[0].values)})")
        images.append(panels["native"])
    images += [None] * (PANEL_SLOTS - len(images))
    titles += [""] * (PANEL_SLOTS - len(titles))
    return PanelView(images, titles, notes)


def notes_html(view: PanelView) -> str:
    """The maps that have no picture, said in words (empty when every map was drawn)."""
    if not view.notes:
        return ""
    items = "".join(f"<li>{escape(note)}</li>" for note in view.notes)
    return f'<div class="poster-small"><b>Not drawn, no spatial picture:</b><ul>{items}</ul></div>'


def gradcam_strip(explanation: Any) -> np.ndarray:
    """Every Grad-CAM map of one explanation in one row, each labelled (for the comparison)."""
    from explain import maps
    from explain import render as explain_render

    target = explanation.class_names[explanation.target]
    if is_model_explanation(explanation):
        values = [m.values for m in explanation.gradcam]
        names = [m.name for m in explanation.gradcam]
    else:
        values = [*explanation.gradcam_image, *explanation.gradcam_landmark]
        names = [f"image stream {m.shape[0]}x{m.shape[1]}" for m in explanation.gradcam_image]
        names += [f"landmark stream {m.shape[0]}x{m.shape[1]}" for m in explanation.gradcam_landmark]
    return explain_render.panel(explanation.image, [maps.normalize(v) for v in values], names, vmin=0.0,
                                vmax=1.0, label=f"Grad-CAM for '{target}' / map max", tile=TILE)


def _families(layers: list) -> str:
    """ "IR-50 stage 1 (56x56)", "MobileFaceNet (7x7)" -> "IR-50 stages and MobileFaceNet"."""
    families: dict[str, int] = {}
    for layer in layers:
        base = layer.name.split(" (")[0]
        family = re.sub(r"\s+(stage|layer|block)\s+\d+$", "", base)
        plural = {"stage": "stages", "layer": "layers", "block": "blocks"}
        kind = re.search(r"\s(stage|layer|block)\s+\d+$", base)
        name = f"{family} {plural[kind.group(1)]}" if kind else family
        families[name] = families.get(name, 0) + 1
    return " and ".join(families)


def _grid(values: np.ndarray) -> str:
    return f"{values.shape[0]}x{values.shape[1]}"

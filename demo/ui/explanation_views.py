"""What the explanation panel and the comparison draw for an explanation of any model.

The panel's slots are filled in order with the panels the model has (Grad-CAM, attention
received, its own maps, the attention rollout), each titled by what its maps are; maps without a
spatial picture become notes, never drawings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np

TILE = 160

# The panel's slots (element ids of the page); an explanation fills them in order.
SLOT_KEYS = ("gradcam_image", "gradcam_landmark", "cross_attention", "rollout")
PANEL_SLOTS = len(SLOT_KEYS)
SLOT_TITLES = (
    "Grad-CAM · image stream",
    "Grad-CAM · landmark stream",
    "Attention received",
    "Attention rollout (class token → tokens)",
)
POINT_TITLE = "Where the query at that point attends, at each attention level whose queries are positions"


@dataclass
class PanelView:
    """The panel's slots (an image or None each), their titles, and notes in words."""

    images: list[np.ndarray | None]
    titles: list[str]
    notes: list[str] = field(default_factory=list)
    clickable: bool = False  # whether clicking a point shows where it attends


def panel_view(explanation: Any) -> PanelView:
    """The slots to show for ``explanation``: what the model has, in order."""
    from explain import render as explain_render

    panels = explain_render.explanation_panels(explanation, tile=TILE)[:PANEL_SLOTS]
    images = [p.image for p in panels] + [None] * (PANEL_SLOTS - len(panels))
    titles = [p.title for p in panels] + [""] * (PANEL_SLOTS - len(panels))
    return PanelView(images, titles, explain_render.explanation_notes(explanation), explanation.clickable)


def notes_html(view: PanelView) -> str:
    """The maps that have no picture, said in words (empty when every map was drawn)."""
    if not view.notes:
        return ""
    items = "".join(f"<li>{escape(note)}</li>" for note in view.notes)
    return f'<div class="poster-small"><b>Not drawn, no spatial picture:</b><ul>{items}</ul></div>'


def gradcam_strip(explanation: Any) -> np.ndarray:
    """Every Grad-CAM map of one explanation in one row, each labelled (for the comparison)."""
    from explain import render as explain_render

    return explain_render.gradcam_strip(explanation, tile=TILE)

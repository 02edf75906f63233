"""Explanations of every architecture through one model contract (``poster.models.outputs``):
Grad-CAM on each layer the model declares, the attention it records (received on its grid, a
clicked point's own row where queries are positions), its own maps, and the attention rollout
of a transformer over token grids.

``Explainer`` gets every map for a batch from one forward and one backward pass; ``render`` turns
them into pictures.
"""
from .attention import (
    attention_rollout,
    cross_attention_maps,
    query_attention,
    query_index,
    received_attention,
    rollout_matrix,
)
from .explainer import Explainer, FaceExplanation, LabelledMap, QueryAttention
from .gradcam import GradCamPass, gradcam_map, gradcam_pass
from .maps import normalize, relative_to_uniform, upsample
from .render import (Panel, colorbar, colorize, explanation_notes, explanation_panels, gradcam_strip, overlay, panel,
                     query_panel, summary)

__all__ = [
    "Explainer", "FaceExplanation", "GradCamPass", "LabelledMap", "Panel", "QueryAttention",
    "attention_rollout", "colorbar", "colorize", "cross_attention_maps", "explanation_notes", "explanation_panels",
    "gradcam_map", "gradcam_pass", "gradcam_strip", "normalize", "overlay", "panel", "query_attention",
    "query_index", "query_panel", "received_attention", "relative_to_uniform", "rollout_matrix", "summary",
    "upsample",
]

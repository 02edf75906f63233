"""Explanations of POSTER++ predictions: Grad-CAM of both streams, cross-attention, ViT rollout.

``Explainer(model).explain(faces)`` gets every map for a batch from one forward and one backward
pass; ``render`` turns them into pictures.
"""
from .attention import (
    attention_rollout,
    cross_attention_maps,
    query_attention,
    query_index,
    received_attention,
    rollout_matrix,
)
from .explainer import MAP_KINDS, Explainer, FaceExplanation
from .gradcam import GradCamPass, gradcam_layers, gradcam_map, gradcam_pass
from .maps import normalize, relative_to_uniform, upsample
from .render import colorbar, colorize, explanation_panels, overlay, panel, summary

__all__ = [
    "MAP_KINDS", "Explainer", "FaceExplanation", "GradCamPass",
    "attention_rollout", "colorbar", "colorize", "cross_attention_maps", "explanation_panels",
    "gradcam_layers", "gradcam_map", "gradcam_pass", "normalize", "overlay", "panel",
    "query_attention", "query_index", "received_attention", "relative_to_uniform", "rollout_matrix",
    "summary", "upsample",
]

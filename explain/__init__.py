"""Explanations: POSTER++'s Grad-CAM of both streams, cross-attention and ViT rollout
(``Explainer``); for POSTER (v1), ARM and any model that names its own Grad-CAM layers and labels
its maps, ``ModelExplainer``. ``explainer_for(model)`` picks the one that fits.

Each gets every map for a batch from one forward and one backward pass; ``render`` turns them
into pictures.
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
from .models import LabelledMap, ModelExplainer, ModelExplanation
from .render import colorbar, colorize, explanation_panels, model_panels, overlay, panel, summary



def explainer_for(model):
    """``ModelExplainer`` for a model that names its Grad-CAM layers, else POSTER++'s ``Explainer``."""
    return ModelExplainer(model) if hasattr(model, "gradcam_layers") else Explainer(model)


__all__ = [
    "MAP_KINDS", "Explainer", "FaceExplanation", "GradCamPass", "LabelledMap", "ModelExplainer",
    "ModelExplanation", "explainer_for", "model_panels",
    "attention_rollout", "colorbar", "colorize", "cross_attention_maps", "explanation_panels",
    "gradcam_layers", "gradcam_map", "gradcam_pass", "normalize", "overlay", "panel",
    "query_attention", "query_index", "received_attention", "relative_to_uniform", "rollout_matrix",
    "summary", "upsample",
]

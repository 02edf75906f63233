"""Labeled datasets and the statistics computed on their predictions."""
from . import metrics
from .datasets import SPLITS, ImageDataset, list_images
from .layouts import LAYOUTS, detect_layout
from .listing import Listing
from .label_errors import label_issue_mask
from .label_order import LabelOrder, diagnose

__all__ = [
    "metrics", "ImageDataset", "Listing", "list_images", "detect_layout", "LAYOUTS", "SPLITS",
    "label_issue_mask", "LabelOrder", "diagnose",
]

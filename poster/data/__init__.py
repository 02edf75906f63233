"""Labeled datasets and the statistics computed on their predictions."""
from . import metrics
from .datasets import LAYOUTS, SPLITS, ImageDataset, Listing, detect_layout, list_images
from .label_errors import label_issue_mask
from .label_order import LabelOrder, diagnose

__all__ = [
    "metrics", "ImageDataset", "Listing", "list_images", "detect_layout", "LAYOUTS", "SPLITS",
    "label_issue_mask", "LabelOrder", "diagnose",
]

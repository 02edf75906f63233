"""The Video tab: upload a clip, follow every face's expression over time (``poster.video``)."""
from .builder import build_video_tab

__all__ = ["build_video_tab"]

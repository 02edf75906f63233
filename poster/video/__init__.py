"""Video files: decoding and sampling, following faces across frames, the per-frame table and its outputs.

```python
from poster import Predictor
from poster.video import VideoAnalyzer, write_annotated, write_table

analysis = VideoAnalyzer(Predictor.from_checkpoint("raf-db"), fps=5).analyze("interview.mp4")
analysis.table  # time, frame, track, x1, y1, x2, y2, label, confidence, one column per class
```
"""
from .analysis import FIXED_COLUMNS, Progress, VideoAnalysis, VideoAnalyzer
from .annotate import draw_frame, write_annotated
from .outputs import rows_at, summary, timeline_figure, write_summary, write_table, write_timeline
from .reader import (MAX_VIDEO_PIXELS, MAX_VIDEO_SECONDS, Sampler, VideoFrame, VideoInfo, frame_at, probe,
                     read_frames)

__all__ = ["VideoAnalyzer", "VideoAnalysis", "Progress", "FIXED_COLUMNS", "VideoInfo", "VideoFrame", "Sampler",
           "probe", "read_frames", "frame_at", "write_table", "write_summary", "write_timeline", "write_annotated", "summary",
           "timeline_figure", "draw_frame", "rows_at", "MAX_VIDEO_PIXELS", "MAX_VIDEO_SECONDS"]

"""The live view's page side: its HTML, its CSS and ``webcam_live.js``, which shows the camera, sends
frames and draws the answers over the picture."""
from __future__ import annotations

import json
from pathlib import Path

from poster.inference.draw import PALETTE

from .live_tracking import FRAME_MAX_SIDE

LIVE_HTML = """
<div class="poster-live" data-state="loading">
  <div class="poster-live-stage">
    <video class="poster-live-video" autoplay muted playsinline></video>
    <canvas class="poster-live-overlay"></canvas>
  </div>
  <div class="poster-live-bar">
    <button type="button" class="poster-live-start" disabled>Start camera</button>
    <button type="button" class="poster-live-stop" disabled>Stop</button>
    <span class="poster-live-rate" aria-live="off"></span>
    <span class="poster-live-message" data-kind="info">Press Start camera: the page asks for your camera.</span>
  </div>
</div>
"""

LIVE_CSS = """
.poster-live-stage { position: relative; width: 100%; height: 420px; background: #0f172a; border-radius: 8px;
  overflow: hidden; }
.poster-live-video { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain;
  transform: scaleX(-1); }
.poster-live-overlay { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
.poster-live-bar { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin-top: 8px; }
.poster-live-bar button { padding: 6px 14px; border-radius: 6px; border: 1px solid #6366f1; cursor: pointer;
  background: #6366f1; color: #fff; font-weight: 600; }
.poster-live-bar button.poster-live-stop { background: transparent; color: #6366f1; }
.poster-live-bar button:disabled { opacity: 0.45; cursor: default; }
.poster-live-rate { font-variant-numeric: tabular-nums; font-weight: 600; }
.poster-live-message[data-kind="error"], .poster-live-message[data-kind="warn"] { color: #b45309; }
.poster-live-message[data-kind="wait"] { color: #4f46e5; }
"""


def live_js(max_side: int = FRAME_MAX_SIDE) -> str:
    """``webcam_live.js`` with the largest side of a sent frame and the box colours filled in."""
    source = (Path(__file__).with_name("webcam_live.js")).read_text()
    return source.replace("__MAX_SIDE__", str(int(max_side))).replace("__PALETTE__", json.dumps(PALETTE))

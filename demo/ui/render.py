"""Small HTML and picture helpers shared by the tabs (plain strings and uint8 arrays)."""
from __future__ import annotations

import re
from html import escape
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from poster.inference.draw import PALETTE, draw_faces


def face_color(index: int) -> str:
    """The color a face's box is drawn in (``poster.inference.draw``'s palette), for matching legends."""
    return PALETTE[index % len(PALETTE)]


def notice(text: str, kind: str = "info") -> str:
    """A one-line message box; ``kind`` is info, warn or error."""
    if not text:
        return ""
    body = re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))
    body = re.sub(r"(https?://[^\s<>&]+[^\s<>&.,;)])", r'<a href="\1" target="_blank" rel="noopener">\1</a>', body)
    return f'<div class="poster-notice poster-notice-{kind}">{body}</div>'


def probability_bars(title: str, class_names: Sequence[str], probabilities: np.ndarray | None,
                     color: str = "#4e79a7", note: str = "") -> str:
    """One face's card: a title and one bar per class in the checkpoint's order; top class bold."""
    parts = [f'<div class="poster-card" style="--accent:{color}">',
             f'<div class="poster-card-title">{escape(title)}</div>']
    if probabilities is None:
        parts.append(f'<div class="poster-card-note">{escape(note or "not classified")}</div>')
    else:
        top = int(np.argmax(probabilities))
        for i, (name, p) in enumerate(zip(class_names, probabilities)):
            pct = 100.0 * float(p)
            strong = " poster-top" if i == top else ""
            parts.append(
                f'<div class="poster-bar-row{strong}"><span class="poster-bar-name">{escape(name)}</span>'
                f'<span class="poster-bar"><span style="width:{pct:.1f}%"></span></span>'
                f'<span class="poster-bar-pct">{pct:.1f}%</span></div>')
        if note:
            parts.append(f'<div class="poster-card-note">{escape(note)}</div>')
    parts.append("</div>")
    return "".join(parts)


def cards(items: Sequence[str]) -> str:
    return '<div class="poster-cards">' + "".join(items) + "</div>" if items else ""


def table_html(columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    """A simple styled table; cells are already-escaped HTML."""
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f'<table class="poster-table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def bar_cell(probability: float | None, strong: bool = False) -> str:
    if probability is None:
        return '<span class="poster-absent">—</span>'
    pct = 100.0 * probability
    weight = ' class="poster-top"' if strong else ""
    return (f'<span{weight}><span class="poster-mini-bar"><span style="width:{pct:.1f}%"></span></span>'
            f" {pct:.1f}%</span>")


def annotate(image: np.ndarray, boxes: Sequence[Sequence[float]], labels: Sequence[str],
             landmarks: Sequence[np.ndarray] | None = None, selected: int | None = None) -> np.ndarray:
    """Boxes and labels on a copy of the photo; the selected face gets a second, outer outline."""
    out = draw_faces(image, boxes, labels, landmarks)
    if selected is not None and 0 <= selected < len(boxes):
        canvas = Image.fromarray(out)
        draw = ImageDraw.Draw(canvas)
        x1, y1, x2, y2 = (float(v) for v in boxes[selected])
        line = max(2, round(max(image.shape[:2]) / 300))
        pad = 2 * line
        draw.rectangle([x1 - pad, y1 - pad, x2 + pad, y2 + pad], outline="white", width=max(1, line // 2))
        out = np.asarray(canvas)
    return out


def mark_point(image: np.ndarray, point: tuple[float, float] | None, color: str = "#ffffff") -> np.ndarray:
    """A crosshair at ``point`` (x, y) on a copy of the image."""
    if point is None:
        return image
    canvas = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    x, y = point
    r = max(4, image.shape[0] // 40)
    draw.ellipse([x - r, y - r, x + r, y + r], outline="black", width=3)
    draw.ellipse([x - r, y - r, x + r, y + r], outline=color, width=1)
    draw.line([x - 2 * r, y, x - r, y], fill=color, width=2)
    draw.line([x + r, y, x + 2 * r, y], fill=color, width=2)
    draw.line([x, y - 2 * r, x, y - r], fill=color, width=2)
    draw.line([x, y + r, x, y + 2 * r], fill=color, width=2)
    return np.asarray(canvas)


def fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longer side is at most ``max_side`` (never upscales)."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


CSS = """
.poster-header h1 { margin-bottom: 0.1em; }
.poster-header p { margin-top: 0; color: var(--body-text-color-subdued); }
.poster-notice { padding: 8px 12px; border-radius: 8px; margin: 4px 0; font-size: 0.95em; }
.poster-notice-info { background: var(--color-accent-soft); }
.poster-notice-warn { background: #fff4e5; color: #663c00; border: 1px solid #ffd8a8; }
.poster-notice-error { background: #fdecea; color: #611a15; border: 1px solid #f5c2c0; }
.poster-cards { display: flex; flex-wrap: wrap; gap: 10px; }
.poster-card { border: 1px solid var(--border-color-primary); border-left: 6px solid var(--accent);
  border-radius: 8px; padding: 8px 10px; min-width: 230px; flex: 1 1 230px; max-width: 420px;
  background: var(--block-background-fill); }
.poster-card-title { font-weight: 600; margin-bottom: 6px; }
.poster-card-note { color: var(--body-text-color-subdued); font-size: 0.9em; margin-top: 4px; }
.poster-bar-row { display: grid; grid-template-columns: 6.5em 1fr 3.6em; align-items: center;
  gap: 6px; font-size: 0.9em; line-height: 1.5; }
.poster-bar { background: var(--background-fill-secondary); border-radius: 4px; height: 10px;
  overflow: hidden; display: block; }
.poster-bar > span { display: block; height: 100%; background: var(--accent); opacity: 0.55; }
.poster-top .poster-bar > span { opacity: 1; }
.poster-top { font-weight: 700; }
.poster-bar-pct { text-align: right; font-variant-numeric: tabular-nums; }
.poster-table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
.poster-table th, .poster-table td { padding: 4px 8px; text-align: left; font-variant-numeric: tabular-nums;
  border: none !important; border-bottom: 1px solid var(--border-color-primary) !important; }
.poster-table caption { text-align: left; color: var(--body-text-color-subdued); padding-bottom: 4px; }
.poster-mini-bar { display: inline-block; width: 60px; height: 8px; background: var(--background-fill-secondary);
  border-radius: 3px; overflow: hidden; vertical-align: middle; }
.poster-mini-bar > span { display: block; height: 100%; background: var(--color-accent); }
.poster-absent { color: var(--body-text-color-subdued); }
.poster-stats { font-variant-numeric: tabular-nums; font-size: 1.05em; }
.poster-stats b { font-size: 1.15em; }
.poster-panel-title { font-weight: 600; font-size: 0.95em; margin: 2px 0 -4px 2px; }
.poster-stat-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px; }
.poster-stat { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 14px;
  background: var(--block-background-fill); }
.poster-stat-value { font-size: 1.5em; font-weight: 700; font-variant-numeric: tabular-nums; }
.poster-stat-key { text-transform: uppercase; font-size: 0.75em; letter-spacing: 0.05em;
  color: var(--body-text-color-subdued); }
.poster-stat-sub { font-size: 0.85em; color: var(--body-text-color-subdued); margin-top: 2px; }
.poster-kv, .poster-kv tbody, .poster-kv tr, .poster-table, .poster-table tbody, .poster-table thead,
.poster-table tr { border: none !important; }
.poster-kv { border-collapse: collapse; width: 100%; }
.poster-kv th, .poster-kv td { text-align: left; padding: 6px 10px; vertical-align: top;
  border: none !important; border-bottom: 1px solid var(--border-color-primary) !important; }
.poster-kv th { width: 11em; color: var(--body-text-color-subdued); font-weight: 600; }
.poster-kv code { font-size: 0.8em; word-break: break-all; }
.poster-footer { color: var(--body-text-color-subdued); font-size: 0.85em; text-align: center; }
"""

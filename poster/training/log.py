"""What a training run shows a person: log lines (terminal and file) and the curves PNG."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..atomic import atomic_path


class RunLog:
    """Lines for the terminal (above any progress bar) and the run's ``train.log``; silent off rank 0."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, message: str) -> None:
        if self.path is None:
            return
        tqdm.write(message, file=sys.stderr)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {message}\n")


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, train and test, as a PNG (no pyplot: safe in any thread)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, key, title in ((loss_axes, "loss", "cross-entropy loss"), (accuracy_axes, "accuracy", "accuracy (%)")):
        for split, style in (("train", "-o"), ("test", "-s")):
            axes.plot(epochs, [h[f"{split}_{key}"] for h in history], style, markersize=3, label=split)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")

"""`evaluate`, one batch at a time: for callers that show progress and may stop half-way.

The app evaluates uploaded sets with this: between two batches it reports how far it got, and a
visitor who cancels stops it there (closing the generator stops its loader too). The predictions
are the same as ``poster.evaluation.run.evaluate``'s, batch for batch.
"""
from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass

import pandas as pd
import torch

from ..data.datasets import ImageDataset
from ..data.loading import device_batch, image_loader
from ..inference.precision import FLOAT32, ensure_finite, finite_logits, precision_of_weights
from .run import predictions_table


@dataclass(frozen=True)
class Progress:
    """How far an evaluation is: images done of ``total``, and the rate so far."""

    done: int
    total: int
    elapsed_s: float

    @property
    def images_per_second(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        rate = self.images_per_second
        return (self.total - self.done) / rate if rate > 0 else None


def evaluate_in_steps(model: torch.nn.Module, dataset: ImageDataset, *, batch_size: int = 32, workers: int = 0,
                      device: str | torch.device | None = None,
                      precision: str = FLOAT32) -> Generator[Progress, None, pd.DataFrame]:
    """Yield a ``Progress`` after each batch; return the predictions table (see ``evaluate``)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    precision = precision_of_weights(model) or precision
    source = dataset.loader_items()
    loader = image_loader(source, batch_size=batch_size, workers=workers, device=device)
    parts, kept = [], []
    start = time.perf_counter()
    done = 0
    batches = iter(loader)
    try:
        for images, indices, errors in batches:
            loaded = dataset.record_failures(indices.tolist(), errors)
            if loaded:
                batch = device_batch(images, loaded, device, dtype, dataset.preprocessing)
                with torch.inference_mode():
                    parts.append(finite_logits(model, batch, precision, device))  # read at the end
                kept.extend(indices[loaded].tolist())
            done += len(indices)
            yield Progress(done, len(dataset), time.perf_counter() - start)
    finally:
        del batches  # stop loader processes now, not when the generator is collected
    items = [dataset.listing.items[i] for i in kept]
    all_logits = torch.cat([ensure_finite(logits.cpu(), used) for logits, used in parts]) if parts else \
        torch.empty(0, len(dataset.class_names))
    return predictions_table(all_logits, [i.label for i in items], [i.path for i in items], dataset.class_names)

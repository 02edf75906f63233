"""What ``forward_intermediates`` returns for POSTER and ARM: logits plus named, labelled maps.

Explanations read these without knowing the architecture: every map says what it is and on
which spatial grid of the face crop it lies (``None`` where its axis is not a position).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class NamedMap:
    """One intermediate of a forward pass.

    ``value`` is (B, C, H, W) for feature maps and (B, heads, N_query, N_key) for attention;
    ``grid`` is the (rows, columns) of face-crop positions its spatial axis covers, or None.
    """

    name: str
    value: torch.Tensor
    grid: tuple[int, int] | None
    meaning: str


@dataclass
class ModelOutput:
    """Logits, the gated feature before the head (where the model has one), and named maps."""

    logits: torch.Tensor
    feature: torch.Tensor | None = None
    features: list[NamedMap] = field(default_factory=list)
    attention: list[NamedMap] = field(default_factory=list)

    def attention_by_name(self) -> dict[str, torch.Tensor]:
        return {a.name: a.value for a in self.attention}

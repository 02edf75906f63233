"""The contract every architecture's model keeps (after timm's ``forward_intermediates``).

Each model class (``PosterV2``, ``PosterV1``, ``ARM``) has the attributes ``arch``,
``num_classes``, ``head_keys`` and ``faces_interact``; the methods ``frozen_modules()``,
``optional_modules()``, ``gradcam_layers()`` and ``forward_alone(x)`` (every face classified as in
a batch of its own); and ``forward_intermediates(x)``, which returns a ``ModelOutput``: logits
plus named, labelled maps. Explanations read these without knowing the architecture: every map
says what it is and on which spatial grid of the face crop it lies (``None`` where its axis is not
a position).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class GradCamLayer:
    """A module whose output Grad-CAM can explain: its label, and the (rows, columns) grid of its
    output at the model's input size. Layers with the same label are one family at several scales."""

    label: str
    module: nn.Module
    grid: tuple[int, int]

    @property
    def name(self) -> str:
        """The label with its grid, e.g. "IR-50 stage 1 (56x56)"."""
        return f"{self.label} ({self.grid[0]}x{self.grid[1]})"


@dataclass
class NamedMap:
    """One intermediate of a forward pass.

    ``value`` is (B, C, H, W) for feature maps, (B, heads, N_query, N_key) for attention and
    (B, D) for a vector (POSTER++'s landmark head); ``grid`` is the (rows, columns) of face-crop
    positions its spatial (key) axis covers, or None. ``query_grid`` is that of an attention's
    query axis, where the queries are positions too (a clicked point then has a row to show);
    ``block`` the transformer block an attention map comes from, where there are several.
    """

    name: str
    value: torch.Tensor
    grid: tuple[int, int] | None
    meaning: str
    query_grid: tuple[int, int] | None = None
    block: int | None = None

    def detach(self) -> "NamedMap":
        return NamedMap(self.name, self.value.detach(), self.grid, self.meaning, self.query_grid, self.block)


@dataclass
class ModelOutput:
    """Logits, the gated feature before the head (where the model has one), and named maps.

    ``self_attention`` holds a transformer's self-attention over a class token followed by tokens
    that lie on ``grid``-sized grids one after another (POSTER++'s ViT), in block order: its
    rollout from the class token says which tokens the prediction drew on.
    """

    logits: torch.Tensor
    feature: torch.Tensor | None = None
    features: list[NamedMap] = field(default_factory=list)
    attention: list[NamedMap] = field(default_factory=list)
    self_attention: list[NamedMap] = field(default_factory=list)

    def maps(self) -> list[NamedMap]:
        """Every named map, features first."""
        return [*self.features, *self.attention, *self.self_attention]

    def named(self, name: str) -> torch.Tensor:
        """The value of the map called ``name``."""
        for named in self.maps():
            if named.name == name:
                return named.value
        raise KeyError(f"no map {name!r}; there are: {', '.join(m.name for m in self.maps())}")

    def detach(self) -> "ModelOutput":
        """The same output without its autograd graph (so a backward pass's memory can go)."""
        return ModelOutput(
            logits=self.logits.detach(), feature=None if self.feature is None else self.feature.detach(),
            features=[m.detach() for m in self.features], attention=[m.detach() for m in self.attention],
            self_attention=[m.detach() for m in self.self_attention])

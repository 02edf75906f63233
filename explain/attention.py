"""Attention maps of POSTER++: landmark-to-image cross-attention and ViT attention rollout.

All functions work on the tensors ``PosterV2.forward_intermediates`` records, so an explanation
reuses the one forward pass it already ran. Maps are row-major over each level's grid, as the
model flattens it.
"""
from __future__ import annotations

from typing import Sequence

import torch

from poster.models.poster_v2 import FUSION_WINDOWS, INPUT_SIZE, PosterV2

VIT_GRID = 7  # every level enters the ViT as a 7x7 grid of tokens
VIT_LEVEL_TOKENS = VIT_GRID * VIT_GRID


def _grid_side(num_positions: int) -> int:
    side = int(round(num_positions ** 0.5))
    if side * side != num_positions:
        raise ValueError(f"{num_positions} positions do not form a square grid")
    return side


def received_attention(attention: torch.Tensor, per_head: bool = False) -> torch.Tensor:
    """(B, heads, N_query, N_key) softmax -> attention each key position receives.

    Averaged over query positions, and over heads unless ``per_head``: (B, h, w) or
    (B, heads, h, w). Each map sums to 1, since every query row does.
    """
    if attention.ndim != 4:
        raise ValueError(f"expected (B, heads, N_query, N_key) attention, got {tuple(attention.shape)}")
    side = _grid_side(attention.shape[-1])
    per_key = attention.mean(dim=2)  # (B, heads, N_key)
    if not per_head:
        per_key = per_key.mean(dim=1)
    return per_key.reshape(*per_key.shape[:-1], side, side)


@torch.inference_mode()
def cross_attention_maps(model: PosterV2, batch: torch.Tensor, per_head: bool = False) -> list[torch.Tensor]:
    """Received-attention maps of the three cross-attention levels for a normalized batch.

    Returns (B, 28, 28), (B, 14, 14), (B, 7, 7) (with a heads axis after B if ``per_head``):
    how much attention each image-stream position gets from the landmark queries.
    """
    output = model.forward_intermediates(batch)
    return [received_attention(a, per_head) for a in output.cross_attention]


def query_index(point: tuple[float, float], side: int, crop_size: int = INPUT_SIZE) -> int:
    """Row-major index of the grid cell holding ``point`` = (x, y) in crop pixels.

    Pixel centres sit on integers (as in ``poster.inference.faces``), so the crop spans [-0.5, size - 0.5];
    points outside are clamped to the border cell.
    """
    x, y = (float(v) for v in point)
    col = min(max(int((x + 0.5) * side // crop_size), 0), side - 1)
    row = min(max(int((y + 0.5) * side // crop_size), 0), side - 1)
    return row * side + col


def query_attention(cross_attention: Sequence[torch.Tensor], point: tuple[float, float],
                    crop_size: int = INPUT_SIZE, per_head: bool = False) -> list[torch.Tensor]:
    """Where the landmark query at ``point`` (x, y in crop pixels) looks, at each level.

    ``cross_attention`` is ``PosterOutput.cross_attention``. Returns one (B, h, w) map per level
    (B, heads, h, w with ``per_head``), each summing to 1: that query's softmax row.
    """
    maps = []
    for attention in cross_attention:
        side = _grid_side(attention.shape[-1])
        row = attention[:, :, query_index(point, side, crop_size)]  # (B, heads, N_key)
        if not per_head:
            row = row.mean(dim=1)
        maps.append(row.reshape(*row.shape[:-1], side, side))
    return maps


def rollout_matrix(vit_attention: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) through the ViT blocks: (B, T, T), rows sum to 1.

    Each block's attention is averaged over heads; the identity stands for the residual path, and
    rows are renormalized before the blocks are multiplied from the first to the last.
    """
    if not vit_attention:
        raise ValueError("no ViT attention recorded")
    rollout = None
    for attention in vit_attention:
        joint = attention.mean(dim=1)
        joint = joint + torch.eye(joint.shape[-1], dtype=joint.dtype, device=joint.device)
        joint = joint / joint.sum(dim=-1, keepdim=True)
        rollout = joint if rollout is None else joint @ rollout
    return rollout


def attention_rollout(vit_attention: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Rollout from the CLS token to the 147 image tokens as three (B, 7, 7) maps, one per scale.

    Values are the CLS row of ``rollout_matrix`` without its CLS entry, so the three maps together
    sum to 1 minus the share the CLS token keeps for itself.
    """
    cls_row = rollout_matrix(vit_attention)[:, 0, 1:]
    levels = len(FUSION_WINDOWS)
    if cls_row.shape[-1] != levels * VIT_LEVEL_TOKENS:
        raise ValueError(f"expected {levels * VIT_LEVEL_TOKENS} image tokens, got {cls_row.shape[-1]}")
    return [chunk.reshape(-1, VIT_GRID, VIT_GRID) for chunk in cls_row.split(VIT_LEVEL_TOKENS, dim=-1)]

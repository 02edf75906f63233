"""Attention maps from what ``forward_intermediates`` records: attention received on a grid,
where a clicked query position looks, and attention rollout through a transformer.

All functions work on tensors of the one forward pass an explanation already ran. Maps are
row-major over each grid, as the models flatten it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

CROP_SIZE = 224  # the models' input size: points are given in pixels of this crop


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
def cross_attention_maps(model: nn.Module, batch: torch.Tensor, per_head: bool = False) -> list[torch.Tensor]:
    """Received-attention maps of every attention whose queries and keys are both positions
    (POSTER++'s three cross-attention levels: (B, 28, 28), (B, 14, 14), (B, 7, 7), with a heads
    axis after B if ``per_head``): how much attention each key position gets from the queries."""
    output = model.forward_intermediates(batch)
    return [received_attention(a.value, per_head) for a in output.attention if a.query_grid is not None]


def query_index(point: tuple[float, float], side: int, crop_size: int = CROP_SIZE) -> int:
    """Row-major index of the grid cell holding ``point`` = (x, y) in crop pixels.

    Pixel centres sit on integers (as in ``poster.inference.faces``), so the crop spans [-0.5, size - 0.5];
    points outside are clamped to the border cell.
    """
    x, y = (float(v) for v in point)
    col = min(max(int((x + 0.5) * side // crop_size), 0), side - 1)
    row = min(max(int((y + 0.5) * side // crop_size), 0), side - 1)
    return row * side + col


def query_attention(cross_attention: Sequence[torch.Tensor], point: tuple[float, float],
                    crop_size: int = CROP_SIZE, per_head: bool = False) -> list[torch.Tensor]:
    """Where the query at ``point`` (x, y in crop pixels) looks, in each attention map.

    ``cross_attention``: (B, heads, N, N) softmax maps whose queries and keys lie on the same
    square grid (POSTER++'s cross-attention levels). Returns one (B, h, w) map per level
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


def attention_rollout(vit_attention: Sequence[torch.Tensor], grid: tuple[int, int] = (7, 7)) -> list[torch.Tensor]:
    """Rollout from the class token to the tokens after it, as one (B, rows, cols) map per grid
    of tokens (POSTER++: 147 tokens, three 7x7 scales).

    Values are the class token's row of ``rollout_matrix`` without its own entry, so the maps
    together sum to 1 minus the share the class token keeps for itself.
    """
    cls_row = rollout_matrix(vit_attention)[:, 0, 1:]
    per_grid = grid[0] * grid[1]
    if cls_row.shape[-1] % per_grid:
        raise ValueError(f"{cls_row.shape[-1]} tokens do not make whole {grid[0]}x{grid[1]} grids")
    return [chunk.reshape(-1, *grid) for chunk in cls_row.split(per_grid, dim=-1)]

"""The original POSTER (v1) forward pass, step for step, on this project's modules and weights.

The speed baseline for ``PosterV1``: it does what zczcwh/POSTER's ``pyramid_trans_expr.forward``
does on every call (resizes the input once per stream, runs and discards MobileFaceNet's landmark
head, max-pools for identity shortcuts, slices the 100 tokens and normalizes all of them for each
cross-attention, attention as explicit matrix products, contiguous NCHW memory, plain layers).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from original_forward import _ir_block
from poster.models.poster_v1 import STREAM, PosterV1


class _LandmarkHead(nn.Module):
    """MobileFaceNet's GDC landmark head, which the original computes on every call and discards."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.Conv2d(512, 512, 7, groups=512, bias=False)
        self.pool_bn = nn.BatchNorm2d(512)
        self.fc = nn.Linear(512, 136, bias=False)
        self.bn = nn.BatchNorm1d(136)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(self.pool_bn(self.pool(x)).flatten(1)))


def original_model(model: PosterV1) -> PosterV1:
    """``model`` (plain, as loaded) with the landmark head the original carries."""
    model.original_landmark_head = _LandmarkHead().to(model.dtype).eval()
    return model


def _attention(attn, sources: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    b, n, c = sources.shape
    kv = attn.kv(sources).reshape(b, n, 2, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    k, v = kv.unbind(0)
    q = queries.reshape(b, -1, attn.num_heads, c // attn.num_heads).permute(0, 2, 1, 3)
    weights = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
    return attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


def _block(block, x: torch.Tensor) -> torch.Tensor:
    x_img, x_lm = x[:, :STREAM, :], x[:, STREAM:, :]
    normed = block.norm_image_attn(x)
    x_img = x_img + _attention(block.image_attn, normed[:, :STREAM, :], normed[:, STREAM:, :])
    x_img = x_img + block.image_mlp(block.norm_image_mlp(x_img))
    normed = block.norm_landmark_attn(x)
    x_lm = x_lm + _attention(block.landmark_attn, normed[:, STREAM:, :], normed[:, :STREAM, :])
    x_lm = x_lm + block.landmark_mlp(block.norm_landmark_mlp(x_lm))
    return block.token_mix(torch.cat((x_img, x_lm), dim=1))


def original_forward(model: PosterV1, x: torch.Tensor) -> torch.Tensor:
    """Logits computed the way the published implementation computes them."""
    b = x.shape[0]
    lm = model.landmark_backbone
    x_face = F.interpolate(x, size=112)
    features = lm.expand(lm.stage3(lm.down3(lm.stage2(lm.down2(lm.stage1(lm.down1(lm.stem_dw(lm.stem(x_face)))))))))
    model.original_landmark_head(features)
    x_face = features.view(b, -1, 49).transpose(1, 2)
    ir = model.image_backbone
    x_ir = ir.stem(F.interpolate(x, size=112))
    for stage in (ir.stage1, ir.stage2, ir.stage3):
        for unit in stage:
            x_ir = _ir_block(unit, x_ir)
    x_ir = model.image_proj(x_ir.view(-1, 49, 1024))
    fusion = model.fusion
    x_cls = torch.mean(x_ir, 1).view(b, 1, -1)
    x_img = torch.cat((x_cls, x_ir), dim=1) + fusion.pos_embed
    lm_cls = torch.mean(x_face, 1).view(b, 1, -1)
    new_x = torch.cat((x_img, torch.cat((lm_cls, x_face), dim=1)), dim=1)
    levels = [new_x, fusion.to_medium(new_x), fusion.to_small(new_x)]
    for block in fusion.blocks:
        large, medium, small = _block(block.large, levels[0]), _block(block.medium, levels[1]), _block(block.small, levels[2])
        medium = block.small_to_medium(small) + medium
        large = large + block.medium_to_large(medium)
        levels = [large, medium, small]
    y = model.se(fusion.norm(levels[0])[:, 0, :])
    return model.head(y.view(b, -1))

"""The original POSTER++ forward pass, step for step, on this project's modules and weights.

Used only as the speed baseline: it does what the published code does on every call (computes and
discards the landmark head, resizes the input once per stream, max-pools for identity shortcuts,
partitions and reverses windows with copies, gathers the position bias, repeats the queries, runs
attention as explicit matrix products, contiguous NCHW memory, plain ``nn.Conv2d`` and
``nn.Linear`` layers), so timing it against ``PosterV2.forward`` measures what this project removed,
with identical weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from poster.models import PosterV2
from poster.models.ir50 import IRBlock, Subsample


def _ir_block(block: IRBlock, x: torch.Tensor) -> torch.Tensor:
    if isinstance(block.shortcut, Subsample):
        shortcut = F.max_pool2d(x, 1, block.shortcut.stride)
    else:
        shortcut = block.shortcut(x)
    return block.residual(x) + shortcut


def _ir50(model: PosterV2, x: torch.Tensor) -> list[torch.Tensor]:
    x = model.image_backbone.stem(F.interpolate(x, size=112))
    outs = []
    for stage in (model.image_backbone.stage1, model.image_backbone.stage2, model.image_backbone.stage3):
        for block in stage:
            x = _ir_block(block, x)
        outs.append(x)
    return outs


def _cross_attention(block, image: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    attn_mod = block.attn
    b, c, h, w = image.shape
    x = block.norm_image(image.permute(0, 2, 3, 1))
    shortcut = x
    ws = attn_mod.window
    windows = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws * ws, c)
    bw, n, _ = windows.shape
    heads = attn_mod.num_heads
    q = landmarks.permute(0, 2, 3, 1).reshape(b, 1, n, heads, c // heads).permute(0, 1, 3, 2, 4)
    kv = attn_mod.kv(windows).reshape(bw, n, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    k, v = kv[0], kv[1]
    q = q.repeat(1, bw // b, 1, 1, 1).reshape(bw, heads, n, c // heads) * attn_mod.scale
    bias = attn_mod.relative_position_bias_table[attn_mod.relative_position_index.view(-1)].view(n, n, -1)
    attn = (q @ k.transpose(-2, -1)) + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
    out = attn_mod.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c))
    out = out.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)
    x = shortcut + block.ls1.gamma * out
    x = x + block.ls2.gamma * block.mlp(block.norm_mlp(x))
    return x.permute(0, 3, 1, 2)


def _vit(model: PosterV2, tokens: torch.Tensor) -> torch.Tensor:
    t = model.transformer
    x = torch.cat([t.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + t.pos_embed
    for block in t.blocks:
        y = block.norm1(x)
        b, n, c = y.shape
        qkv = block.attn.qkv(y).reshape(b, n, 3, 8, c // 8).permute(2, 0, 3, 1, 4)
        attn = ((qkv[0] @ qkv[1].transpose(-2, -1)) * block.attn.scale).softmax(-1)
        x = x + block.attn.proj((attn @ qkv[2]).transpose(1, 2).reshape(b, n, c))
        x = x + block.mlp(block.norm2(x))
    return t.head(t.se(t.norm(x)[:, 0]))


def original_forward(model: PosterV2, x: torch.Tensor) -> torch.Tensor:
    """Logits computed the way the published implementation computes them."""
    lm_backbone = model.landmark_backbone
    f1, f2, f3 = lm_backbone(F.interpolate(x, size=112))
    lm_backbone.landmarks(f3)  # the original runs the landmark head and discards it
    lm = [f1, f2, model.landmark_proj(f3)]
    img = [proj(f) for proj, f in zip(model.image_proj, _ir50(model, x))]
    fused = [_cross_attention(block, i, q) for block, i, q in zip(model.fusion, img, lm)]
    e = model.token_embed.levels
    tokens = torch.cat([e[0](fused[0]).flatten(2).transpose(1, 2), e[1](fused[1]).flatten(2).transpose(1, 2),
                        e[2](fused[2]).flatten(2).transpose(1, 2)], dim=1)
    return _vit(model, tokens)

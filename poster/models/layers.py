"""Building blocks of POSTER++ (cross-attention, the fusion ViT) and of POSTER (MLP, squeeze-excite gate)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cache import DerivedCache


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def relative_position_index(size: int) -> torch.Tensor:
    """Swin-style index into a (2s-1)^2 bias table for every pair of positions in an s x s window."""
    coords = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (size - 1)
    return relative[..., 0] * (2 * size - 1) + relative[..., 1]


class WindowCrossAttention(nn.Module):
    """Multi-head attention whose queries are landmark features and keys/values image features.

    At a 224x224 input each level has one window covering its whole map (28, 14 or 7 squared
    positions), so attention runs over the full map with a learned relative-position bias. The
    queries enter as they are (no projection), scaled by 1/sqrt(head_dim).
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self._bias_cache = DerivedCache()

    def init_non_persistent_buffers(self) -> None:
        """Recompute the index a state dict does not carry (after ``to_empty``: see ``create_model_with_state``)."""
        device = self.relative_position_index.device
        self.relative_position_index = relative_position_index(self.window).to(device)

    def position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias; gathered once per weight version outside of training."""
        table = self.relative_position_bias_table
        if self.training or torch.is_grad_enabled() or not DerivedCache.cacheable(table):
            return self._gather_bias(table)
        return self._bias_cache.get("bias", (table,), lambda: self._gather_bias(table))

    def _gather_bias(self, table: torch.Tensor) -> torch.Tensor:
        n = self.window * self.window
        return table[self.relative_position_index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1).contiguous()

    def forward(self, image_tokens: torch.Tensor, queries: torch.Tensor,
                return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """image_tokens, queries: (B, N, C). Returns the attended tokens and, if asked, the
        softmax attention (B, heads, N_queries, N_keys)."""
        b, n, c = image_tokens.shape
        h = self.num_heads
        k, v = self.kv(image_tokens).reshape(b, n, 2, h, c // h).permute(2, 0, 3, 1, 4)
        q = queries.reshape(b, n, h, c // h).transpose(1, 2)
        bias = self.position_bias().to(q.dtype)
        if return_attention:
            attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1) + bias, dim=-1)
            out = attn @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0), scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), attn


class CrossFusionBlock(nn.Module):
    """LayerNorm(image) -> cross-attention with landmark queries -> layer-scaled residual -> MLP.

    The residual starts from the normalized image tokens, as in the published model.
    """

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm_image = nn.LayerNorm(dim)
        self.attn = WindowCrossAttention(dim, num_heads, window)
        self.ls1 = LayerScale(dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor,
                return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """image, landmarks: (B, C, H, W) maps of equal shape. Returns a (B, C, H, W) map."""
        b, c, hh, ww = image.shape
        x = self.norm_image(image.permute(0, 2, 3, 1).reshape(b, hh * ww, c))
        # Channels last: the fused attention kernel wants each head's features contiguous.
        q = landmarks.permute(0, 2, 3, 1).reshape(b, hh * ww, c).contiguous()
        attended, attn = self.attn(x, q, return_attention)
        x = x + self.ls1(attended)
        x = x + self.ls2(self.mlp(self.norm_mlp(x)))
        return x.reshape(b, hh, ww, c).permute(0, 3, 1, 2), attn


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
           return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention over (B, heads, N, d) tensors; the softmax weights are formed
    explicitly only when asked for (explanations), else the fused kernel runs."""
    if return_attention:
        attn = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)
        return attn @ v, attn
    return F.scaled_dot_product_attention(q, k, v, scale=scale), None


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out, attn = attend(q, k, v, self.scale, return_attention)
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), attn


class TransformerBlock(nn.Module):
    """Pre-norm ViT block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, attn = self.attn(self.norm1(x), return_attention)
        x = x + attended
        return x + self.mlp(self.norm2(x)), attn

    def forward_first_token(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for token 0 only, (B, 1, C): what a last block feeding a CLS head needs.

        Token 0 still attends to every token, so this equals ``forward(x)[0][:, :1]``; skipping the
        other 147 queries, their projection and their MLP saves about a tenth of the network's
        arithmetic.
        """
        b, n, c = x.shape
        heads = self.attn.num_heads
        q, k, v = self.attn.qkv(self.norm1(x)).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q[:, :, :1], k, v, scale=self.attn.scale)
        x = x[:, :1] + self.attn.proj(out.transpose(1, 2).reshape(b, 1, c))
        return x + self.mlp(self.norm2(x))


class SqueezeExcite(nn.Module):
    """Feature gating of the CLS embedding: x * sigmoid(fc2(relu(fc1(x))))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(x))))


class TokenEmbedding(nn.Module):
    """Turns the three fused maps into 49 tokens each: strided convs down to 7x7, then 768 channels."""

    def __init__(self, dims: tuple[int, ...], embed_dim: int = 768) -> None:
        super().__init__()
        self.levels = nn.ModuleList([
            nn.Sequential(nn.Conv2d(dims[0], embed_dim, 3, 2, 1), nn.Conv2d(embed_dim, embed_dim, 3, 2, 1)),
            nn.Sequential(nn.Conv2d(dims[1], embed_dim, 3, 2, 1)),
            nn.Sequential(nn.Conv2d(dims[2], embed_dim, 1)),
        ])

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([level(m).flatten(2).transpose(1, 2) for level, m in zip(self.levels, maps)], dim=1)


class FusionTransformer(nn.Module):
    """Two pre-norm ViT blocks over [CLS] + 147 tokens, squeeze-excite on CLS, linear head."""

    def __init__(self, num_classes: int, num_tokens: int = 147, embed_dim: int = 768, depth: int = 2,
                 num_heads: int = 8) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + 1, embed_dim))
        self.blocks = nn.ModuleList([TransformerBlock(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.se = SqueezeExcite(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, tokens: torch.Tensor, return_attention: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and, if asked, every block's full softmax attention (else an empty list)."""
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        attention = []
        if return_attention:
            for block in self.blocks:
                x, attn = block(x, True)
                attention.append(attn)
        else:
            for block in self.blocks[:-1]:
                x, _ = block(x)
            x = self.blocks[-1].forward_first_token(x)  # only the CLS token reaches the head
        return self.head(self.se(self.norm(x)[:, 0])), attention

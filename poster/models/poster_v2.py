"""POSTER++ (POSTER V2, Mao et al. 2023, arXiv 2301.12149).

Two streams look at the same face: an IR-50 image backbone and a frozen MobileFaceNet landmark
backbone, both on the 224x224 crop subsampled to 112x112. At three scales the landmark features
query the image features through window cross-attention; the three fused maps become 3 x 49 tokens
for a two-block ViT whose CLS token, gated by a squeeze-excite layer, gives the expression.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .ir50 import IR50
from .layers import CrossFusionBlock, SqueezeExcite, TransformerBlock
from .mobilefacenet import MobileFaceNet

INPUT_SIZE = 224
BACKBONE_SIZE = 112
FUSION_DIMS = (64, 128, 256)
FUSION_HEADS = (2, 4, 8)
FUSION_WINDOWS = (28, 14, 7)


@dataclass
class PosterOutput:
    """Everything one forward pass can expose. Lists hold one entry per scale (28, 14, 7)."""

    logits: torch.Tensor
    image_features: list[torch.Tensor] = field(default_factory=list)     # (B, C, H, W) keys/values
    landmark_features: list[torch.Tensor] = field(default_factory=list)  # (B, C, H, W) queries
    cross_attention: list[torch.Tensor] = field(default_factory=list)    # (B, heads, N, N) softmax
    vit_attention: list[torch.Tensor] = field(default_factory=list)      # (B, 8, 148, 148) softmax
    landmarks: torch.Tensor | None = None                                # (B, 136) landmark head


class TokenEmbedding(nn.Module):
    """Turns the three fused maps into 49 tokens each: strided convs down to 7x7, then 768 channels."""

    def __init__(self, dims: tuple[int, ...] = FUSION_DIMS, embed_dim: int = 768) -> None:
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


class PosterV2(nn.Module):
    """POSTER++ for 224x224 normalized RGB face crops."""

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.image_backbone = IR50()
        self.landmark_backbone = MobileFaceNet()
        self.landmark_backbone.requires_grad_(False)
        # The last landmark map has 512 channels; the image stream's has 256.
        self.landmark_proj = nn.Conv2d(MobileFaceNet.channels[2], FUSION_DIMS[2], 3, padding=1)
        self.image_proj = nn.ModuleList([nn.Conv2d(d, d, 3, 2, 1) for d in FUSION_DIMS])
        self.fusion = nn.ModuleList([
            CrossFusionBlock(d, h, w) for d, h, w in zip(FUSION_DIMS, FUSION_HEADS, FUSION_WINDOWS)
        ])
        self.token_embed = TokenEmbedding(FUSION_DIMS)
        self.transformer = FusionTransformer(num_classes)

    def train(self, mode: bool = True) -> "PosterV2":
        super().train(mode)
        self.landmark_backbone.eval()  # frozen: its batch-norm statistics never move
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.cls_token.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) normalized images -> (B, num_classes) logits."""
        return self._forward(x, intermediates=False).logits

    def forward_intermediates(self, x: torch.Tensor, landmarks: bool = False) -> PosterOutput:
        """Forward pass that also returns the feature maps and attention the explanations need."""
        return self._forward(x, intermediates=True, landmarks=landmarks)

    def _forward(self, x: torch.Tensor, intermediates: bool, landmarks: bool = False) -> PosterOutput:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"PosterV2 expects a (B, 3, {INPUT_SIZE}, {INPUT_SIZE}) batch, got {tuple(x.shape)}")
        # Both streams see the crop through nearest-neighbour resizing to 112x112.
        small = F.interpolate(x.to(self.dtype), size=BACKBONE_SIZE, mode="nearest")

        lm = list(self.landmark_backbone(small))
        head = self.landmark_backbone.landmarks(lm[2]) if landmarks else None
        lm[2] = self.landmark_proj(lm[2])
        img = [proj(f) for proj, f in zip(self.image_proj, self.image_backbone(small))]

        fused, cross_attention = [], []
        for block, i, q in zip(self.fusion, img, lm):
            out, attn = block(i, q, intermediates)
            fused.append(out)
            cross_attention.append(attn)
        logits, vit_attention = self.transformer(self.token_embed(fused), intermediates)
        if not intermediates:
            return PosterOutput(logits=logits)
        return PosterOutput(logits=logits, image_features=img, landmark_features=lm,
                            cross_attention=cross_attention, vit_attention=vit_attention, landmarks=head)

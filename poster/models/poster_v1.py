"""POSTER (Zheng et al. 2022, arXiv 2204.04083): a pyramid cross-fusion transformer.

Both streams see the 224x224 crop subsampled (nearest) to 112x112. The frozen MobileFaceNet's
last 512x7x7 map gives 49 landmark tokens, one per position. IR-50's 256x14x14 map gives 49 image
tokens by viewing the NCHW tensor as (49, 1024): each token is a group of channels over every
position, not a patch. Each stream gets its token mean prepended (the image half also a position
embedding); 1-D convolutions along the embedding make 256- and 128-wide copies, and eight pyramid
blocks cross-attend image from landmark and landmark from image at the three widths, mix all 100
tokens with a 1x1 convolution and pass the narrow levels up. Token 0 of the widest level, through
LayerNorm and a squeeze-excite gate, gives the expression.
"""
from __future__ import annotations

import enum

import torch
import torch.nn.functional as F
from torch import nn

from . import ir50, mobilefacenet
from .fusions import Fusion, fc_act, under
from .dataset_facts import RAF_DB_CLASS_NAMES, RAF_DB_FOLDER_NAMES, raf_db_meta
from .ir50 import IR50
from .layers import Mlp, SqueezeExcite, attend
from .mobilefacenet import MobileFaceNet
from .outputs import GradCamLayer, ModelOutput, NamedMap
from .renaming import map_state_dict
from .weights_api import Metric, Preprocessing, Weights

INPUT_SIZE = 224
BACKBONE_SIZE = 112
EMBED_DIM = 512
TOKENS = 49             # per stream, plus its mean token
STREAM = TOKENS + 1
DEPTH = 8
NUM_HEADS = 8
MLP_RATIO = 2.0
LEVELS = ("large", "medium", "small")
HEAD_WEIGHT = "head.weight"

# Stored in the released file but never reaching the logits (12.94 M values).
UNUSED_PREFIXES = ("ir_back.output_layer.", "face_landback.output_layer.", "pyramid_fuse.cls_token")
_BLOCK = {"norm1": "norm_image_attn", "attn_img": "image_attn", "norm2": "norm_image_mlp", "mlp1": "image_mlp",
          "norm3": "norm_landmark_attn", "attn_lm": "landmark_attn", "norm4": "norm_landmark_mlp",
          "mlp2": "landmark_mlp", "conv": "token_mix"}
_LEVEL = {"block_l": "large", "block_m": "medium", "block_s": "small",
          "upsample_m": "medium_to_large", "upsample_s": "small_to_medium"}
_FUSION = {"pos_embed": "pos_embed", "downsample_m": "to_medium", "downsample_s": "to_small", "norm": "norm"}


class CrossAttention(nn.Module):
    """Keys and values from one stream's tokens; the other stream's tokens are the queries as they are."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, sources: torch.Tensor, queries: torch.Tensor,
                return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, c = sources.shape
        h = self.num_heads
        k, v = self.kv(sources).reshape(b, n, 2, h, c // h).permute(2, 0, 3, 1, 4)
        q = queries.reshape(b, -1, h, c // h).transpose(1, 2)
        out, attn = attend(q, k, v, self.scale, return_attention)
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), attn


class CrossFusionBlock(nn.Module):
    """Image tokens attend to landmark queries and landmark tokens to image queries (both from the
    same normalized input), each with its MLP; then a 1x1 convolution mixes all 100 tokens."""

    def __init__(self, dim: int, num_heads: int = NUM_HEADS, mlp_ratio: float = MLP_RATIO) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm_image_attn = nn.LayerNorm(dim, eps=1e-6)
        self.image_attn = CrossAttention(dim, num_heads)
        self.norm_image_mlp = nn.LayerNorm(dim, eps=1e-6)
        self.image_mlp = Mlp(dim, hidden)
        self.norm_landmark_attn = nn.LayerNorm(dim, eps=1e-6)
        self.landmark_attn = CrossAttention(dim, num_heads)
        self.norm_landmark_mlp = nn.LayerNorm(dim, eps=1e-6)
        self.landmark_mlp = Mlp(dim, hidden)
        self.token_mix = nn.Conv1d(2 * STREAM, 2 * STREAM, 1)

    def forward(self, x: torch.Tensor, attention: list | None = None) -> torch.Tensor:
        image, landmark = x[:, :STREAM], x[:, STREAM:]
        normed = self.norm_image_attn(x)
        attended, image_attn = self.image_attn(normed[:, :STREAM], normed[:, STREAM:], attention is not None)
        image = image + attended
        image = image + self.image_mlp(self.norm_image_mlp(image))
        normed = self.norm_landmark_attn(x)
        attended, landmark_attn = self.landmark_attn(normed[:, STREAM:], normed[:, :STREAM], attention is not None)
        landmark = landmark + attended
        landmark = landmark + self.landmark_mlp(self.norm_landmark_mlp(landmark))
        if attention is not None:
            attention += [image_attn, landmark_attn]
        return self.token_mix(torch.cat([image, landmark], dim=1))


class PyramidBlock(nn.Module):
    """One cross-fusion block per width, then the narrow levels added into the wider ones."""

    def __init__(self, dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.large = CrossFusionBlock(dim)
        self.medium = CrossFusionBlock(dim // 2)
        self.small = CrossFusionBlock(dim // 4)
        self.medium_to_large = nn.ConvTranspose1d(2 * STREAM, 2 * STREAM, 2, 2)
        self.small_to_medium = nn.ConvTranspose1d(2 * STREAM, 2 * STREAM, 2, 2)

    def forward(self, levels: list[torch.Tensor], attention: list | None = None) -> list[torch.Tensor]:
        large = self.large(levels[0], attention)
        medium = self.medium(levels[1], attention)
        small = self.small(levels[2], attention)
        medium = self.small_to_medium(small) + medium
        large = large + self.medium_to_large(medium)
        return [large, medium, small]


class PyramidFusion(nn.Module):
    """[mean, 49 image tokens] + position embedding, [mean, 49 landmark tokens]; three widths; 8 blocks."""

    def __init__(self, dim: int = EMBED_DIM, depth: int = DEPTH) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, STREAM, dim))
        self.to_medium = nn.Conv1d(2 * STREAM, 2 * STREAM, 2, 2)
        self.to_small = nn.Conv1d(2 * STREAM, 2 * STREAM, 4, 4)
        self.blocks = nn.ModuleList([PyramidBlock(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, image: torch.Tensor, landmark: torch.Tensor, attention: list | None = None) -> torch.Tensor:
        image = torch.cat([image.mean(dim=1, keepdim=True), image], dim=1) + self.pos_embed
        landmark = torch.cat([landmark.mean(dim=1, keepdim=True), landmark], dim=1)
        x = torch.cat([image, landmark], dim=1)
        levels = [x, self.to_medium(x), self.to_small(x)]
        for block in self.blocks:
            levels = block(levels, attention)
        return self.norm(levels[0])[:, 0]


class PosterV1(nn.Module):
    """POSTER ("large": 8 pyramid blocks) for 224x224 normalized face crops."""

    arch = "poster-v1"
    head_keys = ("head.weight", "head.bias")
    faces_interact = False

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.image_backbone = IR50()
        self.landmark_backbone = MobileFaceNet()
        del self.landmark_backbone.head  # the landmark head never reaches the logits
        self.landmark_backbone.requires_grad_(False)
        self.image_proj = nn.Linear(4 * IR50.channels[2], EMBED_DIM)
        self.fusion = PyramidFusion()
        self.se = SqueezeExcite(EMBED_DIM)
        self.head = nn.Linear(EMBED_DIM, num_classes)

    def train(self, mode: bool = True) -> "PosterV1":
        super().train(mode)
        self.landmark_backbone.eval()  # frozen here (the original let its statistics drift while training)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.head.weight.dtype

    def frozen_modules(self) -> list[nn.Module]:
        return [self.landmark_backbone]

    def optional_modules(self) -> list[nn.Module]:
        return []  # the landmark head is deleted, not kept for optional use

    def gradcam_layers(self) -> list[GradCamLayer]:
        """Spatial layers Grad-CAM can use, by what they are (grids at a 224 input)."""
        ir = self.image_backbone
        return [GradCamLayer("IR-50 stage 1", ir.stage1, (56, 56)), GradCamLayer("IR-50 stage 2", ir.stage2, (28, 28)),
                GradCamLayer("IR-50 stage 3", ir.stage3, (14, 14)),
                GradCamLayer("MobileFaceNet", self.landmark_backbone.expand, (7, 7))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) normalized images (in the checkpoint's colour order) -> (B, num_classes)."""
        return self._forward(x, None)[0]

    def forward_alone(self, x: torch.Tensor) -> torch.Tensor:
        """Each face's logits as in a batch of its own: the same as ``forward`` (faces never interact)."""
        return self(x)

    def forward_intermediates(self, x: torch.Tensor) -> ModelOutput:
        """Logits, the gated feature, both streams' maps and every cross-attention softmax."""
        attention: list[torch.Tensor] = []
        logits, feature, landmark_map, image_map = self._forward(x, attention)
        names = [(b, f"block {b} {level} {kind}") for b in range(DEPTH) for level in LEVELS
                 for kind in ("image-from-landmark", "landmark-from-image")]
        maps = [NamedMap(name, attn, (7, 7) if name.endswith("landmark-from-image") else None,
                         _attention_meaning(name), block=b) for (b, name), attn in zip(names, attention)]
        features = [
            NamedMap("landmark tokens", landmark_map, (7, 7), "MobileFaceNet's 512x7x7 map: one token per position"),
            NamedMap("image tokens", image_map, None,
                     "IR-50's 256x14x14 map viewed as 49 groups of channels: no spatial picture"),
        ]
        return ModelOutput(logits=logits, feature=feature, features=features, attention=maps)

    def _forward(self, x: torch.Tensor, attention: list | None):
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"PosterV1 expects a (B, 3, {INPUT_SIZE}, {INPUT_SIZE}) batch, got {tuple(x.shape)}")
        x = x.to(self.dtype)
        small = F.interpolate(x, size=BACKBONE_SIZE, mode="nearest")
        landmark_map = self.landmark_backbone(small)[2]
        landmark = landmark_map.flatten(2).transpose(1, 2)
        image_map = self.image_backbone(small)[2]
        # A token is 1024 consecutive values of the NCHW tensor: the layout must be NCHW.
        image = self.image_proj(image_map.contiguous().view(x.shape[0], TOKENS, -1))
        feature = self.se(self.fusion(image, landmark, attention))
        return self.head(feature), feature, landmark_map, image_map

    def cpu_fusions(self) -> list[Fusion]:
        """The chains ``fuse_for_cpu`` folds: both backbones', every cross-fusion MLP's first layer
        and its GELU, and the squeeze-excite gate's first layer and its ReLU."""
        mlps = [f"fusion.blocks.{b}.{level}.{stream}_mlp" for b in range(len(self.fusion.blocks))
                for level in LEVELS for stream in ("image", "landmark")]
        return [*under("image_backbone", self.image_backbone.cpu_fusions()),
                *under("landmark_backbone", self.landmark_backbone.cpu_fusions()),
                *(fc_act(mlp) for mlp in mlps), fc_act("se")]


def _attention_meaning(name: str) -> str:
    block = int(name.split()[1])
    mixed = " (after block 0 the token mixing blends both streams into every token)" if block else ""
    if name.endswith("landmark-from-image"):
        return "attention each landmark position (7x7, plus the mean token) receives from the image tokens" + mixed
    return "attention each image token (a channel group, no position) receives from the landmark tokens" + mixed


def recognizes(keys: set[str]) -> bool:
    """True for the key set of a released POSTER file (``module.`` already stripped) or of this model."""
    return "fusion.pos_embed" in keys or any(k.startswith("pyramid_fuse.") for k in keys)


def is_unused(name: str) -> bool:
    return name.startswith(UNUSED_PREFIXES)


def rename_key(name: str) -> str | None:
    """Original POSTER name -> project name (None for names this mapping does not know)."""
    parts = name.split(".")
    if parts[0] == "ir_back":  # face.evoLVe's flat numbering of the units
        inner = ir50.original_key(ir50.split_flat_key(".".join(parts[1:])))
        return None if inner is None else f"image_backbone.{inner}"
    if parts[0] == "face_landback":
        inner = mobilefacenet.original_key(".".join(parts[1:]))
        return None if inner is None else f"landmark_backbone.{inner}"
    if parts[0] == "ir_layer":
        return ".".join(["image_proj"] + parts[1:])
    if parts[0] == "se_block" and parts[1] in ("linear1", "linear2"):
        return ".".join(["se", "fc" + parts[1][-1]] + parts[2:])
    if parts[0] == "head" and parts[1] == "linear":
        return ".".join(["head"] + parts[2:])
    if parts[0] != "pyramid_fuse":
        return None
    if parts[1] in _FUSION:
        return ".".join(["fusion", _FUSION[parts[1]]] + parts[2:])
    if parts[1] == "blocks" and len(parts) > 4 and parts[3] in _LEVEL:
        out = ["fusion", "blocks", parts[2], _LEVEL[parts[3]]]
        if parts[3].startswith("upsample"):
            return ".".join(out + parts[4:])
        if parts[4] in _BLOCK:
            return ".".join(out + [_BLOCK[parts[4]]] + parts[5:])
    return None


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original (optionally ``module.``-prefixed) state dict -> (project state dict, dropped keys).

    Keys that never reach the logits are dropped by name; unknown keys keep their original name so
    that strict loading reports them.
    """
    return map_state_dict(state_dict, rename_key, lambda name, value: is_unused(name))


def poster_v1(num_classes: int = 7) -> PosterV1:
    """A freshly initialised POSTER, 8 pyramid blocks (the registry's builder for "poster-v1")."""
    return PosterV1(num_classes)


# --- The released weights -----------------------------------------------------------------------

# The original test script reads images with OpenCV and never converts them to RGB.
POSTER_V1_PREPROCESSING = Preprocessing(input_size=INPUT_SIZE, colour_order="BGR")


class PosterV1Weights(enum.Enum):
    """The released POSTER checkpoint (Zheng et al. 2022); only RAF-DB was published."""

    RAF_DB = Weights(
        key="poster-v1-raf-db",
        title="POSTER RAF-DB",
        file_name="rafdb_best.pth",
        gdrive_id="",
        gdrive_folder="1jeCPTGjBL8YgKKB9YrI9TYZywme8gymv",
        arch="poster-v1",
        dataset="raf-db",
        class_names=RAF_DB_CLASS_NAMES,
        folder_names=RAF_DB_FOLDER_NAMES,
        published_accuracy=92.05,
        published_metrics=(Metric(92.05, "RAF-DB test accuracy reported in the paper"),),
        preprocessing=POSTER_V1_PREPROCESSING,
        subdir="poster-v1",
        meta=raf_db_meta(),
    )

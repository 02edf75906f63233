"""POSTER++ (POSTER V2, Mao et al. 2023, arXiv 2301.12149).

Two streams look at the same face: an IR-50 image backbone and a frozen MobileFaceNet landmark
backbone, both on the 224x224 crop subsampled to 112x112. At three scales the landmark features
query the image features through window cross-attention; the three fused maps become 3 x 49 tokens
for a two-block ViT whose CLS token, gated by a squeeze-excite layer, gives the expression.
"""
from __future__ import annotations

import enum
import re

import torch
import torch.nn.functional as F
from torch import nn

from . import ir50, mobilefacenet
from .fusions import Fusion, fc_act, under
from .dataset_facts import RAF_DB_CLASS_NAMES, RAF_DB_FOLDER_NAMES, raf_db_meta
from .ir50 import IR50
from .layers import CrossFusionBlock, FusionTransformer, TokenEmbedding, relative_position_index
from .mobilefacenet import MobileFaceNet
from .outputs import GradCamLayer, ModelOutput, NamedMap
from .renaming import map_state_dict
from .weights_api import Preprocessing, Weights

INPUT_SIZE = 224
BACKBONE_SIZE = 112
FUSION_DIMS = (64, 128, 256)
FUSION_HEADS = (2, 4, 8)
FUSION_WINDOWS = (28, 14, 7)
HEAD_WEIGHT = "transformer.head.weight"
VIT_GRID = (7, 7)  # every scale enters the ViT as a 7x7 grid of tokens


class PosterV2(nn.Module):
    """POSTER++ for 224x224 normalized RGB face crops."""

    arch = "poster-v2"
    head_keys = ("transformer.head.weight", "transformer.head.bias")
    faces_interact = False

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

    def frozen_modules(self) -> list[nn.Module]:
        return [self.landmark_backbone]

    def optional_modules(self) -> list[nn.Module]:
        """Modules that run only on request: the landmark head (``forward_intermediates(landmarks=True)``)."""
        return [self.landmark_backbone.head]

    def gradcam_layers(self) -> list[GradCamLayer]:
        """The modules whose outputs meet in the cross-attention, per stream, at 28, 14 and 7 px.

        Image stream: the projections whose outputs are the keys/values. Landmark stream: the
        MobileFaceNet stages used as queries, and the projection of the last (512 -> 256 channels).
        """
        backbone = self.landmark_backbone
        image = [GradCamLayer("image stream", m, (s, s)) for m, s in zip(self.image_proj, FUSION_WINDOWS)]
        landmark = [GradCamLayer("landmark stream", m, (s, s))
                    for m, s in zip((backbone.stage1, backbone.stage2, self.landmark_proj), FUSION_WINDOWS)]
        return image + landmark

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) normalized images -> (B, num_classes) logits."""
        return self._forward(x, intermediates=False)[0]

    def forward_alone(self, x: torch.Tensor) -> torch.Tensor:
        """Each face's logits as in a batch of its own: the same as ``forward`` (faces never interact)."""
        return self(x)

    def forward_intermediates(self, x: torch.Tensor, landmarks: bool = False) -> ModelOutput:
        """Logits plus both streams' maps and the cross-attention at each scale, the ViT's attention,
        and (``landmarks=True``) the landmark head's 68 points."""
        logits, img, lm, cross, vit, head = self._forward(x, intermediates=True, landmarks=landmarks)
        sides = [f"{s}x{s}" for s in FUSION_WINDOWS]
        features = [NamedMap(f"image stream {side}", f, (s, s), "IR-50 features projected at this scale: the "
                             "cross-attention's keys and values") for f, s, side in zip(img, FUSION_WINDOWS, sides)]
        features += [NamedMap(f"landmark stream {side}", f, (s, s), "MobileFaceNet features at this scale: the "
                              "cross-attention's queries") for f, s, side in zip(lm, FUSION_WINDOWS, sides)]
        if head is not None:
            features.append(NamedMap("landmark head", head, None,
                                     "MobileFaceNet's 136-value landmark head; fed normalized RGB here, not "
                                     "the crops it was trained on, so not meaningful landmarks"))
        attention = [NamedMap(f"cross-attention {side}", a, (s, s),
                              "attention each image position receives from the landmark queries at this scale",
                              query_grid=(s, s)) for a, s, side in zip(cross, FUSION_WINDOWS, sides)]
        self_attention = [NamedMap(f"ViT block {i + 1}", a, VIT_GRID,
                                   "self-attention over [CLS] + 7x7 tokens of each of the three scales")
                          for i, a in enumerate(vit)]
        return ModelOutput(logits=logits, features=features, attention=attention, self_attention=self_attention)

    def _forward(self, x: torch.Tensor, intermediates: bool, landmarks: bool = False):
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
        return logits, img, lm, cross_attention, vit_attention, head

    def cpu_fusions(self) -> list[Fusion]:
        """The chains ``fuse_for_cpu`` folds: both backbones', every MLP's first layer and its GELU,
        and the squeeze-excite gate's first layer and its ReLU."""
        mlps = [f"fusion.{i}.mlp" for i in range(len(self.fusion))]
        mlps += [f"transformer.blocks.{i}.mlp" for i in range(len(self.transformer.blocks))]
        return [*under("image_backbone", self.image_backbone.cpu_fusions()),
                *under("landmark_backbone", self.landmark_backbone.cpu_fusions()),
                *(fc_act(mlp) for mlp in mlps), fc_act("transformer.se")]


# --- The original repository's checkpoints (Talented-Q/POSTER_V2) --------------------------------

# Stored in every released file but never used by the published forward pass (14.5 M values).
UNUSED_PREFIXES = (
    "ir_back.output_layer.",
    "VIT.IRLinear1.",
    "VIT.IRLinear2.",
    "VIT.CON1.",
    "VIT.patch_embed.",
    "VIT.eca_block.",
)
UNUSED_PATTERNS = (re.compile(r"^VIT\.blocks\.\d+\.conv\."),)
_VIT = {
    "cls_token": "transformer.cls_token", "pos_embed": "transformer.pos_embed",
    "norm": "transformer.norm", "se_block.linear1": "transformer.se.fc1",
    "se_block.linear2": "transformer.se.fc2", "head.linear": "transformer.head",
}
_FFN = {"gamma1": "ls1.gamma", "gamma2": "ls2.gamma", "norm": "norm_mlp", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}


def recognizes(keys: set[str]) -> bool:
    """True for the key set of a released POSTER++ file (``module.`` already stripped) or of this model."""
    return HEAD_WEIGHT in keys or any(k.startswith(("VIT.", "window1.")) for k in keys)


def is_unused(name: str) -> bool:
    """True for original keys whose values the published forward pass never reads."""
    return name.startswith(UNUSED_PREFIXES) or any(p.match(name) for p in UNUSED_PATTERNS)


def rename_key(name: str) -> str | None:
    """Original parameter name -> project name (None for names this mapping does not know)."""
    parts = name.split(".")
    head, rest = parts[0], parts[1:]
    if head == "ir_back":
        return _prefixed("image_backbone", ir50.original_key(".".join(rest)))
    if head == "face_landback":
        return _prefixed("landmark_backbone", mobilefacenet.original_key(".".join(rest)))
    if head == "last_face_conv":
        return ".".join(["landmark_proj"] + rest)
    if m := re.fullmatch(r"conv([123])", head):
        return ".".join([f"image_proj.{int(m[1]) - 1}"] + rest)
    if m := re.fullmatch(r"window([123])", head):
        return ".".join([f"fusion.{int(m[1]) - 1}.norm_image"] + rest[1:]) if rest[0] == "norm" else None
    if m := re.fullmatch(r"attn([123])", head):
        inner = {"qkv": "kv"}.get(rest[0], rest[0])
        return ".".join([f"fusion.{int(m[1]) - 1}.attn", inner] + rest[1:])
    if m := re.fullmatch(r"ffn([123])", head):
        return _join_mapped(f"fusion.{int(m[1]) - 1}", rest, _FFN)
    if head in ("embed_q", "embed_k"):
        level = 0 if head == "embed_q" else 1
        return ".".join([f"token_embed.levels.{level}"] + rest)
    if head == "embed_v" and rest[0] == "proj":
        return ".".join(["token_embed.levels.2.0"] + rest[1:])
    if head == "VIT":
        if rest[0] == "blocks":
            return ".".join(["transformer.blocks"] + rest[1:])
        return _join_mapped(None, rest, _VIT)
    return None


def _prefixed(prefix: str, name: str | None) -> str | None:
    return None if name is None else f"{prefix}.{name}"


def _join_mapped(prefix: str | None, rest: list[str], table: dict[str, str]) -> str | None:
    for length in (2, 1):
        key = ".".join(rest[:length])
        if key in table:
            out = [table[key]] + rest[length:]
            return ".".join(([prefix] if prefix else []) + out)
    return None


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original (optionally ``module.``-prefixed) state dict -> (project state dict, dropped keys).

    Known-unused keys are dropped by name. Relative-position indices are recomputed by the model
    and only checked here. Unknown keys are returned under their original name so that strict
    loading reports them.
    """
    def drop(name: str, value: torch.Tensor) -> bool:
        if is_unused(name):
            return True
        if name.endswith("relative_position_index"):
            size = int(round(value.shape[0] ** 0.5))
            if not torch.equal(value.cpu().long(), relative_position_index(size)):
                raise ValueError(f"{name} differs from the standard relative-position index")
            return True
        return False

    return map_state_dict(state_dict, rename_key, drop)


def poster_v2(num_classes: int = 7) -> PosterV2:
    """A freshly initialised POSTER++ (the registry's builder for "poster-v2")."""
    return PosterV2(num_classes)


# --- The released weights -----------------------------------------------------------------------

POSTER_V2_PREPROCESSING = Preprocessing(input_size=INPUT_SIZE)


class PosterV2Weights(enum.Enum):
    """The four dataset checkpoints of POSTER++ (Mao et al., 2023)."""

    RAF_DB = Weights(
        key="raf-db",
        arch="poster-v2",
        dataset="raf-db",
        preprocessing=POSTER_V2_PREPROCESSING,
        title="RAF-DB",
        file_name="rafdb_best.pth",
        gdrive_id="1aVm_hmJyZ5E_0p25XTbm3X9ophsKqCxv",
        class_names=RAF_DB_CLASS_NAMES,
        folder_names=RAF_DB_FOLDER_NAMES,
        published_accuracy=92.21,
        meta=raf_db_meta(),
    )
    AFFECTNET_7 = Weights(
        key="affectnet-7",
        arch="poster-v2",
        dataset="affectnet-7",
        preprocessing=POSTER_V2_PREPROCESSING,
        title="AffectNet-7",
        file_name="affectnet7_best.pth",
        gdrive_id="1c_gp5UdlcMjIB2dZtdhXFfHOQg1OqU-D",
        class_names=("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger"),
        folder_names=("0", "1", "2", "3", "4", "5", "6"),
        published_accuracy=67.49,
        meta={"images": "AffectNet manually annotated faces, 7 basic expressions", "test_images": 3500},
    )
    AFFECTNET_8 = Weights(
        key="affectnet-8",
        arch="poster-v2",
        dataset="affectnet-8",
        preprocessing=POSTER_V2_PREPROCESSING,
        title="AffectNet-8",
        file_name="affectnet8_best.pth",
        gdrive_id="1tdYH12vgWnIWfupuBkP3jmWS0pJtDxvh",
        class_names=("Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger",
                     "Contempt"),
        folder_names=("0", "1", "2", "3", "4", "5", "6", "7"),
        published_accuracy=63.77,
        meta={"images": "AffectNet manually annotated faces, 8 expressions", "test_images": 4000},
    )
    CAER_S = Weights(
        key="caer-s",
        arch="poster-v2",
        dataset="caer-s",
        preprocessing=POSTER_V2_PREPROCESSING,
        title="CAER-S",
        file_name="caers_best.pth",
        gdrive_id="1Q7RDJxVPTkDH2rlhiAiOpSbIo1wUOqPv",
        class_names=("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"),
        folder_names=("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"),
        published_accuracy=93.00,
        meta={"images": "CAER-S video frames of TV shows", "test_images": 20913},
    )

"""Map the original POSTER++ state dict (Talented-Q/POSTER_V2) onto this project's module names."""
from __future__ import annotations

import re

import torch

from .layers import relative_position_index

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

_IR_RESIDUAL = {"0": "bn1", "1": "conv1", "2": "act", "3": "conv2", "4": "bn2"}
_IR_SHORTCUT = {"0": "conv", "1": "bn"}
_IR_STEM = {"0": "conv", "1": "bn", "2": "act"}
_LM_MODULES = {
    "conv1": "stem", "conv2_dw": "stem_dw", "conv_23": "down1", "conv_3": "stage1",
    "conv_34": "down2", "conv_4": "stage2", "conv_45": "down3", "conv_5": "stage3",
    "conv_6_sep": "expand",
}
_LM_BLOCK = {"conv": "expand", "conv_dw": "depthwise", "project": "project"}
_LM_CONV = {"conv": "conv", "bn": "bn", "prelu": "act"}
_LM_HEAD = {"conv_6_dw": "pool", "linear": "fc", "bn": "bn"}
_VIT = {
    "cls_token": "transformer.cls_token", "pos_embed": "transformer.pos_embed",
    "norm": "transformer.norm", "se_block.linear1": "transformer.se.fc1",
    "se_block.linear2": "transformer.se.fc2", "head.linear": "transformer.head",
}
_FFN = {"gamma1": "ls1.gamma", "gamma2": "ls2.gamma", "norm": "norm_mlp", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}


def is_unused(name: str) -> bool:
    """True for original keys whose values the published forward pass never reads."""
    return name.startswith(UNUSED_PREFIXES) or any(p.match(name) for p in UNUSED_PATTERNS)


def rename(name: str) -> str | None:
    """Original parameter name -> project name (None for names this mapping does not know)."""
    parts = name.split(".")
    head, rest = parts[0], parts[1:]
    if head == "ir_back":
        return _rename_ir(rest)
    if head == "face_landback":
        return _rename_landmark(rest)
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


def _join_mapped(prefix: str | None, rest: list[str], table: dict[str, str]) -> str | None:
    for length in (2, 1):
        key = ".".join(rest[:length])
        if key in table:
            out = [table[key]] + rest[length:]
            return ".".join(([prefix] if prefix else []) + out)
    return None


def _rename_ir(rest: list[str]) -> str | None:
    if rest[0] == "input_layer":
        return ".".join(["image_backbone.stem", _IR_STEM[rest[1]]] + rest[2:])
    if m := re.fullmatch(r"body([123])", rest[0]):
        branch, index = rest[2], rest[3]
        table = {"res_layer": ("residual", _IR_RESIDUAL), "shortcut_layer": ("shortcut", _IR_SHORTCUT)}.get(branch)
        if table is None or index not in table[1]:
            return None
        return ".".join([f"image_backbone.stage{m[1]}", rest[1], table[0], table[1][index]] + rest[4:])
    return None


def _rename_landmark(rest: list[str]) -> str | None:
    top = rest[0]
    if top == "output_layer":
        inner = _LM_HEAD.get(rest[1])
        if inner is None:
            return None
        if rest[1] == "conv_6_dw":
            return _join_conv(["landmark_backbone.head.pool"], rest[2:])
        return ".".join(["landmark_backbone.head", inner] + rest[2:])
    if top not in _LM_MODULES:
        return None
    out = ["landmark_backbone", _LM_MODULES[top]]
    rest = rest[1:]
    if top in ("conv1", "conv2_dw", "conv_6_sep"):  # plain conv-bn-prelu blocks
        return _join_conv(out, rest)
    if rest[0] == "model":  # a stage of residual bottlenecks
        out.append(rest[1])
        rest = rest[2:]
    if rest[0] not in _LM_BLOCK:
        return None
    return _join_conv(out + [_LM_BLOCK[rest[0]]], rest[1:])


def _join_conv(prefix: list[str], rest: list[str]) -> str | None:
    if not rest or rest[0] not in _LM_CONV:
        return None
    return ".".join(prefix + [_LM_CONV[rest[0]]] + rest[1:])


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original (optionally ``module.``-prefixed) state dict -> (project state dict, dropped keys).

    Known-unused keys are dropped by name. Relative-position indices are recomputed by the model
    and only checked here. Unknown keys are returned under their original name so that strict
    loading reports them.
    """
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state_dict.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if is_unused(name):
            dropped.append(key)
            continue
        if name.endswith("relative_position_index"):
            size = int(round(value.shape[0] ** 0.5))
            if not torch.equal(value.cpu().long(), relative_position_index(size)):
                raise ValueError(f"{key} differs from the standard relative-position index")
            dropped.append(key)
            continue
        out[rename(name) or name] = value
    return out, dropped

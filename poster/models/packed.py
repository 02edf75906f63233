"""CPU inference layers that keep a oneDNN-packed copy of their weight.

On the CPU, PyTorch hands oneDNN a plain weight on every call, and oneDNN reorders it into its
blocked layout before computing. For one face that reorder is a large share of the forward pass
(on a 2-core CPU: about a fifth in float32, more in bfloat16, where the 768-channel token
convolution alone runs 3.5x faster packed). ``poster.models.fusions.fuse_for_cpu`` turns a
model's ``nn.Conv2d`` and ``nn.Linear`` layers into the packed kinds below, which reorder once and
reuse the packed copy for as long as the weight is unchanged. A batch norm that only ever sees a
convolution's output, or whose output only a convolution sees, is folded into that convolution's
packed weight and bias (or bias map), and an activation that only ever sees the result runs as a
oneDNN post-op, where the model declares the chain: each saves a pass over the feature map and a call.

The swap changes the class of each module in place (as ``torch.nn.utils.parametrize`` does), so
parameters, buffers, state-dict keys, hooks and module identity stay what they were. Whenever
gradients are on, the input is not a float32 or bfloat16 CPU tensor, a folded norm is in training
mode, or oneDNN cannot take it, the layers run the ordinary ``nn.Conv2d`` / ``nn.BatchNorm2d`` /
``nn.Linear`` / activation arithmetic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cache import DerivedCache

_mkldnn = torch.ops.mkldnn
_CHANNELS_LAST = torch.channels_last
_ONEDNN_BUILT = torch.backends.mkldnn.is_available()
_BF16: list[bool] = []

# Activations oneDNN applies as a post-op, with the post-op's name.
POST_OPS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.GELU: "gelu", nn.SiLU: "swish", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh",
    nn.Hardswish: "hardswish",
}


def onednn_takes(x: torch.Tensor) -> bool:
    """Whether a packed oneDNN kernel may compute this call: inference on a float32/bfloat16 CPU tensor.

    Called for every layer of every forward pass, so it reads as few attributes as it can.
    """
    if torch.is_grad_enabled() or not _ONEDNN_BUILT or x.device.type != "cpu":
        return False
    if x.dtype is torch.bfloat16:
        if not _BF16:
            _BF16.append(bool(_mkldnn._is_mkldnn_bf16_supported()))
        if not _BF16[0]:
            return False
    elif x.dtype is not torch.float32:
        return False
    return torch._C._get_mkldnn_enabled()


class FoldedBatchNorm2d(nn.BatchNorm2d):
    """A batch norm whose arithmetic the convolution next to it performs; it passes its input on.

    Its parameters and statistics stay here (and in the state dict); the convolution reads them.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FusedActivation(nn.Module):
    """Mixed into an activation that the layer before it applies as a post-op; it passes its input on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FusedReLU(FusedActivation, nn.ReLU):
    pass


class FusedGELU(FusedActivation, nn.GELU):
    pass


class FusedSiLU(FusedActivation, nn.SiLU):
    pass


class FusedSigmoid(FusedActivation, nn.Sigmoid):
    pass


class FusedTanh(FusedActivation, nn.Tanh):
    pass


class FusedHardswish(FusedActivation, nn.Hardswish):
    pass


_FUSED_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    nn.ReLU: FusedReLU, nn.GELU: FusedGELU, nn.SiLU: FusedSiLU, nn.Sigmoid: FusedSigmoid, nn.Tanh: FusedTanh,
    nn.Hardswish: FusedHardswish,
}


class _Activation:
    """What a packed layer needs to apply an absorbed activation either way."""

    def __init__(self, module: nn.Module | None) -> None:
        self.module = module
        self.plain = type(module).forward if module is not None else None
        name = POST_OPS[type(module)] if module is not None else "none"
        self.algorithm = getattr(module, "approximate", "") if name == "gelu" else ""
        self.name = name
        if module is not None:
            module.__class__ = _FUSED_CLASSES[type(module)]

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.module is None else self.plain(self.module, y)


def _affine(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode batch norm as y = scale * x + shift per channel, in float64."""
    scale = norm.running_var.double().add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight.double()
    shift = -norm.running_mean.double() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.double()
    return scale, shift


def _norm_sources(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, ...] | None:
    """The tensors a folded eval-mode norm reads; None when it must run itself (training)."""
    if norm.training or norm._buffers.get("running_var") is None:
        return None
    stats = (norm._parameters["weight"], norm._parameters["bias"], norm._buffers["running_mean"],
             norm._buffers["running_var"])
    return tuple(t for t in stats if t is not None)


class PackedConv2d(nn.Conv2d):
    """``nn.Conv2d`` that packs its weight once for oneDNN, with the batch norms around it folded in.

    A norm after the convolution scales its output channels. A norm before it scales its input
    channels, and its shift becomes a per-position bias map (zero padding does not shift the
    border, so the map differs there from a plain bias), added by oneDNN as a binary post-op.
    """

    _packed: DerivedCache
    folded_norm: FoldedBatchNorm2d | None
    input_norm: FoldedBatchNorm2d | None

    @classmethod
    def adopt(cls, conv: nn.Conv2d, norm: nn.BatchNorm2d | None = None, activation: nn.Module | None = None,
              input_norm: nn.BatchNorm2d | None = None) -> "PackedConv2d":
        """Turn ``conv``, the batch norms after and before it and the activation after them into
        packed modules in place."""
        conv.__class__ = cls
        conv.__dict__["_packed"] = DerivedCache()
        for bn in (norm, input_norm):
            if bn is not None:
                bn.__class__ = FoldedBatchNorm2d
        # Kept out of ``_modules``: norms and activation stay registered where they were, only there.
        conv.__dict__["folded_norm"] = norm
        conv.__dict__["input_norm"] = input_norm
        conv.__dict__["_activation"] = _Activation(activation)
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self._activation
        packed = self._current_pack(x)
        if packed is None:
            if self.input_norm is not None:
                x = nn.BatchNorm2d.forward(self.input_norm, x)
            y = super().forward(x)
            return act(y if self.folded_norm is None else nn.BatchNorm2d.forward(self.folded_norm, y))
        weight, bias, bias_map, args = packed
        x = x.contiguous(memory_format=_CHANNELS_LAST)
        if bias_map is None:
            return _mkldnn._convolution_pointwise(x, weight, bias, *args, act.name, [], act.algorithm)
        if x.shape[0] != 1:
            # oneDNN's fused add does not broadcast the one-image map over a batch at speed
            # (minutes for a batch of 8); the separate add costs one pass over the output.
            y = _mkldnn._convolution_pointwise(x, weight, None, *args, "none", [], "")
            return act(y.add_(bias_map))
        return _mkldnn._convolution_pointwise.binary(x, bias_map, weight, None, *args, "add", 1.0,
                                                     act.module and act.name, [], act.module and act.algorithm)

    def _current_pack(self, x: torch.Tensor) -> tuple | None:
        """(packed weight, bias, bias map, conv arguments) for this call, or None for the plain path."""
        if x.ndim != 4 or self.padding_mode != "zeros" or isinstance(self.padding, str) or not onednn_takes(x):
            return None
        params = self._parameters
        weight, bias = params["weight"], params["bias"]
        if x.dtype is not weight.dtype:
            return None
        sources = (weight,) if bias is None else (weight, bias)
        for norm in (self.folded_norm, self.input_norm):
            if norm is not None:
                stats = _norm_sources(norm)
                if stats is None:
                    return None
                sources += stats
        key = DerivedCache.key(sources)
        if key is None:
            return None
        # The bias map depends on the input's height and width.
        name = "weight" if self.input_norm is None else tuple(x.shape[2:])
        return self._packed.get_keyed(name, key, lambda: self._pack(x))

    def _pack(self, x: torch.Tensor) -> tuple:
        weight = self.weight.detach().double()
        bias = self.bias.detach().double() if self.bias is not None else None
        bias_map = None
        args = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
        if self.input_norm is not None:
            scale, shift = _affine(self.input_norm)
            plane = shift.reshape(1, -1, 1, 1).expand(1, -1, *x.shape[2:])
            bias_map = F.conv2d(plane, weight, bias, self.stride, self.padding, self.dilation, self.groups)
            weight = weight * _per_input_channel(scale, weight.shape, self.groups)
            bias = None
        if self.folded_norm is not None:
            scale, shift = _affine(self.folded_norm)
            weight = weight * scale.reshape(-1, 1, 1, 1)
            if bias_map is not None:
                bias_map = bias_map * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)
            else:
                bias = shift if bias is None else bias * scale + shift
        dtype = self.weight.dtype
        packed = _mkldnn._reorder_convolution_weight(weight.to(dtype), *args, list(x.shape))
        if bias_map is not None:
            bias_map = bias_map.to(dtype).contiguous(memory_format=_CHANNELS_LAST)
        return packed, None if bias is None else bias.to(dtype), bias_map, args


def _per_input_channel(scale: torch.Tensor, weight_shape: torch.Size, groups: int) -> torch.Tensor:
    """``scale`` over input channels laid out as a multiplier for a grouped (out, in/groups, kh, kw) weight."""
    out_channels, per_group = weight_shape[0], weight_shape[1]
    # Output channel o reads input channels g*per_group ... (g+1)*per_group-1, g = o // (out/groups).
    group_of = torch.arange(out_channels) // (out_channels // groups)
    index = group_of[:, None] * per_group + torch.arange(per_group)[None, :]
    return scale[index][:, :, None, None]


class PackedLinear(nn.Linear):
    """``nn.Linear`` that packs its weight once for oneDNN when run on the CPU without gradients."""

    _packed: DerivedCache

    @classmethod
    def adopt(cls, linear: nn.Linear, activation: nn.Module | None = None) -> "PackedLinear":
        """Turn ``linear`` and the activation its output feeds into packed modules in place."""
        linear.__class__ = cls
        linear.__dict__["_packed"] = DerivedCache()
        linear.__dict__["_activation"] = _Activation(activation)
        return linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self._activation
        weight, bias = self._parameters["weight"], self._parameters["bias"]
        key = DerivedCache.key((weight,)) if onednn_takes(x) and x.dtype is weight.dtype else None
        if key is None:
            return act(F.linear(x, weight, bias))
        packed = self._packed.get_keyed("weight", key, lambda: _mkldnn._reorder_linear_weight(weight.detach(), None))
        return _mkldnn._linear_pointwise(x, packed, bias, act.name, [], act.algorithm)

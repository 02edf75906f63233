"""Convolution and linear layers that keep a oneDNN-packed copy of their weight for CPU inference.

On the CPU, PyTorch hands oneDNN a plain weight on every call, and oneDNN reorders it into its
blocked layout before computing. For one face that reorder is a large share of the forward pass
(on a 2-core CPU: about a fifth in float32, more in bfloat16, where the 768-channel token
convolution alone runs 3.5x faster packed). These layers reorder once and reuse the packed copy
for as long as the weight is unchanged; a convolution followed by an eval-mode batch norm can
also fold the norm into that copy, saving a pass over the feature map.

Parameters, state dicts and autograd are those of ``nn.Conv2d`` / ``nn.Linear``: whenever
gradients are on, the input is not a float32 or bfloat16 CPU tensor, or oneDNN cannot take it,
the ordinary path runs.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .cache import DerivedCache

_mkldnn = torch.ops.mkldnn


def _packing_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != weight.dtype:
        return False
    if not DerivedCache.cacheable(weight):
        return False
    if not torch.backends.mkldnn.is_available() or not torch.backends.mkldnn.enabled:
        return False
    if x.dtype == torch.float32:
        return True
    return x.dtype == torch.bfloat16 and _mkldnn._is_mkldnn_bf16_supported()


class PackedConv2d(nn.Conv2d):
    """``nn.Conv2d`` that packs its weight once for oneDNN when run on the CPU without gradients."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._packed = DerivedCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._packable(x):
            return super().forward(x)
        weight = self._packed.get("weight", (self.weight,), lambda: self._pack(self.weight, x))
        return self._packed_conv(x, weight, self.bias)

    def forward_folded(self, x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
        """``bn(self(x))``; packed, with an eval-mode batch norm folded into the weight and bias."""
        sources = tuple(t for t in (self.weight, self.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
                        if t is not None)
        if bn.training or bn.running_var is None or not self._packable(x) or not DerivedCache.cacheable(*sources):
            return bn(super().forward(x))

        def fold() -> tuple[torch.Tensor, torch.Tensor]:
            scale = bn.running_var.double().add(bn.eps).rsqrt()
            if bn.weight is not None:
                scale = scale * bn.weight.double()
            bias = -bn.running_mean.double() * scale
            if self.bias is not None:
                bias = bias + self.bias.double() * scale
            if bn.bias is not None:
                bias = bias + bn.bias.double()
            weight = (self.weight.double() * scale.reshape(-1, 1, 1, 1)).to(self.weight.dtype)
            return self._pack(weight, x), bias.to(self.weight.dtype)

        weight, bias = self._packed.get("folded", sources, fold)
        return self._packed_conv(x, weight, bias)

    def _packable(self, x: torch.Tensor) -> bool:
        return self.padding_mode == "zeros" and not isinstance(self.padding, str) and _packing_applies(x, self.weight)

    def _conv_args(self) -> tuple:
        return list(self.padding), list(self.stride), list(self.dilation), self.groups

    def _pack(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _mkldnn._reorder_convolution_weight(weight.detach(), *self._conv_args(), list(x.shape))

    def _packed_conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return _mkldnn._convolution_pointwise(x, weight, bias, *self._conv_args(), "none", [], "")


class PackedLinear(nn.Linear):
    """``nn.Linear`` that packs its weight once for oneDNN when run on the CPU without gradients."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._packed = DerivedCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_rows(x, slice(None))

    def forward_rows(self, x: torch.Tensor, rows: slice) -> torch.Tensor:
        """Only the output features ``rows``: ``forward(x)[..., rows]`` without computing the rest."""
        weight = self.weight[rows]
        bias = self.bias[rows] if self.bias is not None else None
        if not _packing_applies(x, weight):
            return F.linear(x, weight, bias)
        packed = self._packed.get((rows.start, rows.stop, rows.step), (self.weight,),
                                  lambda: _mkldnn._reorder_linear_weight(weight.detach(), None))
        return _mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

"""1-D convolutions whose windows do not overlap, run as one matrix product on the CPU.

A ``Conv1d`` whose stride equals its kernel (no padding, dilation or groups) reads each input
position once: output ``l`` is ``W (out, in*k)`` times the ``k`` positions of window ``l``
stacked. A ``ConvTranspose1d`` of that shape writes each output position once, so it is
``W^T (out*k, in)`` times the input, spread back over the windows. POSTER's token mixing (kernel 1
over 100 tokens), its pyramid's downsampling (kernels 2 and 4) and its upsampling are all of this
kind, and oneDNN's convolution spends most of its time per call on them setting up for shapes this
small, where a matrix product does not.
"""
from __future__ import annotations

import torch
from torch import nn


def _windows_do_not_overlap(conv: nn.Conv1d | nn.ConvTranspose1d) -> bool:
    (k,), (s,), (p,), (d,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    extra = conv.output_padding[0] if isinstance(conv, nn.ConvTranspose1d) else 0
    return k == s and p == 0 and d == 1 and conv.groups == 1 and extra == 0 and conv.padding_mode == "zeros"


def _fast_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return not torch.is_grad_enabled() and x.device.type == "cpu" and x.ndim == 3 and x.dtype is weight.dtype


class PatchConv1d(nn.Conv1d):
    """``nn.Conv1d`` with stride equal to kernel as ``W @ windows`` when run without gradients on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._parameters["weight"], self._parameters["bias"]
        k = self.kernel_size[0]
        if not _fast_path(x, weight) or x.shape[-1] % k:
            return super().forward(x)
        b, c, length = x.shape
        if k > 1:
            # (B, C, L/k, k) -> (B, C*k, L/k): row c*k+j holds tap j of channel c, as the weight's columns.
            x = x.view(b, c, length // k, k).transpose(2, 3).reshape(b, c * k, length // k)
        y = torch.matmul(weight.view(weight.shape[0], -1), x)
        return y if bias is None else y.add_(bias[:, None])


class PatchConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with stride equal to kernel as ``W^T @ x`` spread over the windows."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        weight, bias = self._parameters["weight"], self._parameters["bias"]
        if output_size is not None or not _fast_path(x, weight):
            return super().forward(x, output_size)
        b, _, length = x.shape
        c_in, c_out, k = weight.shape
        y = torch.matmul(weight.view(c_in, c_out * k).t(), x)  # (B, out*k, L): row o*k+j is tap j of channel o
        y = y.view(b, c_out, k, length).transpose(2, 3).reshape(b, c_out, length * k)
        return y if bias is None else y.add_(bias[:, None])


def adopt_patch_conv1d(module: nn.Module) -> bool:
    """Turn a non-overlapping ``nn.Conv1d`` / ``nn.ConvTranspose1d`` into its matrix-product kind in
    place (parameters, state-dict keys and hooks stay); False when it is neither."""
    kinds = {nn.Conv1d: PatchConv1d, nn.ConvTranspose1d: PatchConvTranspose1d}
    kind = kinds.get(type(module))
    if kind is None or not _windows_do_not_overlap(module):
        return False
    module.__class__ = kind
    return True


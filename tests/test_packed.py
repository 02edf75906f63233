"""Packed layers: the same numbers as nn.Conv2d / nn.Linear, packed only where it is safe."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poster import load_checkpoint
from poster.models.packed import PackedConv2d, PackedLinear
from tests.recipe import reference_input

DTYPES = [torch.float32, torch.bfloat16]
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 0.1}


def _conv(dtype: torch.dtype, **kwargs) -> PackedConv2d:
    torch.manual_seed(0)
    return PackedConv2d(32, 48, 3, **kwargs).to(dtype).eval()


def _input(dtype: torch.dtype, channels: int = 32) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, channels, 14, 14).to(dtype).contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [{"padding": 1}, {"stride": 2, "padding": 1}, {"padding": 1, "groups": 32,
                                                                                 "bias": False}])
def test_packed_conv_matches_conv2d(dtype, kwargs):
    if kwargs.get("groups"):
        torch.manual_seed(0)
        conv = PackedConv2d(32, 32, 3, **kwargs).to(dtype).eval()
    else:
        conv = _conv(dtype, **kwargs)
    x = _input(dtype)
    with torch.no_grad():
        packed = conv(x)
        plain = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    assert conv._packed._entries, "the packed path did not run"
    torch.testing.assert_close(packed.float(), plain.float(), rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_folded_batch_norm_matches_conv_then_norm(dtype):
    conv = _conv(dtype, padding=1, bias=False)
    bn = nn.BatchNorm2d(48).to(dtype).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    x = _input(dtype)
    with torch.no_grad():
        folded = conv.forward_folded(x, bn)
        plain = bn(F.conv2d(x, conv.weight, None, 1, 1))
    assert "folded" in conv._packed._entries
    torch.testing.assert_close(folded.float(), plain.float(), rtol=0, atol=TOLERANCE[dtype])


def test_folding_waits_for_eval_mode():
    conv = _conv(torch.float32, padding=1, bias=False)
    bn = nn.BatchNorm2d(48).train()
    x = _input(torch.float32)
    with torch.no_grad():
        out = conv.forward_folded(x, bn)
    # Training-mode batch norm normalises with the batch's own statistics: zero mean per channel.
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert not conv._packed._entries


@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_linear_and_row_subsets_match_linear(dtype):
    torch.manual_seed(0)
    linear = PackedLinear(64, 96).to(dtype)
    x = torch.randn(3, 5, 64).to(dtype)
    with torch.no_grad():
        torch.testing.assert_close(linear(x).float(), F.linear(x, linear.weight, linear.bias).float(),
                                   rtol=0, atol=TOLERANCE[dtype])
        rows = linear.forward_rows(x[:, :1], slice(32, None))
        torch.testing.assert_close(rows.float(), linear(x[:, :1])[..., 32:].float(), rtol=0, atol=TOLERANCE[dtype])
    assert len(linear._packed._entries) == 2


def test_gradients_take_the_plain_path():
    conv = _conv(torch.float32, padding=1)
    x = _input(torch.float32).requires_grad_()
    conv(x).square().sum().backward()
    assert x.grad is not None and conv.weight.grad is not None
    assert not conv._packed._entries


def test_pack_follows_in_place_weight_updates():
    linear = PackedLinear(16, 8)
    conv = _conv(torch.float32, padding=1)
    x, image = torch.randn(4, 16), _input(torch.float32)
    with torch.no_grad():
        before, before_conv = linear(x), conv(image)
        linear.weight.mul_(2.0)  # an optimizer step or load_state_dict writes in place
        conv.weight.mul_(2.0)
        conv.bias.mul_(2.0)
        torch.testing.assert_close(linear(x) - linear.bias, 2.0 * (before - linear.bias), rtol=0, atol=1e-5)
        torch.testing.assert_close(conv(image), 2.0 * before_conv, rtol=0, atol=1e-4)


def test_weights_made_under_inference_mode_stay_unpacked():
    with torch.inference_mode():
        linear = PackedLinear(16, 8)
        linear(torch.randn(2, 16))
    assert not linear._packed._entries


def test_copies_rebuild_their_own_packs(recipe_checkpoint):
    model = load_checkpoint(recipe_checkpoint)
    x = reference_input(torch.float32)
    with torch.no_grad():
        expected = model(x)
    clone = copy.deepcopy(model)
    assert not clone.transformer.head._packed._entries
    with torch.no_grad():
        clone.transformer.head.weight.mul_(0.0)
        clone.transformer.head.bias.fill_(1.0)
        torch.testing.assert_close(clone(x), torch.ones_like(expected))
        torch.testing.assert_close(model(x), expected)  # the original's packs are untouched

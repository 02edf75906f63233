"""fuse_for_cpu: the same numbers as the plain nn.Conv2d / nn.BatchNorm2d / nn.Linear model, packed,
and folded where the model declares a chain, on POSTER++ and on other models built from the same modules."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from poster import PosterV2
from poster.inference.accelerate import fast_copy
from poster.inference.precision import native_bfloat16
from poster.models.arm import ResNet18Trunk
from poster.models.fusions import Fusion, fuse_for_cpu
from poster.models.packed import POST_OPS, FoldedBatchNorm2d, FusedActivation, PackedConv2d, PackedLinear
from tests._reference import reference_input

DTYPES = [torch.float32, torch.bfloat16]
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 0.1}


def _packs(dtype: torch.dtype) -> bool:
    """Whether oneDNN computes ``dtype`` here: float32 always, bfloat16 only on a CPU that runs it
    natively (elsewhere the packed layers take the plain path, which must give the same numbers)."""
    return dtype is torch.float32 or native_bfloat16("cpu")


def _randomize_norms(model: nn.Module) -> nn.Module:
    """Batch norms with statistics far from the identity, so a missed or doubled fold shows."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
    return model


def _input(dtype: torch.dtype, channels: int = 32, size: int = 14) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, channels, size, size).to(dtype).contiguous(memory_format=torch.channels_last)


def _declare(model: nn.Module, *fusions: Fusion) -> nn.Module:
    """``model`` declaring ``fusions`` as a model class does in its ``cpu_fusions``."""
    model.cpu_fusions = lambda: list(fusions)
    return model


def _packed_pair(model: nn.Module, *fusions: Fusion) -> tuple[nn.Module, nn.Module]:
    """(plain copy, packed model with ``fusions`` folded), both in eval mode."""
    model = _randomize_norms(model).eval()
    return copy.deepcopy(model), fuse_for_cpu(_declare(model, *fusions))


class _ResidualUse(nn.Module):
    """The convolution's output feeds the norm and the residual sum: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 32, 3, padding=1)
        self.bn = nn.BatchNorm2d(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class _SharedNorm(nn.Module):
    """One batch norm after two convolutions: it cannot be folded into both."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(32, 32, 1)
        self.b = nn.Conv2d(32, 32, 1)
        self.bn = nn.BatchNorm2d(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.a(x)) + self.bn(self.b(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [{"padding": 1}, {"stride": 2, "padding": 1},
                                    {"padding": 1, "groups": 32, "bias": False}])
def test_packed_conv_matches_conv2d(dtype, kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 32 if kwargs.get("groups") else 48, 3, **kwargs).to(dtype).eval()
    plain = copy.deepcopy(conv)
    fuse_for_cpu(conv)
    x = _input(dtype)
    with torch.no_grad():
        packed_out = conv(x)
        plain_out = plain(x)
    assert isinstance(conv, PackedConv2d)
    assert bool(conv._packed._entries) == _packs(dtype), "the packed path ran where it should not, or did not"
    torch.testing.assert_close(packed_out.float(), plain_out.float(), rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_after_a_convolution_is_folded(dtype):
    plain, packed = _packed_pair(nn.Sequential(nn.Conv2d(32, 48, 3, padding=1, bias=False), nn.BatchNorm2d(48),
                                               nn.PReLU(48)).to(dtype), Fusion("0", "1"))
    assert isinstance(packed[0], PackedConv2d) and packed[0].folded_norm is packed[1]
    assert isinstance(packed[1], FoldedBatchNorm2d)
    x = _input(dtype)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x).float(), plain(x).float(), rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [{"padding": 1}, {"stride": 2, "padding": 1}, {"padding": 1, "groups": 32},
                                    {"padding": 2, "dilation": 2, "groups": 4}])
def test_a_norm_before_a_convolution_folds_with_a_bias_map(dtype, kwargs):
    # Zero padding is not normalised, so the norm's shift becomes a bias that differs at the border.
    model = nn.Sequential(nn.BatchNorm2d(32), nn.Conv2d(32, 64, 3, **kwargs), nn.PReLU(64))
    plain, packed = _packed_pair(model.to(dtype), Fusion("1", input_norm="0"))
    assert packed[1].input_norm is packed[0] and packed[1].folded_norm is None
    x = _input(dtype)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x).float(), plain(x).float(), rtol=0, atol=TOLERANCE[dtype] * 10)
        torch.testing.assert_close(packed(x[:1, :, :9, :11]).float(), plain(x[:1, :, :9, :11]).float(), rtol=0,
                                   atol=TOLERANCE[dtype] * 10)  # another size: its own bias map
    assert len(packed[1]._packed._entries) == (2 if _packs(dtype) else 0)


@pytest.mark.parametrize("fusion, message", [
    (Fusion("0", "9"), "does not have"), (Fusion("1"), "not a convolution or linear layer"),
    (Fusion("0", activation="1"), "not an activation"), (Fusion("3", "1"), "not a batch norm after a convolution")])
def test_a_wrong_declaration_is_refused_before_anything_changes(fusion, message):
    model = _declare(nn.Sequential(nn.Conv2d(32, 32, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.Linear(32, 4)), fusion)
    with pytest.raises(ValueError, match=message):
        fuse_for_cpu(model)
    assert [type(m) for m in model] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Linear]


@pytest.mark.parametrize("model", [_ResidualUse(), _SharedNorm()], ids=["residual", "shared-norm"])
def test_norms_a_model_does_not_declare_stay(model):
    plain, packed = _packed_pair(model)
    assert not any(isinstance(m, FoldedBatchNorm2d) for m in packed.modules())
    x = _input(torch.float32)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), plain(x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", list(POST_OPS) + [lambda: nn.GELU(approximate="tanh")],
                         ids=[a.__name__ for a in POST_OPS] + ["GELU-tanh"])
def test_activations_run_as_post_ops(dtype, activation):
    plain, packed = _packed_pair(nn.Sequential(nn.Conv2d(32, 48, 3, padding=1), nn.BatchNorm2d(48), activation(),
                                               nn.Flatten(2), nn.Linear(196, 64), activation()).to(dtype),
                                 Fusion("0", "1", "2"), Fusion("4", activation="5"))
    assert isinstance(packed[2], FusedActivation) and isinstance(packed[5], FusedActivation)
    x = _input(dtype)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x).float(), plain(x).float(), rtol=0, atol=TOLERANCE[dtype])
    assert bool(packed[0]._packed._entries) == bool(packed[4]._packed._entries) == _packs(dtype)
    with torch.inference_mode():
        expected = plain(x).float()
    # With gradients on, the plain path applies them (and the norm) itself.
    torch.testing.assert_close(packed(x).detach().float(), expected, rtol=0, atol=TOLERANCE[dtype])


def test_poster_pairs_are_the_conv_then_norm_ones():
    fusions = PosterV2(7).cpu_fusions()
    pairs = [(f.layer, f.norm) for f in fusions if f.norm is not None]
    # Every conv -> BN of IR-50 (stem, shortcuts, second conv of each unit) and MobileFaceNet, none other.
    assert len(pairs) == 1 + 2 + 21 + 48 + 1
    for conv_name, norm_name in pairs:
        assert conv_name.rsplit(".", 1)[0] == norm_name.rsplit(".", 1)[0]
        assert (conv_name.rsplit(".", 1)[1], norm_name.rsplit(".", 1)[1]) in {("conv", "bn"), ("conv2", "bn2")}
    # PReLU is no oneDNN post-op; the GELU of each MLP (three fusion blocks, two ViT blocks) is, and
    # so is the squeeze-excite gate's ReLU.
    assert sorted(f.activation for f in fusions if f.activation is not None) == sorted(
        [f"fusion.{i}.mlp.act" for i in range(3)] + [f"transformer.blocks.{i}.mlp.act" for i in range(2)]
        + ["transformer.se.act"])


def test_resnet18_trunk_packs_and_agrees():
    torch.manual_seed(0)
    trunk = ResNet18Trunk()
    plain, packed = _packed_pair(trunk, *trunk.cpu_fusions())
    assert sum(isinstance(m, FoldedBatchNorm2d) for m in packed.modules()) == 20  # every BN in ResNet-18
    # The stem's ReLU is fused; each block calls its one ReLU twice (after bn1, after the sum): not fused.
    assert isinstance(packed.relu, FusedActivation)
    assert not any(isinstance(block.relu, FusedActivation) for block in packed.layer1)
    assert packed.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(2, 3, 112, 112)
    with torch.inference_mode():
        # float32 rounding through 20 folded layers moves outputs of order 10 by up to ~1e-4,
        # depending on the CPU's oneDNN kernels
        torch.testing.assert_close(packed(x), plain(x), rtol=1e-5, atol=1e-4)


def test_training_mode_norms_normalise_with_batch_statistics():
    plain, packed = _packed_pair(nn.Sequential(nn.Conv2d(32, 48, 3, padding=1, bias=False), nn.BatchNorm2d(48)),
                                 Fusion("0", "1"))
    packed.train()
    before = packed[1].running_mean.clone()
    with torch.no_grad():
        out = packed(_input(torch.float32))
    # Training-mode batch norm normalises with the batch's own statistics (mean = its bias) and
    # updates its running ones.
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), packed[1].bias.detach(), rtol=0, atol=1e-5)
    assert not torch.equal(packed[1].running_mean, before)
    assert not packed[0]._packed._entries


def test_packed_linear_matches_linear():
    for dtype in DTYPES:
        torch.manual_seed(0)
        linear = nn.Linear(64, 96).to(dtype)
        plain = copy.deepcopy(linear)
        fuse_for_cpu(linear)
        x = torch.randn(3, 5, 64).to(dtype)
        with torch.no_grad():
            torch.testing.assert_close(linear(x).float(), plain(x).float(), rtol=0, atol=TOLERANCE[dtype])
        assert bool(linear._packed._entries) == _packs(dtype)


def test_gradients_take_the_plain_path():
    plain, packed = _packed_pair(nn.Sequential(nn.Conv2d(32, 48, 3, padding=1), nn.BatchNorm2d(48), nn.PReLU(48),
                                               nn.Flatten(), nn.Linear(48 * 14 * 14, 5)), Fusion("0", "1"))
    grads = []
    for model in (plain, packed):
        x = _input(torch.float32).requires_grad_()
        model(x).square().sum().backward()
        grads.append((x.grad, model[0].weight.grad, model[1].weight.grad, model[4].weight.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not packed[0]._packed._entries and not packed[4]._packed._entries


def test_float64_keeps_the_plain_arithmetic():
    plain, packed = _packed_pair(nn.Sequential(nn.Conv2d(32, 48, 3, padding=1), nn.BatchNorm2d(48)).double(),
                                 Fusion("0", "1"))
    x = _input(torch.float64)
    with torch.inference_mode():
        assert torch.equal(packed(x), plain(x))
    assert not packed[0]._packed._entries


def test_pack_follows_in_place_weight_updates():
    plain, packed = _packed_pair(nn.Sequential(nn.Conv2d(32, 48, 3, padding=1), nn.BatchNorm2d(48),
                                               nn.Flatten(), nn.Linear(48 * 14 * 14, 5)), Fusion("0", "1"))
    x = _input(torch.float32)
    with torch.no_grad():
        packed(x)  # packs the weights
        for model in (plain, packed):  # an optimizer step or load_state_dict writes in place
            model[0].weight.mul_(2.0)
            model[1].running_var.mul_(4.0)
            model[3].bias.add_(1.0)
        assert not torch.allclose(packed(x), plain(x).mul(0.0))
        torch.testing.assert_close(packed(x), plain(x), rtol=0, atol=1e-4)


def test_weights_made_under_inference_mode_stay_unpacked():
    with torch.inference_mode():
        linear = fuse_for_cpu(nn.Linear(16, 8))
        linear(torch.randn(2, 16))
    assert not linear._packed._entries


def test_the_loader_returns_the_plain_model_and_fast_copy_packs_a_copy(deterministic_model):
    assert not any(isinstance(m, (PackedConv2d, PackedLinear, FoldedBatchNorm2d))
                   for m in deterministic_model.modules())
    fast = fast_copy(deterministic_model)
    assert isinstance(fast.image_backbone.stem.conv, PackedConv2d)
    assert isinstance(fast.image_backbone.stem.bn, FoldedBatchNorm2d)
    assert isinstance(fast.transformer.head, PackedLinear)
    assert fast.state_dict().keys() == deterministic_model.state_dict().keys() and fast.info is deterministic_model.info
    x = reference_input(torch.float32)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), deterministic_model(x), rtol=0, atol=1e-4)
    assert type(deterministic_model.image_backbone.stem.conv) is nn.Conv2d  # the loaded model is left alone


def test_copies_rebuild_their_own_packs(deterministic_model):
    model = fast_copy(deterministic_model)  # a copy of its own: the shared model is left alone
    x = reference_input(torch.float32)[:1]  # one face shows whose packs answer as well as two
    with torch.no_grad():
        expected = model(x)
    clone = copy.deepcopy(model)
    assert not clone.transformer.head._packed._entries
    assert clone.image_backbone.stem.conv.folded_norm is clone.image_backbone.stem.bn
    with torch.no_grad():
        clone.transformer.head.weight.mul_(0.0)
        clone.transformer.head.bias.fill_(1.0)
        torch.testing.assert_close(clone(x), torch.ones_like(expected))
        torch.testing.assert_close(model(x), expected)  # the original's packs are untouched


def test_unbatched_input_takes_the_plain_path():
    torch.manual_seed(0)
    plain = nn.Conv2d(3, 4, 3)
    conv = fuse_for_cpu(copy.deepcopy(plain))
    x = torch.randn(3, 8, 8)
    with torch.inference_mode():
        out = conv(x)
        assert out.shape == (4, 6, 6)
        torch.testing.assert_close(out, plain(x), rtol=0, atol=0)

"""POSTER++ reproduces the original implementation's outputs for the reference weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from poster import PosterV2, count_parameters, load_checkpoint
from poster.models.poster_v2 import FUSION_WINDOWS, checkpoint_filter_fn, is_unused
from tests._reference import reference, reference_input
from tests._checkpoints import checkpoint_file, deterministic_state


@pytest.fixture(scope="module")
def model64(tmp_path_factory):
    path = checkpoint_file(tmp_path_factory.mktemp("f64") / "rafdb_best.pth", "poster-v2", 7, torch.float64)
    return load_checkpoint(path, dtype=torch.float64)


@pytest.fixture(scope="module")
def outputs64(model64):
    with torch.inference_mode():
        return model64.forward_intermediates(reference_input(torch.float64), landmarks=True)


def test_float64_logits_match_reference(outputs64, model64):
    expected = np.array(reference()["logits_7cls"])
    np.testing.assert_allclose(outputs64.logits.numpy(), expected, rtol=0, atol=1e-6)
    with torch.inference_mode():
        fast = model64(reference_input(torch.float64))  # the fused-attention path
    np.testing.assert_allclose(fast.numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.slow  # the full model again, with an eight-class head
def test_float64_eight_classes_match_reference(tmp_path):
    path = checkpoint_file(tmp_path / "affectnet8_best.pth", "poster-v2", 8, torch.float64)
    model = load_checkpoint(path, dtype=torch.float64)
    assert model.num_classes == 8 and model.info.dataset == "affectnet-8"
    with torch.inference_mode():
        logits = model(reference_input(torch.float64))
    np.testing.assert_allclose(logits.numpy(), np.array(reference()["logits_8cls"]), rtol=0, atol=1e-6)


def test_landmark_head_matches_reference(outputs64):
    expected = np.array(reference()["landmark_head_136_7cls"])
    landmarks = outputs64.named("landmark head")
    assert landmarks.shape == (2, 136)
    np.testing.assert_allclose(landmarks.numpy(), expected, rtol=1e-6, atol=0)


def test_cross_attention_matches_reference(outputs64):
    ref = reference()
    assert [a.name for a in outputs64.attention] == ["cross-attention 28x28", "cross-attention 14x14",
                                                     "cross-attention 7x7"]
    for level, named in enumerate(outputs64.attention, start=1):
        attn = named.value
        assert named.grid == named.query_grid == (FUSION_WINDOWS[level - 1],) * 2
        assert list(attn.shape) == ref["cross_attention_shapes"][f"level{level}"]
        key_mean = attn.mean(dim=(1, 2)).numpy()
        np.testing.assert_allclose(key_mean, np.array(ref["cross_attention_key_mean_7cls"][f"level{level}"]),
                                   rtol=0, atol=1e-6)


def test_intermediates_shapes(outputs64):
    features = {f.name: f for f in outputs64.features}
    for stream in ("image", "landmark"):
        maps = [features[f"{stream} stream {s}x{s}"] for s in FUSION_WINDOWS]
        assert [tuple(f.value.shape) for f in maps] == [(2, 64, 28, 28), (2, 128, 14, 14), (2, 256, 7, 7)]
        assert [f.grid for f in maps] == [(s, s) for s in FUSION_WINDOWS]
    assert [a.name for a in outputs64.self_attention] == ["ViT block 1", "ViT block 2"]
    assert [tuple(a.value.shape) for a in outputs64.self_attention] == [(2, 8, 148, 148)] * 2
    for named in outputs64.attention + outputs64.self_attention:
        attn = named.value
        torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))


def test_float32_logits_match_reference(deterministic_model):
    assert deterministic_model.dtype == torch.float32
    with torch.inference_mode():
        logits = deterministic_model(reference_input(torch.float32))
    np.testing.assert_allclose(logits.numpy(), np.array(reference()["logits_7cls"]), rtol=0, atol=1e-3)


def test_plain_forward_records_nothing(deterministic_model):
    with torch.inference_mode():
        _, _, _, cross, vit, head = deterministic_model._forward(reference_input(torch.float32)[:1], intermediates=False)
    assert cross == [None, None, None] and vit == [] and head is None


@pytest.mark.slow  # the full model again in another memory layout
def test_channels_last_and_contiguous_agree(deterministic_checkpoint):
    plain = load_checkpoint(deterministic_checkpoint, channels_last=False)
    fast = load_checkpoint(deterministic_checkpoint, channels_last=True)
    x = reference_input(torch.float32)
    with torch.inference_mode():
        torch.testing.assert_close(plain(x), fast(x), rtol=0, atol=1e-4)


@pytest.mark.slow  # the full model again in bfloat16
def test_bfloat16_keeps_top_class(deterministic_checkpoint, deterministic_model):
    model = load_checkpoint(deterministic_checkpoint, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    x = reference_input(torch.float32)
    with torch.inference_mode():
        low, full = model(x).float(), deterministic_model(x)
    assert torch.equal(low.argmax(1), full.argmax(1))
    # bfloat16 keeps ~3 significant digits; through 40+ layers the logits move by about 0.1 here.
    assert (low - full).abs().max() < 0.2


def test_parameter_count():
    model = PosterV2(7)
    assert count_parameters(model) == 43_753_941  # 43.75 M; the landmark head (96 k) runs on request only
    assert all(not p.requires_grad for p in model.landmark_backbone.parameters())


def test_unused_keys_are_exactly_the_documented_ones():
    state = deterministic_state("poster-v2", 7)
    mapped, dropped = checkpoint_filter_fn({f"module.{k}": v for k, v in state.items()})
    unused = {k for k in state if is_unused(k)}
    assert {k.removeprefix("module.") for k in dropped} == unused | {
        f"attn{i}.relative_position_index" for i in (1, 2, 3)}
    assert round(sum(state[k].numel() for k in unused) / 1e6, 1) == 14.5
    assert set(mapped) == set(PosterV2(7).state_dict())


def test_input_shape_is_checked(deterministic_model):
    with pytest.raises(ValueError, match="224"):
        deterministic_model(torch.zeros(1, 3, 112, 112))


def test_train_mode_keeps_landmark_backbone_frozen():
    model = PosterV2(7).train()
    assert model.image_backbone.training and not model.landmark_backbone.training


@pytest.mark.slow  # loads the full model again under inference mode
def test_model_loaded_under_inference_mode_runs(deterministic_checkpoint, deterministic_model):
    x = reference_input(torch.float32)
    with torch.inference_mode():
        model = load_checkpoint(deterministic_checkpoint)
        # Such weights cannot be packed (no version counter), so this is the plain path against the
        # packed one: equal up to float32 rounding.
        torch.testing.assert_close(model(x), deterministic_model(x), rtol=0, atol=1e-4)


def test_position_bias_cache_follows_weight_updates(deterministic_checkpoint):
    model = load_checkpoint(deterministic_checkpoint)
    x = reference_input(torch.float32)[:1]  # one face shows whether the cached bias follows
    with torch.inference_mode():
        before = model(x)
    with torch.no_grad():
        for block in model.fusion:
            block.attn.relative_position_bias_table.mul_(3.0)  # an optimizer step updates in place
    with torch.inference_mode():
        after = model(x)
        recorded = model.forward_intermediates(x).logits  # explicit-attention path, no cache
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, recorded, rtol=0, atol=1e-4)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_cross_fusion_attends_with_the_fused_kernel_in_either_layout(memory_format):
    """Compiled graphs may hand the block plain NCHW maps; it still runs flash attention, never
    a (784 x 784) score matrix through bmm, and both layouts give the same tokens."""
    from poster.models.layers import CrossFusionBlock

    torch.manual_seed(0)
    block = CrossFusionBlock(64, 2, 28).eval()
    image, landmarks = torch.randn(1, 64, 28, 28), torch.randn(1, 64, 28, 28)
    with torch.inference_mode():
        expected, _ = block(image, landmarks)
        with torch.profiler.profile() as prof:
            out, _ = block(image.to(memory_format=memory_format), landmarks.to(memory_format=memory_format))
    ops = {event.key for event in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops and "aten::bmm" not in ops, sorted(ops)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)

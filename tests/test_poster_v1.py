"""POSTER (v1) against the original implementation's outputs, through the released-checkpoint loader.

The files are the deterministic weights saved as ``rafdb_best.pth`` was: ``iter``, DataParallel names,
SAM-around-Adam state with ``old_p`` copies, every tensor tagged as on cuda:0.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from poster import CheckpointError, count_parameters, load_checkpoint
from poster.models.poster_v1 import PosterV1, checkpoint_filter_fn, is_unused
from poster.weights.registry import create_model
from poster.weights.safe_pickle import safe_torch_load
from poster.weights.deterministic import original_keys
from tests._reference import reference, reference_input
from tests._checkpoints import checkpoint_file, deterministic_state

REF = reference("poster-v1")
ORIGINAL_MODULES = [f"pyramid_fuse.blocks.{b}.block_{level}.attn_{kind}"
                    for b in range(8) for level in "lms" for kind in ("img", "lm")]


@pytest.fixture(scope="module")
def file64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkpoint_file(tmp_path_factory.mktemp("v1") / "rafdb_best.pth", "poster-v1", dtype=torch.float64)


@pytest.fixture(scope="module")
def outputs64(file64: Path):
    model = load_checkpoint(file64, dtype=torch.float64)
    with torch.inference_mode():
        return model, model.forward_intermediates(reference_input(torch.float64))


def test_released_layout_is_what_the_loader_reads(file64: Path) -> None:
    raw = safe_torch_load(str(file64))
    assert set(raw) == {"iter", "model_state_dict", "optimizer_state_dict"}
    assert all(k.startswith("module.") for k in raw["model_state_dict"])
    assert "old_p" in raw["optimizer_state_dict"]["state"][0]
    with zipfile.ZipFile(file64) as zf:
        assert b"cuda:0" in zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))


def test_architecture_and_record_come_from_the_keys(outputs64, deterministic_checkpoint: Path) -> None:
    model, _ = outputs64
    info = model.info
    assert isinstance(model, PosterV1) and info.arch == "poster-v1"
    assert (info.name, info.dataset, info.published_accuracy) == ("poster-v1-raf-db", "raf-db", 92.05)
    assert info.preprocessing.colour_order == "BGR"
    assert deterministic_checkpoint.name == "rafdb_best.pth" and load_checkpoint(deterministic_checkpoint).info.arch == "poster-v2"


def test_float64_logits_and_feature_match_reference(outputs64) -> None:
    _, out = outputs64
    np.testing.assert_allclose(out.logits.numpy(), REF["logits_7cls"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out.feature[0].numpy(), REF["feature_7cls"][0], atol=1e-6, rtol=0)


def test_float64_attention_of_every_module_matches_reference(outputs64) -> None:
    _, out = outputs64
    assert len(out.attention) == len(ORIGINAL_MODULES) == 48
    for original, recorded in zip(ORIGINAL_MODULES, out.attention):
        assert list(recorded.value.shape) == REF["attention_shapes"][original], original
        key_mean = recorded.value.mean(dim=(1, 2)).numpy()  # over heads and queries: per key
        np.testing.assert_allclose(key_mean, REF["attention_key_mean_7cls"][original], atol=1e-6, rtol=0,
                                   err_msg=original)
    assert out.attention[1].grid == (7, 7) and out.attention[0].grid is None  # landmark keys are positions


def test_float32_logits_within_1e3(tmp_path: Path) -> None:
    model = load_checkpoint(checkpoint_file(tmp_path / "rafdb_best.pth", "poster-v1", dtype=torch.float32))
    with torch.inference_mode():
        logits = model(reference_input(torch.float32))
    np.testing.assert_allclose(logits.numpy(), REF["logits_7cls"], atol=1e-3, rtol=0)


def test_parameter_counts_stored_and_used() -> None:
    keys = original_keys("poster-v1", 7)
    stored = sum(math.prod(s) for n, s, t in keys if t != "int64" and not n.endswith(("running_mean", "running_var")))
    assert stored == REF["parameters_stored"] == 71_850_399
    model = PosterV1(7)
    assert count_parameters(model) == REF["parameters_used"] == 58_906_255
    assert all(not p.requires_grad for p in model.landmark_backbone.parameters())


def test_unused_keys_are_dropped_by_the_explicit_list() -> None:
    state = deterministic_state("poster-v1", 7)
    mapped, dropped = checkpoint_filter_fn({f"module.{k}": v for k, v in state.items()})
    assert {k.removeprefix("module.") for k in dropped} == {k for k in state if is_unused(k)}
    assert {".".join(k.split(".")[1:3]) for k in dropped} == {
        "ir_back.output_layer", "face_landback.output_layer", "pyramid_fuse.cls_token"}
    assert set(mapped) == set(create_model("poster-v1", 7).state_dict())


def test_strict_loading_names_unexpected_and_missing_keys(tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in deterministic_state("poster-v1", 7).items()}
    extra = dict(state, **{"module.pyramid_fuse.blocks.0.block_l.adapter.weight": torch.zeros(2)})
    torch.save({"model_state_dict": extra}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"does not fit POSTER: unexpected 1 keys \(pyramid_fuse.blocks.0.block_l.adapter"):
        load_checkpoint(tmp_path / "extra.pth", dataset="raf-db")
    del state["module.pyramid_fuse.blocks.3.block_s.attn_lm.proj.bias"]
    torch.save({"model_state_dict": state}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing 1 keys \(fusion.blocks.3.small.landmark_attn.proj.bias\)"):
        load_checkpoint(tmp_path / "missing.pth", dataset="raf-db")


def test_arch_override_must_agree_with_the_keys(file64: Path) -> None:
    with pytest.raises(CheckpointError, match="holds a POSTER network, not ARM"):
        load_checkpoint(file64, arch="arm")


def test_train_mode_keeps_the_landmark_backbone_frozen_and_input_is_checked() -> None:
    model = PosterV1(7).train()
    assert model.training and not model.landmark_backbone.training
    with pytest.raises(ValueError, match=r"\(B, 3, 224, 224\)"):
        model(torch.zeros(1, 3, 112, 112))


@pytest.mark.slow  # the full model again in another memory layout
def test_channels_last_model_gives_the_same_logits(file64: Path) -> None:
    # Image tokens are views of the NCHW tensor: a channels-last map must not change them.
    plain = load_checkpoint(file64, dtype=torch.float64, channels_last=False)
    fast = load_checkpoint(file64, dtype=torch.float64, channels_last=True)
    x = reference_input(torch.float64)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), plain(x),
                                   atol=1e-9, rtol=0)

"""ARM against the original implementation's outputs, through the released-checkpoint loader,
for a batch of two (the batch mean mixes them) and for each image alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from poster import CheckpointError, count_parameters, load_checkpoint
from poster.models.arm import ARM
from poster.weights.safe_pickle import safe_torch_load
from tests._reference import reference, reference_input
from tests._checkpoints import checkpoint_file, deterministic_state

REF = reference("arm")


@pytest.fixture(scope="module")
def file64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkpoint_file(tmp_path_factory.mktemp("arm") / "epoch59_acc0.9205.pth", "arm", dtype=torch.float64)


@pytest.fixture(scope="module")
def model64(file64: Path) -> ARM:
    return load_checkpoint(file64, dtype=torch.float64)


def test_released_layout_and_record(file64: Path, model64: ARM) -> None:
    raw = safe_torch_load(str(file64))
    assert set(raw) == {"iter", "model_state_dict", "optimizer_state_dict"}
    assert "arm.de_albino.weight" in raw["model_state_dict"]
    assert set(raw["optimizer_state_dict"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    info = model64.info
    assert (info.arch, info.name, info.dataset, info.preprocessing.colour_order) == ("arm", "arm-raf-db", "raf-db", "RGB")
    assert info.published_accuracy == 92.05


def test_float64_batch_of_two_matches_reference(model64: ARM) -> None:
    with torch.inference_mode():
        logits = model64(reference_input(torch.float64))
    np.testing.assert_allclose(logits.numpy(), REF["logits_batch_of_2_7cls"], atol=1e-6, rtol=0)


def test_float64_each_alone_matches_reference(model64: ARM) -> None:
    x = reference_input(torch.float64)
    with torch.inference_mode():
        alone = model64.forward_alone(x)
        one_by_one = torch.cat([model64(x[:1]), model64(x[1:])])
    np.testing.assert_allclose(alone.numpy(), REF["logits_each_alone_7cls"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(one_by_one.numpy(), REF["logits_each_alone_7cls"], atol=1e-6, rtol=0)
    # The batch term is real: the same face scores differently beside another face.
    assert np.abs(np.array(REF["logits_batch_of_2_7cls"]) - alone.numpy()).max() > 1e-2


def test_float32_within_1e3(tmp_path: Path) -> None:
    model = load_checkpoint(checkpoint_file(tmp_path / "epoch59_acc0.9205.pth", "arm", dtype=torch.float32))
    x = reference_input(torch.float32)
    with torch.inference_mode():
        np.testing.assert_allclose(model(x).numpy(), REF["logits_batch_of_2_7cls"], atol=1e-3, rtol=0)
        np.testing.assert_allclose(model.forward_alone(x).numpy(), REF["logits_each_alone_7cls"], atol=1e-3, rtol=0)


def test_parameter_count_and_maps(model64: ARM) -> None:
    assert count_parameters(ARM(7)) == REF["parameters"] == 11_178_395
    with torch.inference_mode():
        out = model64.forward_intermediates(reference_input(torch.float64))
    maps = {m.name: m for m in out.features}
    assert maps["de-albino map"].value.shape == (2, 1, 11, 11) and maps["de-albino map"].grid == (11, 11)
    np.testing.assert_allclose(out.logits.numpy(), REF["logits_each_alone_7cls"], atol=1e-6, rtol=0)


def test_strict_loading_names_keys(tmp_path: Path) -> None:
    state = deterministic_state("arm", 7)
    del state["arm.alpha"]
    torch.save({"iter": 1, "model_state_dict": state}, tmp_path / "arm.pth")
    with pytest.raises(CheckpointError, match=r"does not fit ARM: missing 1 keys \(arm.alpha\)"):
        load_checkpoint(tmp_path / "arm.pth", dataset="raf-db")

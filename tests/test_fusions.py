"""The CPU fusions each architecture declares: they cover every chain the data flow allows (as a
``torch.fx`` trace of the forward passes found them once, recorded in data/traced_fusions.json) and
the fused copy gives the plain model's numbers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from poster import load_checkpoint
from poster.inference.accelerate import fast_copy
from poster.models.fusions import declared_fusions
from poster.models.packed import FoldedBatchNorm2d, FusedActivation
from poster.weights.registry import ARCHITECTURES, create_model
from tests._checkpoints import checkpoint_file
from tests._reference import reference_input

TRACED = json.loads((Path(__file__).parent / "data" / "traced_fusions.json").read_text())


def _names(fusions) -> set[tuple]:
    return {(f.layer, f.norm, f.activation, f.input_norm) for f in fusions}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_declared_chains_cover_what_the_tracer_found(arch):
    declared = _names(declared_fusions(create_model(arch, 7)))
    traced = {tuple(chain) for chain in TRACED[arch]}
    assert traced and traced <= declared


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_the_fused_copy_gives_the_plain_models_numbers(arch, tmp_path, request):
    # POSTER++ and POSTER: the session's loaded models (fast_copy leaves them alone: test_packed checks that)
    shared = {"poster-v2": "deterministic_model", "poster-v1": "poster_v1_model"}
    plain = (request.getfixturevalue(shared[arch]) if arch in shared
             else load_checkpoint(checkpoint_file(tmp_path / f"{arch}.pth", arch)))
    fused = fast_copy(plain)
    fusions = declared_fusions(fused)
    assert sum(isinstance(m, FoldedBatchNorm2d) for m in fused.modules()) == sum(
        (f.norm is not None) + (f.input_norm is not None) for f in fusions)
    assert sum(isinstance(m, FusedActivation) for m in fused.modules()) == sum(f.activation is not None for f in fusions)
    x = reference_input(torch.float32)[:2 if arch == "arm" else 1]  # two faces where they could mix
    forward = (lambda m: m.forward_alone) if arch == "arm" else (lambda m: m)  # ARM: each face alone
    with torch.inference_mode():
        expected = forward(plain)(x)
        torch.testing.assert_close(forward(fused)(x), expected, rtol=0, atol=1e-4)
        fast_bf16 = forward(fast_copy(plain, torch.bfloat16))(x).float()
    assert torch.equal(fast_bf16.argmax(1), expected.argmax(1))


def test_a_fast_copy_leaves_the_loaded_model_exact(tmp_path):
    path = checkpoint_file(tmp_path / "arm.pth", "arm", dtype=torch.float64)
    plain = load_checkpoint(path, dtype=torch.float64)
    x = reference_input(torch.float64)
    with torch.inference_mode():
        before = plain.forward_alone(x)
        fast_copy(plain, torch.bfloat16)
        assert torch.equal(plain.forward_alone(x), before)
    assert next(plain.parameters()).dtype == torch.float64

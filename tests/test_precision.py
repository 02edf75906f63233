"""One precision rule for every model call: the default per device, float16's overflow redone in
float32, an unknown format refused, and no NaN or infinity in any result."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from poster.errors import PosterError
from poster.inference import precision
from poster.inference.predictor import Predictor


def test_the_rule_per_device_and_format(monkeypatch):
    cpu = torch.device("cpu")
    assert precision.resolve_precision("float16", cpu) == "float16"
    assert precision.resolve_precision("exact", cpu) == "exact"
    assert precision.default_precision(cpu, autocast=True) == "float32"  # autocast is slow on a CPU
    monkeypatch.setattr(precision, "native_bfloat16", lambda device: True)
    assert precision.resolve_precision(None, cpu) == precision.resolve_precision("auto", cpu) == "bfloat16"
    assert precision.default_precision("cuda", autocast=True) == "bfloat16"
    monkeypatch.setattr(precision, "native_bfloat16", lambda device: False)
    assert precision.default_precision("cuda", autocast=True) == "float32"  # a GPU before Ampere
    with pytest.raises(PosterError, match="unknown precision 'float64'"):
        precision.resolve_precision("float64", cpu)


def _growing() -> nn.Linear:
    """Scores of 1.2e5 for inputs of 30: past float16's largest value (65504), as IR-50's are."""
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight.fill_(1e3)
        linear.bias.zero_()
    return linear


def test_an_overflowing_float16_batch_is_computed_again_in_float32():
    model, batch, cpu = _growing(), torch.full((2, 4), 30.0), torch.device("cpu")
    with torch.autocast("cpu", dtype=torch.float16):
        assert not torch.isfinite(model(batch)).all()  # the overflow this guards against
    logits, used = precision.finite_logits(model, batch, "float16", cpu)
    assert used == "float32" and torch.equal(logits, model(batch))
    logits, used = precision.finite_logits(model, batch, "bfloat16", cpu)
    assert used == "bfloat16" and torch.isfinite(logits).all()


def test_scores_that_stay_infinite_are_an_error_not_nan():
    def infinite(x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 3), float("inf"))

    logits, used = precision.finite_logits(infinite, torch.ones(1, 4), "float16", torch.device("cpu"))
    with pytest.raises(PosterError, match="overflowed in float32"):
        precision.ensure_finite(logits, used)


def test_the_predictor_in_float16_gives_the_float32_answer_for_the_deterministic_weights(deterministic_model,
                                                                                         face_detector, astronaut,
                                                                                         monkeypatch):
    """The deterministic weights overflow float16 on the CPU as real ones do on a GPU."""
    from poster.inference import predictor as predictor_module

    crop = [np.ascontiguousarray(astronaut[62:172, 181:268])]
    calls: list[tuple[torch.dtype | None, bool]] = []  # (autocast's format, whether the logits were all finite)

    def watched(forward, batch, fmt, device):
        def recorded(x: torch.Tensor) -> torch.Tensor:
            logits = forward(x)
            autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
            calls.append((autocast, bool(torch.isfinite(logits).all())))
            return logits
        return precision.finite_logits(recorded, batch, fmt, device)

    monkeypatch.setattr(predictor_module, "finite_logits", watched)
    half = Predictor(deterministic_model, face_detector, precision="float16")
    exact = Predictor(deterministic_model, face_detector, precision="float32")
    assert half.precision == "float16" and exact.precision == "float32"
    probabilities = half.classify(crop)
    # float16 overflowed, so the batch was computed again in float32 (without autocast)
    assert calls == [(torch.float16, False), (None, True)]
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities, exact.classify(crop), rtol=0, atol=1e-6)


def test_a_model_with_converted_weights_runs_in_their_format(deterministic_model, face_detector):
    fast = nn.Linear(2, 2).to(torch.bfloat16)
    assert Predictor(fast, face_detector).precision == "bfloat16"
    with pytest.raises(ValueError, match="bfloat16 weights cannot run in float16"):
        Predictor(fast, face_detector, precision="float16")
    assert Predictor(deterministic_model, face_detector).precision == "float32"  # the CPU rule for autocast


def test_exact_turns_tf32_off_while_any_exact_call_runs_and_restores_it():
    from torch.backends import cuda, cudnn

    before = (cuda.matmul.allow_tf32, cudnn.allow_tf32)
    cuda.matmul.allow_tf32 = cudnn.allow_tf32 = True
    try:
        with precision.no_tf32():
            with precision.no_tf32():  # a second thread's exact call, say
                assert (cuda.matmul.allow_tf32, cudnn.allow_tf32) == (False, False)
            assert (cuda.matmul.allow_tf32, cudnn.allow_tf32) == (False, False)  # the first still runs
        assert (cuda.matmul.allow_tf32, cudnn.allow_tf32) == (True, True)
    finally:
        cuda.matmul.allow_tf32, cudnn.allow_tf32 = before

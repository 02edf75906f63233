"""Model calls from other threads while a model compiles: a torch.fx trace swaps nn.Module.__call__
process-wide for a moment, and a guarded call waits that moment out or runs again."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from poster import load_checkpoint
from poster.data.sample_faces import face_crops
from poster.inference import compile_guard
from poster.inference.compile_guard import beside_compiles, compiling, modules_swapped
from poster.inference.predictor import Predictor
from poster.inference.transforms import model_batch
from tests._checkpoints import checkpoint_file


@pytest.fixture(scope="module")
def arm_predictor(tmp_path_factory) -> Predictor:
    return Predictor(load_checkpoint(checkpoint_file(tmp_path_factory.mktemp("arm") / "epoch59_acc0.9205.pth", "arm")))


def _trace_for(seconds: float) -> threading.Thread:
    """A real torch.fx trace in another thread that keeps nn.Module.__call__ swapped for ``seconds``."""
    def slow(x):
        time.sleep(seconds)
        return x + 1

    thread = threading.Thread(target=torch.fx.symbolic_trace, args=(slow,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not modules_swapped():
        assert time.monotonic() < deadline, "the trace never started"
        time.sleep(0.001)
    return thread


def test_a_trace_in_another_thread_breaks_plain_calls_and_guarded_ones_wait_it_out(arm_predictor):
    crops = [np.asarray(c) for c in face_crops()[:2]]
    expected = arm_predictor.classify(crops)
    batch = model_batch(crops, arm_predictor.model)
    with compiling():
        trace = _trace_for(0.6)
        with pytest.raises(NameError, match="not installed as a submodule"), torch.inference_mode():
            arm_predictor.model.forward_alone(batch)  # the hazard itself, unguarded
        assert modules_swapped()
        np.testing.assert_array_equal(arm_predictor.classify(crops), expected)
        assert not modules_swapped()
        trace.join()
    assert compile_guard.compiles_under_way() == 0


def test_a_call_that_fails_during_a_compile_runs_again_and_one_outside_a_compile_does_not():
    calls = []

    @beside_compiles
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise NameError("module is not installed as a submodule")
        return "ran"

    with pytest.raises(NameError):
        flaky()
    calls.clear()
    with compiling():
        assert flaky() == "ran" and len(calls) == 2


def test_a_guarded_call_inside_another_leaves_the_retrying_to_the_outer_one():
    calls = {"outer": 0, "inner": 0}

    @beside_compiles
    def inner() -> str:
        calls["inner"] += 1
        if calls["inner"] == 1:
            raise NameError("module is not installed as a submodule")
        return "ran"

    @beside_compiles
    def outer() -> str:
        calls["outer"] += 1
        return inner()

    with compiling():
        assert outer() == "ran"
    assert calls == {"outer": 2, "inner": 2}  # one retry, of the whole outer call
    calls.update(outer=0, inner=0)
    with pytest.raises(NameError):
        outer()  # outside a compile nothing is retried, nested or not
    assert calls == {"outer": 1, "inner": 1}


def test_a_real_error_still_surfaces_during_a_compile():
    @beside_compiles
    def broken() -> None:
        raise ValueError("a bad input stays a bad input")

    with compiling(), pytest.raises(ValueError, match="bad input"):
        broken()

"""Compiled inference: the whole network in one graph, the eager model's answers, never a compile on a call.

These compile for real (TorchInductor and the machine's C++ compiler): ARM in about ten seconds,
POSTER++ in bfloat16 in about a minute and POSTER in about a minute and a half on two cores.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch._dynamo.utils as dynamo_utils

from poster import load_checkpoint
from poster.data.sample_faces import face_crops
from poster.inference import compiled as compiled_module
from poster.inference.compiled import COMPILED, EAGER, MAX_FACES, CompiledForward, compile_mode, compile_wanted, has_cpp_compiler
from poster.inference.predictor import Predictor
from poster.inference.transforms import model_batch
from tests._checkpoints import checkpoint_file

pytestmark = pytest.mark.skipif(not has_cpp_compiler(), reason="TorchInductor needs a C++ compiler")


@pytest.fixture(scope="module", autouse=True)
def _inductor_cache(tmp_path_factory):
    """Inductor's generated code goes to this run's temporary folder, not the machine's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor-cache")))
        yield


def _graphs() -> int:
    return dynamo_utils.counters["stats"]["unique_graphs"]


@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    return load_checkpoint(checkpoint_file(tmp_path_factory.mktemp("arm") / "epoch59_acc0.9205.pth", "arm"))


@pytest.fixture(scope="module")
def arm_compiled(arm) -> CompiledForward:
    return CompiledForward(arm, background=False)


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    return [np.asarray(c) for c in face_crops()[:3]]


def test_arm_compiles_whole_and_classifies_each_face_alone(arm, arm_compiled, crops):
    assert arm_compiled.state == COMPILED and arm_compiled.reason == ""
    batch = model_batch(crops, arm)
    with torch.inference_mode():
        graphs = _graphs()
        got = arm_compiled(batch)
        assert _graphs() == graphs  # built once, in the constructor: a call never compiles
        torch.testing.assert_close(got, arm.forward_alone(batch), rtol=0, atol=1e-4)
        assert not torch.allclose(arm(batch), arm.forward_alone(batch), atol=1e-3)  # the batch mean is not there


def test_what_the_compiled_copy_was_not_built_for_runs_eagerly(arm, arm_compiled, crops):
    batch = model_batch(crops, arm)
    with torch.inference_mode():
        assert arm_compiled.takes(batch)
        assert not arm_compiled.takes(batch.double()) and not arm_compiled.takes(batch[:, :, :112, :112])
        many = batch[:1].expand(MAX_FACES + 1, -1, -1, -1)
        assert not arm_compiled.takes(many)
        graphs = _graphs()
        torch.testing.assert_close(arm_compiled(many), arm.forward_alone(many), rtol=0, atol=0)
        assert _graphs() == graphs
    assert not arm_compiled.takes(batch)  # gradients on: Grad-CAM and training use the model itself
    x = batch[:1].clone().requires_grad_(True)
    arm_compiled(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_a_compile_that_fails_leaves_the_eager_model_answering(arm, crops, monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("Compiler: g++ not found\nmore detail")

    monkeypatch.setattr(compiled_module.torch, "compile", no_compiler)
    forward = CompiledForward(arm, background=True)
    assert forward.wait(60) is False
    assert forward.state == EAGER and forward.reason == "RuntimeError: Compiler: g++ not found"
    batch = model_batch(crops, arm)
    with torch.inference_mode():
        torch.testing.assert_close(forward(batch), arm.forward_alone(batch), rtol=0, atol=0)


def test_the_predictor_reports_its_engine_and_keeps_its_answers(arm, crops):
    eager = Predictor(arm)
    compiled = Predictor(arm, detector=eager.detector)
    assert eager.engine == EAGER and compiled.engine == EAGER
    assert compiled.compile(background=False) is compiled.compile() and compiled.engine == COMPILED
    np.testing.assert_allclose(compiled.classify(crops), eager.classify(crops), rtol=0, atol=1e-5)


def test_compile_is_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("POSTER_COMPILE", "0")
    assert not compile_wanted()
    monkeypatch.setenv("POSTER_COMPILE", "1")
    assert compile_wanted() and compile_mode() is None
    monkeypatch.setenv("POSTER_COMPILE", "max-autotune")
    assert compile_wanted() and compile_mode() == "max-autotune"
    monkeypatch.setenv("POSTER_COMPILE", "reduce-overhead; rm -rf /")
    assert compile_mode() is None
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    has_cpp_compiler.cache_clear()
    try:
        assert not compile_wanted()  # no C++ compiler: nothing to compile with
    finally:
        has_cpp_compiler.cache_clear()


def test_poster_v2_in_bfloat16_compiles_whole_and_agrees_with_the_eager_fast_mode(deterministic_checkpoint, crops):
    fp32 = load_checkpoint(deterministic_checkpoint)
    bf16 = load_checkpoint(deterministic_checkpoint, dtype=torch.bfloat16)
    forward = CompiledForward(bf16, background=False)
    assert forward.state == COMPILED, forward.reason  # one graph: a break would have raised (fullgraph)
    batch = model_batch(crops, fp32)  # float32, as the predictor hands it to the fast mode
    with torch.inference_mode():
        exact, eager = fp32(batch), bf16(batch).float()
        forward._eager = None  # from here on only the compiled copy may answer
        graphs = _graphs()
        got = forward(batch).float()
        assert _graphs() == graphs
    assert (got - exact).abs().max() <= 2 * (eager - exact).abs().max() + 0.02
    assert (got - exact).abs().max() < 0.25 * (exact.max() - exact.min())


def test_poster_v1_compiles_whole_and_keeps_the_float32_logits(tmp_path_factory, crops):
    model = load_checkpoint(checkpoint_file(tmp_path_factory.mktemp("v1") / "rafdb_best.pth", "poster-v1"))
    forward = CompiledForward(model, background=False)
    assert forward.state == COMPILED, forward.reason
    batch = model_batch(crops, model)  # BGR, as POSTER's checkpoint was trained
    with torch.inference_mode():
        exact = model(batch)
        forward._eager = None
        torch.testing.assert_close(forward(batch), exact, rtol=0, atol=1e-4)


def test_other_threads_keep_predicting_while_a_model_compiles(arm):
    """While a compile runs in the background, the predictor's calls in this thread (detection and
    classification) give their usual answers; they wait out the moments Inductor's tracing swaps
    nn.Module.__call__ (tests/test_compile_guard.py makes such a moment on purpose)."""
    from poster.data.sample_faces import sample_photos
    from poster.inference.compile_guard import compiles_under_way

    photo = sample_photos()[0]
    eager = Predictor(arm)
    expected = eager.predict(photo)
    forward = CompiledForward(arm, background=True)
    rounds = 0
    while forward.state == "compiling":
        faces = eager.predict(photo)
        assert [f.label for f in faces] == [f.label for f in expected]
        np.testing.assert_allclose(faces[0].probabilities, expected[0].probabilities, rtol=0, atol=1e-6)
        rounds += 1
    assert forward.state == COMPILED and rounds > 3 and compiles_under_way() == 0

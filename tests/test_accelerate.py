"""Ahead-of-time packages: built by `python -m poster accelerate` in a process of its own, loaded by
the server without tracing anything, the eager fast copy answering until (and wherever) they cannot.

One real build (ARM, float32: under a minute on two cores) in a child process (tests/_packages.py);
the rest stands the build process in and reuses that package. The tests that load the real package
are ``slow`` (the build is a process of its own); the fast subset keeps those of the stand-in.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from poster.data.sample_faces import face_crops
from poster.inference import accelerate as accelerate_module
from poster.inference import artifacts as artifacts_module
from poster.inference.accelerate import (COMPILED, COMPILING, EAGER, MAX_FACES, AcceleratedForward,
                                         accelerate_wanted, fast_copy)
from poster.inference.artifacts import artifact_key, artifact_path, build_artifact, has_cpp_compiler, machine_kind
from poster.inference.predictor import Predictor
from poster.inference.transforms import model_batch
from tests._packages import arm, arm_package  # noqa: F401

pytestmark = pytest.mark.skipif(not has_cpp_compiler(), reason="AOTInductor needs a C++ compiler")


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    return [np.asarray(c) for c in face_crops()[:3]]


class _BuildProcess:
    """Stands in for the build process: records its command; ``code`` None while it runs."""

    started: list[list[str]] = []

    def __init__(self, command, log_path):
        self.command, self.code = command, None
        _BuildProcess.started.append(command)

    def poll(self):
        return self.code

    def wait(self, timeout=None):
        return self.code


@pytest.fixture
def fake_builds(monkeypatch):
    _BuildProcess.started = []
    monkeypatch.setattr(accelerate_module, "_spawn", _BuildProcess)
    monkeypatch.setattr(accelerate_module, "_builds", {})
    monkeypatch.setattr(accelerate_module, "accelerate_wanted", lambda: True)
    return _BuildProcess.started


@pytest.mark.slow  # loads the package `python -m poster accelerate` builds in a process of its own
def test_the_package_loads_and_classifies_each_face_alone(arm, arm_package, crops):
    forward = AcceleratedForward(fast_copy(arm), build=False, directory=arm_package.parent)
    assert forward.wait() and forward.state == COMPILED and forward.reason == "" and forward.path == arm_package
    batch = model_batch(crops, arm)
    with torch.inference_mode():
        assert forward.takes(batch)
        got = forward(batch)
        torch.testing.assert_close(got, arm.forward_alone(batch), rtol=0, atol=1e-4)
        assert not torch.allclose(arm(batch), arm.forward_alone(batch), atol=1e-3)  # the batch mean is not there


@pytest.mark.slow  # reads the package `python -m poster accelerate` builds in a process of its own
def test_the_package_runs_frozen_weights_packed_for_onednn(arm_package):
    with zipfile.ZipFile(arm_package) as package:
        wrappers = [n for n in package.namelist() if n.endswith(".wrapper.cpp")]
        assert len(wrappers) == 1
        code = package.read(wrappers[0]).decode()
    # Inductor's freezing turns each convolution into oneDNN's, on a weight packed once, with what
    # follows fused in; without it the package runs ATen's plain convolution on plain weights.
    assert "mkldnn__convolution_pointwise" in code
    assert not re.search(r"\baoti_torch_cpu_convolution\(", code)


def test_the_package_is_compiled_with_gradients_off_so_that_inductor_freezes_it(arm, tmp_path, monkeypatch):
    calls = []

    def compile_and_package(program, package_path, inductor_configs):
        calls.append((torch.is_grad_enabled(), inductor_configs))
        Path(package_path).write_bytes(b"a package")
        return package_path

    monkeypatch.setattr("torch._inductor.aoti_compile_and_package", compile_and_package)
    assert torch.is_grad_enabled()
    path = build_artifact(arm, torch.float32, tmp_path / "arm.pt2")
    assert calls == [(False, {"freezing": True})]
    assert path.read_bytes() == b"a package" and list(tmp_path.iterdir()) == [path]


@pytest.mark.slow  # loads the package `python -m poster accelerate` builds in a process of its own
def test_what_the_package_was_not_built_for_runs_eagerly(arm, arm_package, crops):
    fast = fast_copy(arm)
    forward = AcceleratedForward(fast, build=False, directory=arm_package.parent)
    assert forward.wait()
    batch = model_batch(crops, arm)
    with torch.inference_mode():
        assert not forward.takes(batch.double()) and not forward.takes(batch[:, :, :112, :112])
        many = batch[:1].expand(MAX_FACES + 1, -1, -1, -1)
        assert not forward.takes(many)
        torch.testing.assert_close(forward(many), fast.forward_alone(many), rtol=0, atol=0)
    assert not forward.takes(batch)  # gradients on: Grad-CAM and training use the model itself
    x = batch[:1].clone().requires_grad_(True)
    forward(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_a_missing_package_is_built_by_a_low_priority_process_while_the_eager_copy_answers(
        arm, crops, tmp_path, fake_builds):
    fast = fast_copy(arm)
    forward = AcceleratedForward(fast, directory=tmp_path)
    assert forward.state == COMPILING and len(fake_builds) == 1
    command = fake_builds[0]
    assert command[:3] == [shutil.which("nice"), "-n", "19"] and command[4:7] == ["-m", "poster", "accelerate"]
    assert command[-1] == "--idle"
    assert command[command.index("--out") + 1] == str(forward.path) and arm.info.source in command
    AcceleratedForward(fast, directory=tmp_path)
    assert len(fake_builds) == 1  # one build per package file
    batch = model_batch(crops, arm)
    with torch.inference_mode():
        torch.testing.assert_close(forward(batch), fast.forward_alone(batch), rtol=0, atol=0)


@pytest.mark.slow  # loads the package `python -m poster accelerate` builds in a process of its own
def test_a_finished_build_is_loaded_and_answers_in_place_of_the_eager_copy(
        arm, arm_package, crops, tmp_path, fake_builds):
    fast = fast_copy(arm)
    forward = AcceleratedForward(fast, directory=tmp_path)
    assert forward.state == COMPILING and len(fake_builds) == 1
    batch = model_batch(crops, arm)
    with torch.inference_mode():
        shutil.copy(arm_package, forward.path)  # the build process is done
        forward._process.code = 0
        assert forward.wait() and forward.state == COMPILED
        torch.testing.assert_close(forward(batch), arm.forward_alone(batch), rtol=0, atol=1e-4)


def test_a_package_is_loaded_in_a_thread_of_its_own_while_the_eager_copy_answers(arm, crops, tmp_path):
    fast = fast_copy(arm)
    path = artifact_path(arm, torch.float32, "cpu", tmp_path)
    path.write_bytes(b"a finished package")
    release, loaders, runs = threading.Event(), [], []

    def slow_loader(found):  # a large package takes up to half a second to load
        loaders.append(threading.current_thread())
        assert release.wait(10)

        def runner(x):
            runs.append(threading.current_thread())
            return fast.forward_alone(x) + 1.0
        return runner

    forward = AcceleratedForward(fast, build=False, directory=tmp_path, loader=slow_loader)
    batch = model_batch(crops, arm)
    with torch.inference_mode():
        assert forward.state == COMPILING and not forward.poll()
        torch.testing.assert_close(forward(batch), fast.forward_alone(batch), rtol=0, atol=0)  # no call waited
        release.set()
        assert forward.wait(30) and forward.state == COMPILED
        torch.testing.assert_close(forward(batch), fast.forward_alone(batch) + 1.0, rtol=0, atol=0)
    assert len(loaders) == 1 and loaders[0] is not threading.main_thread()
    assert runs[0] is loaders[0]  # its first, slowest call too


def test_a_failed_build_or_a_bad_file_leaves_the_eager_copy_answering(arm, crops, tmp_path, fake_builds):
    fast = fast_copy(arm)
    forward = AcceleratedForward(fast, directory=tmp_path / "failed")
    forward._process.code = 1
    assert not forward.wait() and forward.state == EAGER and "the build failed (exit 1" in forward.reason
    forward.path.parent.mkdir(parents=True, exist_ok=True)
    bad = AcceleratedForward(fast, build=False, directory=tmp_path / "bad")
    assert bad.state == EAGER and bad.reason == "no package built"
    bad_path = artifact_path(arm, torch.float32, "cpu", tmp_path / "garbage")
    bad_path.parent.mkdir()
    bad_path.write_bytes(b"not a package")
    garbage = AcceleratedForward(fast, build=False, directory=bad_path.parent)
    assert not garbage.wait() and garbage.state == EAGER and garbage.reason
    batch = model_batch(crops, arm)
    with torch.inference_mode():
        for broken in (forward, garbage):
            torch.testing.assert_close(broken(batch), fast.forward_alone(batch), rtol=0, atol=0)


def test_the_cache_key_names_both_formats_weights_architecture_device_and_torch(monkeypatch):
    key = artifact_key("ab" * 32, "arm", torch.float32)
    others = [artifact_key("cd" * 32, "arm", torch.float32), artifact_key("ab" * 32, "poster-v1", torch.float32),
              artifact_key("ab" * 32, "arm", torch.bfloat16), artifact_key("ab" * 32, "arm", torch.float32, "cuda")]
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    others.append(artifact_key("ab" * 32, "arm", torch.float32))
    monkeypatch.setattr(artifacts_module, "FORMAT_VERSION", artifacts_module.FORMAT_VERSION - 1)
    others.append(artifact_key("ab" * 32, "arm", torch.float32))  # an older package format is rebuilt
    assert len({key, *others}) == 7


def test_a_cpu_package_is_kept_apart_for_each_kind_of_vector_instructions(arm, tmp_path, monkeypatch):
    here = torch.backends.cpu.get_cpu_capability()
    path = artifact_path(arm, torch.float32, "cpu", tmp_path)
    assert machine_kind("cpu").startswith(f"cpu-{here.lower()}") and machine_kind("cuda") == "cuda"
    other = "AVX512" if here == "AVX2" else "AVX2"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: other)
    assert machine_kind("cpu").startswith(f"cpu-{other.lower()}")
    assert artifact_path(arm, torch.float32, "cpu", tmp_path) != path  # its kernels would not run here


def test_packages_are_switched_on_by_the_environment(arm, tmp_path, monkeypatch):
    monkeypatch.delenv("POSTER_ACCELERATE", raising=False)
    assert not accelerate_wanted()  # off unless asked for
    monkeypatch.setenv("POSTER_ACCELERATE", "0")
    assert not accelerate_wanted()
    forward = AcceleratedForward(fast_copy(arm), directory=tmp_path)
    assert forward.state == EAGER and "off" in forward.reason and forward._process is None
    monkeypatch.setenv("POSTER_ACCELERATE", "1")
    assert accelerate_wanted()
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    has_cpp_compiler.cache_clear()
    try:
        assert not accelerate_wanted()  # no C++ compiler: nothing to build with
    finally:
        has_cpp_compiler.cache_clear()


@pytest.mark.slow  # loads the package `python -m poster accelerate` builds in a process of its own
def test_the_predictor_reports_its_engine_and_keeps_its_answers(arm, arm_package, crops, monkeypatch):
    monkeypatch.setattr(accelerate_module, "artifact_path", lambda model, dtype, kind, directory: arm_package)
    eager = Predictor(fast_copy(arm))
    accelerated = Predictor(eager.model, detector=eager.detector)
    assert eager.engine == EAGER and accelerated.engine == EAGER
    assert accelerated.accelerate(build=False) is accelerated.accelerate()
    assert accelerated.accelerated.wait() and accelerated.engine == COMPILED
    np.testing.assert_allclose(accelerated.classify(crops), eager.classify(crops), rtol=0, atol=1e-5)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_build_process_puts_itself_under_sched_idle() -> None:
    from poster.cli.accelerate import run_when_idle

    seen: list[tuple[bool, int]] = []
    # A thread of its own: on Linux the policy belongs to the calling thread, so the test process keeps its own.
    worker = threading.Thread(target=lambda: seen.append((run_when_idle(), os.sched_getscheduler(0))))
    worker.start()
    worker.join()
    assert seen == [(True, os.SCHED_IDLE)]
    assert os.sched_getscheduler(0) != os.SCHED_IDLE

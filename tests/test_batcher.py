"""Faces from many threads classified in one batch (``MicroBatcher``): each caller gets the rows it
gets alone, in fewer network calls; the CUDA-graph engine stays out of the way without CUDA."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from poster.inference.batcher import MicroBatcher
from poster.inference.faces import align_face
from poster.inference.graphed import graphed_forward
from poster.inference.predictor import Predictor


def _together(batcher: MicroBatcher, requests: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Every request from its own thread, released at the same moment."""
    start = threading.Barrier(len(requests))

    def send(crops: list[np.ndarray]) -> np.ndarray:
        start.wait()
        return batcher(crops)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def test_many_threads_share_one_forward_of_the_real_model(deterministic_model, face_detector, astronaut, grace_hopper):
    predictor = Predictor(deterministic_model, face_detector)
    crops = [align_face(photo, face_detector.detect(photo).faces[0]).image for photo in (astronaut, grace_hopper)]
    requests = [[crops[0]], [crops[1]], [crops[1], crops[0]]]
    single = [predictor.classify([crop]) for crop in crops]
    alone = [single[0], single[1], np.concatenate([single[1], single[0]])]  # POSTER++'s faces do not interact
    calls = []

    def counted(batch: list[np.ndarray]) -> np.ndarray:
        calls.append(len(batch))
        return predictor.classify(batch)

    # A generous deadline that ends as soon as every face is in: one batch however busy the machine is.
    batcher = MicroBatcher(counted, max_wait_s=60, max_faces=4)
    together = _together(batcher, requests)
    assert calls == [4] and batcher.batches == 1
    for mine, reference in zip(together, alone):
        assert mine.shape == reference.shape
        np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-5)


def test_a_full_batch_goes_at_once_and_the_rest_follows():
    calls = []

    def rows(batch: list[np.ndarray]) -> np.ndarray:
        calls.append(len(batch))
        return np.stack([np.full(2, crop.mean()) for crop in batch])

    requests = [[np.full((4, 4, 3), i, np.uint8)] for i in range(6)]
    together = _together(MicroBatcher(rows, max_wait_s=60, max_faces=3), requests)
    assert calls == [3, 3]
    assert [float(r[0, 0]) for r in together] == [float(i) for i in range(6)]


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_works():
    def failing(batch: list[np.ndarray]) -> np.ndarray:
        if len(batch) > 1:
            raise ValueError("bad batch")
        return np.ones((1, 2))

    batcher = MicroBatcher(failing, max_wait_s=60, max_faces=2)
    with pytest.raises(ValueError, match="bad batch"):
        _together(batcher, [[np.zeros((2, 2, 3), np.uint8)]] * 2)
    batcher.max_wait_s = 0.0  # a lone caller would otherwise wait the whole minute for a second face
    assert batcher([np.zeros((2, 2, 3), np.uint8)]).shape == (1, 2)


def test_cuda_graphs_only_on_cuda(deterministic_model, face_detector):
    assert graphed_forward(deterministic_model, "float32") is None  # a CPU model runs as it is
    predictor = Predictor(deterministic_model, face_detector, precision="bfloat16")
    assert predictor.accelerate(build=False) is None and predictor.engine == "eager"  # autocast on a CPU: nothing to build

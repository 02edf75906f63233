"""What the original implementations compute for the deterministic weights (tests/reference/)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
REFERENCE_FILES = {"poster-v2": "poster_v2_reference.json", "poster-v1": "poster_v1_reference.json",
                   "arm": "arm_reference.json"}


@lru_cache(maxsize=3)
def reference(arch: str = "poster-v2") -> dict:
    """The original implementation's outputs for the deterministic weights."""
    return json.loads((REFERENCE_DIR / REFERENCE_FILES[arch]).read_text())


def reference_input(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The reference batch: RandomState(20260101).standard_normal((2, 3, 224, 224))."""
    shape = tuple(reference()["input"]["shape"])
    return torch.from_numpy(np.random.RandomState(20260101).standard_normal(shape)).to(dtype)

"""The project's weight-file format and the checks every file gets: sha256, the download
manifest, safetensors with the facts needed to use the weights, and key-by-key fit reports."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import CheckpointError
from ..models.weights_api import Preprocessing
from .registry import ARCHITECTURES, DEFAULT_ARCH, get_weights

FORMAT = "poster-v2"  # the project's safetensors format (for every architecture; "arch" says which)
FORMAT_VERSION = "1"
MANIFEST_NAME = "manifest.json"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path, *, dataset: str | None,
                     class_names: list[str] | tuple[str, ...], source_sha256: str,
                     published_accuracy: float | None = None, name: str | None = None,
                     extra: dict[str, Any] | None = None, arch: str,
                     preprocessing: Preprocessing | None = None) -> Path:
    """Write project-named weights of ``arch`` with the facts needed to use them (``preprocessing``
    defaults to that of ``arch``'s released checkpoints)."""
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name or dataset or path.stem,
        "arch": arch, "dataset": dataset or "", "class_names": json.dumps(list(class_names)),
        "num_classes": str(len(class_names)), "source_sha256": source_sha256,
        "published_accuracy": "" if published_accuracy is None else str(published_accuracy),
        "preprocessing": json.dumps(asdict(preprocessing or get_weights(arch=arch).preprocessing)),
        "extra": json.dumps(extra or {}),
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def fit_problems(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """Missing, unexpected and wrongly shaped keys, one phrase each; empty when the state fits."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {few(missing)}")
    if unexpected:
        problems.append(f"unexpected {few(unexpected)}")
    if wrong:
        problems.append(f"wrong shape {few(wrong)}")
    return problems


def few(items: list[str], n: int = 4) -> str:
    shown = ", ".join(items[:n])
    return f"{len(items)} keys ({shown}{', ...' if len(items) > n else ''})"


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    # 8-byte little-endian header length, then a JSON object.
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 27)


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name} is truncated or corrupt ({str(exc).splitlines()[0][:160]})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} is a safetensors file but not a POSTER++ checkpoint")
    arch = meta.get("arch") or DEFAULT_ARCH  # files written before other architectures existed
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{path.name} names an unknown architecture {arch!r}")
    accuracy = meta.get("published_accuracy")
    try:
        preprocessing = Preprocessing(**{k: tuple(v) if isinstance(v, list) else v
                                         for k, v in json.loads(meta["preprocessing"]).items()})
    except (KeyError, TypeError, ValueError):
        preprocessing = None
    return state, {
        "name": meta.get("name") or path.stem,
        "arch": arch,
        "dataset": meta.get("dataset") or None,
        "class_names": json.loads(meta.get("class_names", "[]")),
        "published_accuracy": float(accuracy) if accuracy else None,
        "preprocessing": preprocessing,
    }


def check_manifest(path: Path, sha: str) -> None:
    manifest = path.parent / MANIFEST_NAME
    if not manifest.is_file():
        return
    try:
        entry = json.loads(manifest.read_text()).get("files", {}).get(path.name)
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(entry, dict) and entry.get("sha256") and entry["sha256"] != sha:
        raise CheckpointError(
            f"{path.name} does not match the sha256 recorded in {MANIFEST_NAME} when it was downloaded; "
            "it was changed or damaged: download it again")

"""Loading weights of every architecture: released ``.pth`` pickles and the project's safetensors format.

A file's architecture is told by its keys (a POSTER++ and a POSTER RAF-DB file are both called
``rafdb_best.pth``); its dataset by ``dataset=``, the file's own record, its released file name or
its class count, in that order, and ``CheckpointInfo.dataset_reason`` says which.
"""
from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.poster_v2 import PosterV2Weights
from ..models.weights_api import Preprocessing, Weights
from . import locate
from .registry import (ARCHITECTURES, DATASET_KEYS, architecture, build_with_state, create_model, get_weights,
                       list_weights)
from .backbones import load_pretrained_backbones, verify_backbone
from .safe_pickle import safe_torch_load
from .files import (FORMAT, FORMAT_VERSION, MANIFEST_NAME, check_manifest, fit_problems, is_safetensors,
                    read_safetensors, save_safetensors, sha256_file)

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST_NAME", "CheckpointInfo", "convert_checkpoint", "count_parameters",
           "describe_dataset", "detect_arch", "load_checkpoint", "load_pretrained_backbones", "read_weights",
           "save_safetensors", "sha256_file", "verify_backbone", "verify_checkpoint", "with_dataset"]
DATASET_CHOICES = ", ".join(DATASET_KEYS)
MAX_CLASSES = 1000  # expression datasets have 7 or 8; a head beyond this is refused before any model is built


@dataclass(frozen=True)
class CheckpointInfo:
    """What a loaded checkpoint is; attached to the model as ``model.info``."""

    name: str
    dataset: str | None
    class_names: tuple[str, ...]
    sha256: str
    published_accuracy: float | None
    source: str
    arch: str
    preprocessing: Preprocessing
    dataset_reason: str = ""  # how the dataset (and so the class order) is known, or why it is not

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def classes_known(self) -> bool:
        return self.dataset is not None or not all(n == f"class {i}" for i, n in enumerate(self.class_names))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"num_classes": self.num_classes}


@dataclass(frozen=True)
class _ArchFile:
    """How one architecture's released files read: key signature, name mapping, head."""

    recognizes: Callable[[set[str]], bool]
    filter_fn: Callable[[dict[str, torch.Tensor]], tuple[dict[str, torch.Tensor], list[str]]]
    head_weight: str


def _arch_file(arch: str) -> _ArchFile:
    module = importlib.import_module(architecture(arch).module)
    return _ArchFile(module.recognizes, module.checkpoint_filter_fn, module.HEAD_WEIGHT)


def detect_arch(keys: set[str]) -> str | None:
    """The architecture whose released files have these (``module.``-stripped) keys."""
    for arch in ARCHITECTURES:
        if _arch_file(arch).recognizes(keys):
            return arch
    return None


def count_parameters(model: nn.Module) -> int:
    """Parameters the prediction uses (modules that run only on request, such as POSTER++'s landmark
    head, are left out)."""
    skip = {id(p) for m in model.optional_modules() for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def load_checkpoint(source: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                    dataset: str | None = None, channels_last: bool = True, arch: str | None = None) -> nn.Module:
    """Build the network a checkpoint file (or registry name) holds; returns the model in eval mode.

    The architecture comes from the file's keys (``arch`` overrides); ``dataset`` names the class
    order where the file does not tell it. The model is built in ``dtype`` before the weights are
    copied in, so float64 weights stay exact. The model is the plain network, its layers as the
    paper has them; a copy for speed is a separate step (``poster.inference.accelerate``).
    """
    path = locate.resolve(source)
    state, meta = read_weights(path, dataset, arch)
    num_classes = meta["num_classes"]
    if meta["class_names"] and len(meta["class_names"]) != num_classes:
        raise CheckpointError(f"{path.name} has {num_classes} classes but its file lists {len(meta['class_names'])}")
    class_names = tuple(meta["class_names"]) or tuple(f"class {i}" for i in range(num_classes))
    model = _built_strict(state, path.name, meta["arch"], num_classes, dtype)
    model.info = CheckpointInfo(
        name=meta["name"], dataset=meta["dataset"], class_names=class_names, sha256=meta["sha256"],
        published_accuracy=meta["published_accuracy"], source=str(path), arch=meta["arch"],
        dataset_reason=meta["dataset_reason"], preprocessing=meta["preprocessing"])
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def with_dataset(info: CheckpointInfo, dataset: str, reason: str) -> CheckpointInfo:
    """``info`` with the class order of ``dataset`` (for a checkpoint whose dataset was not known)."""
    facts = _dataset_facts(dataset)
    if facts.num_classes != info.num_classes:
        raise CheckpointError(f"the checkpoint has {info.num_classes} classes but {facts.title} has {facts.num_classes}")
    released = _released(info.arch, facts.key)
    return replace(info, dataset=facts.key, class_names=facts.class_names, dataset_reason=reason,
                   published_accuracy=released.published_accuracy if released else None)


def describe_dataset(info: CheckpointInfo) -> str:
    """One line for a command's output: the classes in use and how they are known."""
    if info.dataset is None and info.classes_known:
        return f"{info.name}: classes {', '.join(info.class_names)} ({info.dataset_reason})"
    if info.dataset is None:
        return (f"{info.name}: classes shown as 'class 0'..'class {info.num_classes - 1}': the dataset is "
                f"{info.dataset_reason}")
    return f"{info.name}: {info.dataset} class order ({info.dataset_reason})"


def read_weights(path: Path, dataset: str | None = None,
                 arch: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Project-named state dict plus metadata (name, arch, dataset, dataset_reason, class_names,
    sha256, published_accuracy, preprocessing)."""
    path = Path(path)
    # hashlib lets go of the GIL, so the digest (a fifth of a second for 0.25 GB) runs beside the parsing.
    with ThreadPoolExecutor(1, thread_name_prefix="sha256") as pool:
        digest = pool.submit(sha256_file, path)
        try:
            if is_safetensors(path):
                state, recorded = read_safetensors(path)
                file_arch = recorded["arch"]
            else:
                state, file_arch = _read_released(path, arch)
                recorded = {}
        except Exception:
            check_manifest(path, digest.result())  # a file that is not what was downloaded says so first
            raise
        sha = digest.result()
    check_manifest(path, sha)
    arch = architecture(arch).name if arch else file_arch
    if arch != file_arch:
        raise CheckpointError(f"{path.name} holds a {ARCHITECTURES[file_arch].title} network, not "
                              f"{ARCHITECTURES[arch].title}")
    num_classes = _num_classes(state, path, arch)
    if recorded.get("class_names") and not recorded.get("dataset") and not dataset:
        weights, key, reason = None, None, "not a released dataset: the file records its own class list"
    else:
        weights, key, reason = _dataset_of(dataset, recorded.get("dataset"), arch, path, num_classes)
    if weights is not None and weights.num_classes != num_classes:
        raise CheckpointError(f"{path.name} has {num_classes} classes but {key} has {weights.num_classes}")
    released = _released(arch, key) if key else None
    default = get_weights(arch=arch)
    meta = {
        "name": recorded.get("name") or (released.key if released and not recorded else None) or path.stem,
        "arch": arch,
        "dataset": key,
        "dataset_reason": reason,
        "class_names": list(weights.class_names) if weights else [],  # [] : the file does not say
        "sha256": sha,
        "published_accuracy": recorded.get("published_accuracy", released.published_accuracy if released else None),
        "preprocessing": recorded.get("preprocessing") or (released or default).preprocessing,
        "num_classes": num_classes,
    }
    if recorded.get("class_names") and not dataset:
        meta["class_names"] = list(recorded["class_names"])
    return state, meta


def _read_released(path: Path, arch: str | None) -> tuple[dict[str, torch.Tensor], str]:
    checkpoint = safe_torch_load(str(path), path.name)
    raw = None
    if isinstance(checkpoint, dict):
        raw = next((checkpoint[k] for k in ("state_dict", "model_state_dict") if isinstance(checkpoint.get(k), dict)),
                   checkpoint)
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path.name} holds no POSTER++, POSTER or ARM state dict (expected a dict of tensors)")
    keys = {k.removeprefix("module.") for k in raw}
    found = detect_arch(keys)
    if found is None and arch is None:
        raise CheckpointError(f"{path.name}: its keys match no known architecture ({', '.join(ARCHITECTURES)}); "
                              f"first keys: {', '.join(sorted(keys)[:3])}")
    chosen = found or architecture(arch).name
    try:
        state, _dropped = _arch_file(chosen).filter_fn(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path.name}: {exc}") from None
    return state, chosen


def _released(arch: str, dataset: str) -> Weights | None:
    """The released checkpoint of ``arch`` trained on ``dataset``, if there is one."""
    try:
        return get_weights(arch=arch, dataset=dataset)
    except KeyError:
        return None


def _dataset_facts(dataset: str) -> Weights:
    """Class names and folder names of a dataset (POSTER++'s record of it, the one every dataset has)."""
    try:
        return get_weights(dataset=dataset)
    except KeyError as exc:
        raise CheckpointError(f"{str(exc).strip(chr(34) + chr(39))} (--dataset)") from None


def _dataset_of(dataset: str | None, recorded: str | None, arch: str, path: Path,
                num_classes: int) -> tuple[Weights | None, str | None, str]:
    """(dataset facts, dataset key, how it is known) for a file; (None, None, why not) if unknown."""
    if dataset:
        facts = _dataset_facts(dataset)
        return facts, facts.key, "given"
    if recorded:
        facts = _dataset_facts(recorded)
        return facts, facts.key, "recorded in the file"
    for weights in list_weights(arch):
        if path.name == weights.file_name:
            facts = _dataset_facts(weights.dataset_key)
            return facts, facts.key, f"inferred from the file name: {path.name} is the released {weights.title} file"
    if num_classes == 8:
        facts = PosterV2Weights.AFFECTNET_8.value
        return facts, facts.key, "inferred from the class count: 8 classes, and only AffectNet-8 has 8"
    return None, None, (f"not known: {path.name} does not record it; pass --dataset NAME "
                        f"({DATASET_CHOICES}) or evaluate on data that tells it")


def convert_checkpoint(src: str | Path, dst: str | Path, dataset: str | None = None,
                       arch: str | None = None) -> Path:
    """Released ``.pth`` -> project safetensors file (same weights, same logits)."""
    path = locate.resolve(src)
    state, meta = read_weights(path, dataset, arch)
    if meta["dataset"] is None:
        raise CheckpointError(f"say which dataset {path.name} was trained on: --dataset NAME ({DATASET_CHOICES})")
    _built_strict(state, path.name, meta["arch"], meta["num_classes"])  # refuse to write a file that would not load
    return save_safetensors(state, dst, dataset=meta["dataset"], class_names=meta["class_names"],
                            source_sha256=meta["sha256"], published_accuracy=meta["published_accuracy"],
                            name=meta["name"], arch=meta["arch"], preprocessing=meta["preprocessing"])


def verify_checkpoint(path: str | Path, key: str) -> str:
    """Check a released checkpoint file without loading it into a model; returns its sha256.

    It must load through the safe loader, hold the registered architecture, its keys must account
    exactly for that model's, and its head must have as many classes as its dataset has.
    """
    path = Path(path)
    try:
        weights = get_weights(key)
    except KeyError as exc:
        raise CheckpointError(str(exc).strip("'\"")) from None
    state, meta = read_weights(path, arch=weights.arch)
    num_classes = _num_classes(state, path, weights.arch)
    if num_classes != weights.num_classes:
        raise CheckpointError(f"{path.name} has {num_classes} classes but {weights.title} has {weights.num_classes}")
    problems = fit_problems(_expected_state(num_classes, weights.arch), state)
    if problems:
        raise CheckpointError(f"{path.name} does not fit {ARCHITECTURES[weights.arch].title}: " + "; ".join(problems))
    return meta["sha256"]


def _expected_state(num_classes: int, arch: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):  # shapes only: no memory or time spent on a second set of weights
        return create_model(arch, num_classes).state_dict()


def _built_strict(state: dict[str, torch.Tensor], label: str, arch: str, num_classes: int,
                  dtype: torch.dtype = torch.float32) -> nn.Module:
    """The model with ``state`` loaded; every shape is checked on the meta-device model that is then
    given memory (one build: POSTER's costs 0.13 s even on the meta device)."""
    with torch.device("meta"):
        skeleton = create_model(arch, num_classes)
    problems = fit_problems(skeleton.state_dict(), state)
    if problems:
        raise CheckpointError(f"{label} does not fit {ARCHITECTURES[arch].title}: " + "; ".join(problems))
    return build_with_state(lambda: skeleton, state, dtype)


def _num_classes(state: dict[str, torch.Tensor], path: Path, arch: str) -> int:
    key = _arch_file(arch).head_weight
    head = state.get(key)
    if head is None or head.ndim != 2:
        raise CheckpointError(f"{path.name} has no classification head ({key})")
    if not 2 <= head.shape[0] <= MAX_CLASSES:
        raise CheckpointError(f"{path.name} has a head of {head.shape[0]:,} classes; a facial-expression "
                              f"network has 2 to {MAX_CLASSES}")
    return int(head.shape[0])



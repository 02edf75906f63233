"""Loading POSTER++ weights: released ``.pth`` pickles and the project's safetensors format."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import locate
from .errors import CheckpointError
from .models import PosterV2
from .models.convert import checkpoint_filter_fn, rename
from .models.packed import pack_for_cpu
from .registry import PosterV2Weights, Weights
from .safe_pickle import safe_torch_load

FORMAT = "poster-v2"
FORMAT_VERSION = "1"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a loaded checkpoint is; attached to the model as ``model.info``."""

    name: str
    dataset: str | None
    class_names: tuple[str, ...]
    sha256: str
    published_accuracy: float | None
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"num_classes": self.num_classes}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def count_parameters(model: PosterV2) -> int:
    """Parameters the prediction uses (the landmark head runs only on request, so it is left out)."""
    head = {id(p) for p in model.landmark_backbone.head.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in head)


def load_checkpoint(source: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                    dataset: str | None = None, channels_last: bool = True) -> PosterV2:
    """Build POSTER++ from a checkpoint file or registry name; returns the model in eval mode.

    ``dataset`` names the class order for a released ``.pth`` whose file name does not tell it.
    The model is built in ``dtype`` before the weights are copied in, so float64 weights stay exact.
    """
    path = locate.resolve(source)
    state, meta = read_weights(path, dataset)
    num_classes = _num_classes(state, path)
    if meta["class_names"] and len(meta["class_names"]) != num_classes:
        raise CheckpointError(
            f"{path.name} has {num_classes} classes but {meta['dataset']} has {len(meta['class_names'])}")
    class_names = tuple(meta["class_names"]) or tuple(f"class {i}" for i in range(num_classes))
    model = PosterV2(num_classes).to(dtype)
    _load_strict(model, state, path.name)
    model.info = CheckpointInfo(
        name=meta["name"], dataset=meta["dataset"], class_names=class_names, sha256=meta["sha256"],
        published_accuracy=meta["published_accuracy"], source=str(path))
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if torch.device(device).type == "cpu":
        model = pack_for_cpu(model)
    return model


def read_weights(path: Path, dataset: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Project-named state dict plus metadata (name, dataset, class_names, sha256, accuracy)."""
    sha = sha256_file(path)
    _check_manifest(path, sha)
    if _is_safetensors(path):
        return _read_safetensors(path, sha)
    checkpoint = safe_torch_load(str(path), path.name)
    raw = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path.name} holds no POSTER++ state dict (expected a dict of tensors)")
    try:
        state, _dropped = checkpoint_filter_fn(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path.name}: {exc}") from None
    weights = _registry_entry(dataset, path, _num_classes(state, path))
    meta = {
        "name": weights.key if weights else path.stem,
        "dataset": weights.key if weights else None,
        "class_names": list(weights.class_names) if weights else [],
        "sha256": sha,
        "published_accuracy": weights.published_accuracy if weights else None,
    }
    return state, meta


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path, *, dataset: str | None,
                     class_names: list[str] | tuple[str, ...], source_sha256: str,
                     published_accuracy: float | None = None, name: str | None = None,
                     extra: dict[str, Any] | None = None) -> Path:
    """Write project-named weights with the facts needed to use them."""
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name or dataset or path.stem,
        "dataset": dataset or "", "class_names": json.dumps(list(class_names)),
        "num_classes": str(len(class_names)), "source_sha256": source_sha256,
        "published_accuracy": "" if published_accuracy is None else str(published_accuracy),
        "extra": json.dumps(extra or {}),
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def convert_checkpoint(src: str | Path, dst: str | Path, dataset: str | None = None) -> Path:
    """Released ``.pth`` -> project safetensors file (same weights, same logits)."""
    path = locate.resolve(src)
    state, meta = read_weights(path, dataset)
    if not meta["class_names"]:
        raise CheckpointError(f"say which dataset {path.name} was trained on (--dataset raf-db|affectnet-7|caer-s)")
    model = PosterV2(_num_classes(state, path))
    _load_strict(model, state, path.name)  # refuse to write a file that would not load
    return save_safetensors(state, dst, dataset=meta["dataset"], class_names=meta["class_names"],
                            source_sha256=meta["sha256"], published_accuracy=meta["published_accuracy"],
                            name=meta["name"])


def load_pretrained_backbones(model: PosterV2, ir50: str | Path | None = None,
                              mobilefacenet: str | Path | None = None) -> None:
    """Copy the published pretraining weights (IR-50 face recognition, MobileFaceNet landmarks) in."""
    if ir50 is not None:
        _load_part(model.image_backbone, _ir50_state(ir50), "ir50")
    if mobilefacenet is not None:
        _load_part(model.landmark_backbone, _mobilefacenet_state(mobilefacenet), "mobilefacenet")


def verify_checkpoint(path: str | Path, dataset: str) -> str:
    """Check a dataset checkpoint file without loading it into a model; returns its sha256.

    It must load through the safe loader, its keys must account exactly for POSTER++'s, and its
    head must have as many classes as ``dataset`` has.
    """
    path = Path(path)
    weights = PosterV2Weights.get(dataset).value
    state, meta = read_weights(path, weights.key)
    num_classes = _num_classes(state, path)
    if num_classes != weights.num_classes:
        raise CheckpointError(f"{path.name} has {num_classes} classes but {weights.title} has {weights.num_classes}")
    problems = _fit_problems(_expected_state(num_classes), state)
    if problems:
        raise CheckpointError(f"{path.name} does not fit POSTER++: " + "; ".join(problems))
    return meta["sha256"]


def verify_backbone(path: str | Path, key: str) -> None:
    """Check a pretrained backbone file ("ir50" or "mobilefacenet") the way
    ``load_pretrained_backbones`` will read it: safe load, and keys and shapes that fit exactly."""
    parts = {"ir50": (_ir50_state, "image_backbone."), "mobilefacenet": (_mobilefacenet_state, "landmark_backbone.")}
    if key not in parts:
        raise CheckpointError(f"unknown backbone {key!r}; known: {', '.join(parts)}")
    to_state, prefix = parts[key]
    state = to_state(path)
    expected = {k.removeprefix(prefix): v for k, v in _expected_state(7).items() if k.startswith(prefix)}
    problems = _fit_problems(expected, state)
    if problems:
        raise CheckpointError(f"{Path(path).name}: {key} weights do not fit: " + "; ".join(problems))


def _expected_state(num_classes: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):  # shapes only: no memory or time spent on a second set of weights
        return PosterV2(num_classes).state_dict()


def _ir50_state(source: str | Path) -> dict[str, torch.Tensor]:
    raw = _tensor_dict(source)
    out = {}
    # face.evoLVe numbering (body.0..23) or the POSTER++ split (body1/body2/body3).
    stage_of = [1] * 3 + [2] * 4 + [3] * 14 + [4] * 3
    offset = {1: 0, 2: 3, 3: 7}
    for key, value in raw.items():
        key = key.removeprefix("module.")
        parts = key.split(".")
        if parts[0] == "body":
            index = int(parts[1])
            stage = stage_of[index]
            if stage == 4:
                continue
            key = ".".join([f"body{stage}", str(index - offset[stage])] + parts[2:])
        if key.startswith("output_layer."):
            continue
        new = rename("ir_back." + key)
        if new is None:
            raise CheckpointError(f"ir50 weights: unexpected key {key}")
        out[new.removeprefix("image_backbone.")] = value
    return out


def _mobilefacenet_state(source: str | Path) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in _tensor_dict(source).items():
        new = rename("face_landback." + key.removeprefix("module."))
        if new is None:
            raise CheckpointError(f"mobilefacenet weights: unexpected key {key}")
        out[new.removeprefix("landmark_backbone.")] = value
    return out


def _tensor_dict(source: str | Path) -> dict[str, torch.Tensor]:
    path = locate.resolve(source)
    data = safe_torch_load(str(path), path.name)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path.name} holds no state dict of tensors")
    return data


def _load_part(module: nn.Module, state: dict[str, torch.Tensor], label: str) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{label} weights do not fit: missing {_few(missing)}; unexpected {_few(unexpected)}")


def _load_strict(model: PosterV2, state: dict[str, torch.Tensor], label: str) -> None:
    problems = _fit_problems(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"{label} does not fit POSTER++: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def _fit_problems(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """Missing, unexpected and wrongly shaped keys, one phrase each; empty when the state fits."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    if wrong:
        problems.append(f"wrong shape {_few(wrong)}")
    return problems


def _few(items: list[str], n: int = 4) -> str:
    shown = ", ".join(items[:n])
    return f"{len(items)} keys ({shown}{', ...' if len(items) > n else ''})"


def _num_classes(state: dict[str, torch.Tensor], path: Path) -> int:
    head = state.get("transformer.head.weight")
    if head is None or head.ndim != 2:
        raise CheckpointError(f"{path.name} has no classification head (transformer.head.weight)")
    return int(head.shape[0])


def _registry_entry(dataset: str | None, path: Path, num_classes: int) -> Weights | None:
    if dataset:
        try:
            return PosterV2Weights.get(dataset).value
        except KeyError as exc:
            raise CheckpointError(str(exc).strip("'\"")) from None
    for member in PosterV2Weights:
        if path.name in (member.value.file_name, member.value.safetensors_name):
            return member.value
    if num_classes == 8:
        return PosterV2Weights.AFFECTNET_8.value
    return None


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    # 8-byte little-endian header length, then a JSON object.
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 27)


def _read_safetensors(path: Path, sha: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
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
    accuracy = meta.get("published_accuracy")
    return state, {
        "name": meta.get("name") or path.stem,
        "dataset": meta.get("dataset") or None,
        "class_names": json.loads(meta.get("class_names", "[]")),
        "sha256": sha,
        "published_accuracy": float(accuracy) if accuracy else None,
    }


def _check_manifest(path: Path, sha: str) -> None:
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

"""Finding weight files by name: a local folder, an environment variable, or a Hub repository."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import CheckpointError
from ..models.weights_api import Weights
from .registry import get_weights, list_weights

ENV_DIR = "POSTER_CHECKPOINT_DIR"      # folder(s) with weight files, os.pathsep-separated
ENV_HUB_REPO = "POSTER_HUB_REPO"       # a Hugging Face Hub model repository holding the files
ENV_CHECKPOINT = "POSTER_CHECKPOINT"   # the checkpoint the app and commands use by default
DEFAULT_DIR = Path("checkpoints")
DEFAULT_CHECKPOINT = "raf-db"
HUB_TIMEOUT_S = 10.0


def default_checkpoint() -> str:
    return os.environ.get(ENV_CHECKPOINT) or DEFAULT_CHECKPOINT


def search_dirs(extra: list[str | Path] | None = None) -> list[Path]:
    """Folders searched for weight files, in order."""
    dirs = [Path(d) for d in (extra or [])]
    dirs += [Path(p) for p in os.environ.get(ENV_DIR, "").split(os.pathsep) if p]
    dirs.append(DEFAULT_DIR)
    project_dir = Path(__file__).resolve().parent.parent / "checkpoints"
    if project_dir.resolve() != DEFAULT_DIR.resolve():
        dirs.append(project_dir)
    return dirs


def candidate_names(weights: Weights) -> list[str]:
    """Project format first, then the released file."""
    names = [weights.file_name]
    if weights.kind == "checkpoint":
        names.insert(0, weights.safetensors_name)
    return names


def relative_path(weights: Weights, name: str | None = None) -> str:
    """Where a file sits below a checkpoint folder: POSTER++'s at the top, the others in a folder
    per architecture (a POSTER++ and a POSTER RAF-DB file share the name rafdb_best.pth)."""
    name = name or weights.file_name
    return f"{weights.subdir}/{name}" if weights.subdir else name


def find_local(weights: Weights, dirs: list[str | Path] | None = None) -> Path | None:
    for folder in search_dirs(dirs):
        for name in candidate_names(weights):
            if (folder / relative_path(weights, name)).is_file():
                return folder / relative_path(weights, name)
    return None


def find_on_hub(weights: Weights, repo: str) -> Path:
    """Download (once, into the Hub cache) the first of the candidate files the repository has."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    names = [relative_path(weights, name) for name in candidate_names(weights)]
    for name in names:
        cached = try_to_load_from_cache(repo, name)
        if isinstance(cached, str):
            return Path(cached)
    problems = []
    for name in names:
        try:
            return Path(hf_hub_download(repo, name, etag_timeout=HUB_TIMEOUT_S))
        except (EntryNotFoundError, RepositoryNotFoundError) as exc:
            problems.append(f"{name}: {type(exc).__name__}")
        except Exception as exc:  # offline, DNS failure, timeout, HTTP error ...
            raise CheckpointError(
                f"could not reach Hugging Face Hub repository {repo} for {name} "
                f"({type(exc).__name__}); check the network or put the file in {DEFAULT_DIR}/") from None
    raise CheckpointError(f"Hub repository {repo} has none of {', '.join(names)} ({'; '.join(problems)})")


def resolve(source: str | Path, dirs: list[str | Path] | None = None, hub: bool = True) -> Path:
    """A path, or a registry name ("raf-db", "ir50", ...) looked up locally, then on the Hub."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise CheckpointError(f"{source} is a folder, not a checkpoint file")
    try:
        weights = get_weights(str(source))
    except KeyError:
        raise CheckpointError(
            f"no checkpoint file {source} and no registered checkpoint of that name "
            f"(names: {', '.join(w.key for w in list_weights())})") from None
    found = find_local(weights, dirs)
    if found is not None:
        return found
    repo = os.environ.get(ENV_HUB_REPO)
    if repo and hub:
        return find_on_hub(weights, repo)
    raise CheckpointError(missing_message(weights, dirs))


def missing_message(weights: Weights, dirs: list[str | Path] | None = None) -> str:
    looked = ", ".join(f"{d}/" for d in search_dirs(dirs))
    names = " or ".join(relative_path(weights, n) for n in candidate_names(weights))
    return (f"no {weights.title} weights found: looked for {names} in {looked}; "
            f"run `python -m poster download {weights.key}`, set {ENV_DIR} to a folder that has it, "
            f"or set {ENV_HUB_REPO} to a Hub repository that has it")

"""A local stand-in for the Hugging Face Hub: the ``HfApi`` methods the project calls, on a folder."""
from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path


class LocalHub:
    """Dataset repositories as folders under ``root``; counts downloads; can be told to fail."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.downloads = 0
        self.fail_with: Exception | None = None
        self.created: list[tuple[str, str | None, bool | None]] = []

    def create_repo(self, repo_id: str, *, repo_type: str | None = None, exist_ok: bool = False,
                    private: bool | None = None, **_: object) -> str:
        self.created.append((repo_id, repo_type, private))
        (self.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, *, repo_id: str, folder_path: str | Path, path_in_repo: str | None = None,
                      repo_type: str | None = None, commit_message: str | None = None, **_: object) -> str:
        assert repo_type == "dataset"
        target = self.root / repo_id / (path_in_repo or "")
        shutil.copytree(folder_path, target, dirs_exist_ok=True)
        return commit_message or ""

    def snapshot_download(self, *, repo_id: str, repo_type: str | None = None, allow_patterns=None,
                          cache_dir=None, **_: object) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        assert repo_type == "dataset"
        self.downloads += 1
        source = self.root / repo_id
        if not source.is_dir():
            raise FileNotFoundError(f"404 Client Error: repository {repo_id} not found")
        target = Path(cache_dir or self.root.parent / "hub-cache") / repo_id.replace("/", "--")
        for path in source.rglob("*"):
            relative = path.relative_to(source).as_posix()
            if path.is_file() and (allow_patterns is None or any(fnmatch.fnmatch(relative, p) for p in allow_patterns)):
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target / relative)
        return str(target)

"""Atomic writes: a file appears whole or not at all, and a failed write leaves nothing behind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from poster.atomic import atomic_path, write_bytes_atomic, write_json_atomic


def test_a_finished_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text("old")
    write_json_atomic(target, {"accuracy": 91.5})
    assert json.loads(target.read_text()) == {"accuracy": 91.5}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "best.safetensors"
    write_bytes_atomic(target, b"complete")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]


def test_concurrent_writers_never_share_a_temporary_name(tmp_path: Path) -> None:
    target = tmp_path / "x.png"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    assert target.read_bytes() == b"1"

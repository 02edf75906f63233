"""The per-client bookkeeping on its own: sessions per address, the upload ledger, the camera line."""
from __future__ import annotations

from pathlib import Path

from demo.serving.camera_slots import CameraSlots
from demo.serving.clients import SessionBook, UploadLedger


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_new_session_ends_the_least_recently_active_one_of_its_address():
    ended: list[str] = []
    book = SessionBook(per_address=2, total=100, end=ended.append, clock=Clock())
    book.admit("a", "a1")
    book.admit("a", "a2")
    book.admit("b", "b1")
    book.admit("a", "a1")  # a1 active again: a2 is now the least recently active
    assert book.admit("a", "a3") == ["a2"] and ended == ["a2"]
    assert book.sessions("a") == 2 and book.sessions("b") == 1


def test_the_total_is_capped_and_idle_sessions_are_forgotten():
    clock = Clock()
    book = SessionBook(per_address=10, total=3, idle_seconds=60, clock=clock)
    for i in range(3):
        book.admit(f"10.0.0.{i}", f"s{i}")
    clock.now = 30
    assert book.admit("10.0.0.9", "s9") == ["s0"] and book.sessions() == 3
    clock.now = 61  # s1 and s2 idle for 61 s, s9 for 31
    assert book.admit("10.0.0.9", "s10") == [] and book.sessions() == 2


def test_the_ledger_caps_each_client_and_everyone(tmp_path: Path):
    ledger = UploadLedger(per_client=1000, total=1500, unused_seconds=60, clock=Clock())
    first = tmp_path / "a.bin"
    first.write_bytes(bytes(800))
    ledger.add("a", [str(first)])
    assert ledger.refusal("a", 100) is None
    assert "per visitor" in ledger.refusal("a", 300)
    assert ledger.refusal("b", 600) is None and "cache is full" in ledger.refusal("b", 800)


def test_unused_uploads_are_swept_and_used_ones_kept(tmp_path: Path, monkeypatch):
    import demo.serving.files as files

    monkeypatch.setattr(files, "upload_cache", lambda: tmp_path)
    clock = Clock()
    ledger = UploadLedger(per_client=10**6, total=10**6, unused_seconds=60, clock=clock)
    unused, used = tmp_path / "unused" / "a.bin", tmp_path / "used" / "b.bin"
    for path in (unused, used):
        path.parent.mkdir()
        path.write_bytes(b"x" * 10)
    ledger.add("a", [str(unused), str(used)])
    ledger.used(used)
    ledger.used(tmp_path / "never-uploaded.bin")  # names nothing the ledger holds: no effect
    clock.now = 30
    assert ledger.sweep() == [] and unused.exists()
    clock.now = 61
    assert ledger.sweep() == [str(unused)] and not unused.exists() and used.exists()
    assert ledger.usage("a") == 10


def test_the_camera_line_is_capped_and_tells_the_expected_wait():
    clock = Clock()
    slots = CameraSlots(1, 120, idle_seconds=1000, clock=clock, max_waiting=2)
    assert slots.claim("holder").granted
    clock.now = 20
    first, second = slots.claim("b"), slots.claim("c")
    assert (first.position, first.expected) == (1, 100.0) and (second.position, second.expected) == (2, 220.0)
    full = slots.claim("d")
    assert full.state == "full" and not full.granted
    assert slots.claim("b").position == 1  # those in line keep their place

"""What listing a dataset split gives: its labeled items, and what was skipped and why."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Skipped:
    """An item left out of a run, and why (path relative to the dataset root)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Item:
    """One labeled image: path relative to the dataset root, label in the checkpoint's order."""

    path: str
    label: int


@dataclass
class Listing:
    """Every usable item of one dataset split, plus what was skipped while listing it."""

    root: Path
    layout: str
    source: str  # the folder or file the items came from, as shown to a person
    class_names: tuple[str, ...]
    items: list[Item]
    skipped: list[Skipped] = field(default_factory=list)

    def limit(self, count: int | None) -> Listing:
        """At most ``count`` items spread evenly over the sorted list (not just the first folders)."""
        if count is None or count >= len(self.items):
            return self
        step = len(self.items) / max(count, 1)
        items = [self.items[int(i * step)] for i in range(count)]
        return Listing(self.root, self.layout, self.source, self.class_names, items, list(self.skipped))

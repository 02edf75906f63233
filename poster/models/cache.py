"""A cache for values derived from parameters, valid while those parameters are unchanged."""
from __future__ import annotations

from typing import Any, Callable

import torch


class DerivedCache:
    """Values keyed by name, rebuilt when any source tensor is replaced or written to in place.

    Tensors made under ``inference_mode`` have no version counter to tell a stale value by;
    callers check ``cacheable`` first. Copies and pickles start empty: derived values are rebuilt.
    """

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[tuple, Any]] = {}

    @staticmethod
    def cacheable(*sources: torch.Tensor) -> bool:
        return not any(t.is_inference() for t in sources)

    def get(self, name: Any, sources: tuple[torch.Tensor, ...], build: Callable[[], Any]) -> Any:
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device, t.shape) for t in sources)
        entry = self._entries.get(name)
        if entry is None or entry[0] != key:
            entry = (key, build())
            self._entries[name] = entry
        return entry[1]

    def __deepcopy__(self, memo: dict) -> "DerivedCache":
        return DerivedCache()

    def __getstate__(self) -> dict:
        return {"_entries": {}}

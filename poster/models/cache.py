"""A cache for values derived from parameters, valid while those parameters are unchanged."""
from __future__ import annotations

from typing import Any, Callable

import torch


class DerivedCache:
    """Values keyed by name, rebuilt when any source tensor is replaced or written to in place.

    Tensors made under ``inference_mode`` have no version counter to tell a stale value by;
    ``key`` returns None for them and callers compute without the cache. Copies and pickles start
    empty: derived values are rebuilt.
    """

    def __init__(self) -> None:
        self._entries: dict[Any, tuple[tuple, Any]] = {}

    @staticmethod
    def key(sources: tuple[torch.Tensor, ...]) -> tuple | None:
        """What identifies the sources' current values, or None when they cannot be tracked."""
        try:
            # ``param.data = ...`` (as in ``module.to``) keeps the version but moves the data.
            return tuple((t.data_ptr(), t._version, t.dtype, t.shape) for t in sources)
        except RuntimeError:  # inference tensors track no versions
            return None

    @staticmethod
    def cacheable(*sources: torch.Tensor) -> bool:
        # A compiler traces the computation itself (and folds it, weights frozen) instead.
        return not torch.compiler.is_compiling() and not any(t.is_inference() for t in sources)

    def get(self, name: Any, sources: tuple[torch.Tensor, ...], build: Callable[[], Any]) -> Any:
        key = self.key(sources)
        if key is None:
            return build()
        return self.get_keyed(name, key, build)

    def get_keyed(self, name: Any, key: tuple, build: Callable[[], Any]) -> Any:
        """``get`` with the sources' ``key`` already computed."""
        entry = self._entries.get(name)
        if entry is None or entry[0] != key:
            entry = (key, build())
            self._entries[name] = entry
        return entry[1]

    def __deepcopy__(self, memo: dict) -> "DerivedCache":
        return DerivedCache()

    def __getstate__(self) -> dict:
        return {"_entries": {}}

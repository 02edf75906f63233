"""Mapping an original implementation's state dict onto this project's module names.

Each model module supplies its own ``rename_key`` and what to drop; this is the walk they share.
"""
from __future__ import annotations

from collections.abc import Callable

import torch


def map_state_dict(state_dict: dict[str, torch.Tensor], rename: Callable[[str], str | None],
                   drop: Callable[[str, torch.Tensor], bool] = lambda name, value: False,
                   ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original (optionally ``module.``-prefixed) state dict -> (project state dict, dropped keys).

    ``drop(name, value)`` picks the entries the model has no use for (``name`` without the prefix);
    ``rename`` maps the others. A name it does not know (None) is kept as it is, so that strict
    loading reports it.
    """
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state_dict.items():
        name = key.removeprefix("module.")
        if drop(name, value):
            dropped.append(key)
        else:
            out[rename(name) or name] = value
    return out, dropped

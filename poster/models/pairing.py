"""Which batch norms can be folded into the convolution before them, read from a model's structure.

A batch norm in eval mode is an affine map per channel, so when it is the only consumer of a
convolution's output it can be folded into that convolution's weight and bias. The pairs are
found from the data flow of each module's ``forward``, traced with ``torch.fx``: a convolution
node whose only user is a batch-norm node taking nothing else, each module called once. Where a
module cannot be traced (data-dependent checks, Python control flow on tensors) its children are
looked at instead, and inside an ``nn.Sequential`` a ``Conv2d`` directly followed by a
``BatchNorm2d`` is a pair by construction. Modules a traced ``forward`` never calls (a head used
by another method) are looked at on their own.

The one assumption: a paired convolution is not also called outside its parent's ``forward``.
"""
from __future__ import annotations

from collections import Counter

import torch.fx as fx
from torch import nn


def conv_norm_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(convolution, batch norm) pairs in ``model`` where the norm only ever sees that convolution's output."""
    found: dict[int, tuple[nn.Conv2d, nn.BatchNorm2d]] = {}
    _collect(model, found)
    return list(found.values())


def _is_conv(module: nn.Module) -> bool:
    return type(module) is nn.Conv2d


def _is_norm(module: nn.Module) -> bool:
    return type(module) is nn.BatchNorm2d


def _collect(module: nn.Module, found: dict[int, tuple[nn.Conv2d, nn.BatchNorm2d]]) -> None:
    graph = _trace(module)
    if graph is None:
        if isinstance(module, nn.Sequential):
            children = list(module.children())
            for conv, norm in zip(children, children[1:]):
                if _is_conv(conv) and _is_norm(norm):
                    found[id(conv)] = (conv, norm)
        for child in module.children():
            _collect(child, found)
        return
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    for node in graph.nodes:
        if node.op != "call_module" or not _is_norm(module.get_submodule(node.target)):
            continue
        if calls[node.target] != 1 or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if (isinstance(source, fx.Node) and source.op == "call_module" and calls[source.target] == 1
                and len(source.users) == 1 and _is_conv(module.get_submodule(source.target))):
            found[id(module.get_submodule(source.target))] = (module.get_submodule(source.target),
                                                              module.get_submodule(node.target))
    _collect_uncalled(module, "", set(calls), found)


def _collect_uncalled(module: nn.Module, prefix: str, called: set[str],
                      found: dict[int, tuple[nn.Conv2d, nn.BatchNorm2d]]) -> None:
    """Look on their own at the descendants of a traced module that its ``forward`` never called."""
    for name, child in module.named_children():
        path = prefix + name
        if path in called:
            continue
        if any(target.startswith(path + ".") for target in called):
            _collect_uncalled(child, path + ".", called, found)
        else:
            _collect(child, found)


def _trace(module: nn.Module) -> fx.Graph | None:
    if type(module).forward is nn.Module.forward:  # containers such as nn.ModuleList
        return None
    try:
        return fx.Tracer().trace(module)
    except Exception:  # noqa: BLE001 - any trace failure only means: look at the children instead
        return None

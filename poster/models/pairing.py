"""Which batch norms and activations a convolution or linear layer can absorb, read from the model.

A batch norm in eval mode is an affine map per channel, so when it is the only consumer of a
convolution's output it can be folded into that convolution's weight and bias, and when a
convolution is its only consumer it can be folded into that convolution's weight and a bias map;
an element-wise activation that is the only consumer after that can run as a oneDNN post-op. The
chains are found from the data flow of each module's ``forward``, traced with ``torch.fx``: a layer
node whose only user is a batch-norm node taking nothing else, whose only user in turn is an
activation node (and a batch-norm node whose only user is the layer), each module called once. Where a module cannot be traced (data-dependent checks, Python control flow on
tensors) its children are looked at instead, and inside an ``nn.Sequential`` neighbouring children
form a chain by construction. Modules a traced ``forward`` never calls (a head used by another
method) are looked at on their own.

The one assumption: a chained module is not also called outside its parent's ``forward``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import torch.fx as fx
from torch import nn

# Activations oneDNN applies as a post-op, with the post-op's name.
POST_OPS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.GELU: "gelu", nn.SiLU: "swish", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh",
    nn.Hardswish: "hardswish",
}


@dataclass(frozen=True)
class Chain:
    """A layer, the batch norm only it feeds, the activation only they feed, and the batch norm
    that feeds only the layer (norms: convolutions only)."""

    layer: nn.Conv2d | nn.Linear
    norm: nn.BatchNorm2d | None = None
    activation: nn.Module | None = None
    input_norm: nn.BatchNorm2d | None = None


def fusion_chains(model: nn.Module) -> list[Chain]:
    """Every convolution or linear layer in ``model`` with norms or an activation it can absorb."""
    found: dict[int, Chain] = {}
    _collect(model, found)
    # A norm between two convolutions folds into the first (exactly, without a bias map).
    claimed = {id(chain.norm) for chain in found.values() if chain.norm is not None}
    chains = [replace(c, input_norm=None) if id(c.input_norm) in claimed else c for c in found.values()]
    return [c for c in chains if c.norm is not None or c.activation is not None or c.input_norm is not None]


def _is_layer(module: nn.Module) -> bool:
    return type(module) in (nn.Conv2d, nn.Linear)


def _conv_and_norm(layer: nn.Module, module: nn.Module) -> bool:
    return type(layer) is nn.Conv2d and type(module) is nn.BatchNorm2d


def _is_activation(module: nn.Module) -> bool:
    return type(module) in POST_OPS


def _add(found: dict[int, Chain], chain: Chain) -> None:
    if chain.norm is not None or chain.activation is not None or chain.input_norm is not None:
        found[id(chain.layer)] = chain


def _collect(module: nn.Module, found: dict[int, Chain]) -> None:
    graph = _trace(module)
    if graph is None:
        if isinstance(module, nn.Sequential):
            _collect_neighbours(list(module.children()), found)
        for child in module.children():
            _collect(child, found)
        return
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")

    def sole_user(node: fx.Node, accept) -> fx.Node | None:
        if len(node.users) != 1:
            return None
        user = next(iter(node.users))
        if (user.op == "call_module" and calls[user.target] == 1 and user.args == (node,) and not user.kwargs
                and accept(module.get_submodule(user.target))):
            return user
        return None

    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1 or not _is_layer(module.get_submodule(node.target)):
            continue
        layer = module.get_submodule(node.target)
        norm_node = sole_user(node, lambda m: _conv_and_norm(layer, m))
        act_node = sole_user(norm_node or node, _is_activation)
        source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        input_norm = None
        if (isinstance(source, fx.Node) and source.op == "call_module" and calls[source.target] == 1
                and len(source.users) == 1 and _conv_and_norm(layer, module.get_submodule(source.target))):
            input_norm = module.get_submodule(source.target)
        _add(found, Chain(layer, norm_node and module.get_submodule(norm_node.target),
                          act_node and module.get_submodule(act_node.target), input_norm))
    _collect_uncalled(module, "", set(calls), found)


def _collect_neighbours(children: list[nn.Module], found: dict[int, Chain]) -> None:
    for i, layer in enumerate(children):
        if not _is_layer(layer):
            continue
        rest = children[i + 1:i + 3]
        norm = rest[0] if rest and _conv_and_norm(layer, rest[0]) else None
        after = rest[1:] if norm is not None else rest[:1]
        activation = after[0] if after and _is_activation(after[0]) else None
        before = children[i - 1] if i > 0 else None
        input_norm = before if before is not None and _conv_and_norm(layer, before) else None
        _add(found, Chain(layer, norm, activation, input_norm))


def _collect_uncalled(module: nn.Module, prefix: str, called: set[str], found: dict[int, Chain]) -> None:
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
    # A trace swaps nn.Module.__call__ for the whole process: announce it as a compile, so that model
    # calls of other threads (a checkpoint loads while others are served) wait it out.
    from ..inference.compile_guard import compiling

    try:
        with compiling():
            return fx.Tracer().trace(module)
    except Exception:  # noqa: BLE001 - any trace failure only means: look at the children instead
        return None

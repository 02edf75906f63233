"""CPU fusions declared by each architecture, and the step that applies them to a model.

A batch norm in eval mode is an affine map per channel, so when it is the only consumer of a
convolution's output it can be folded into that convolution's weight and bias, and when a
convolution is its only consumer it can be folded into that convolution's weight and a bias map;
an element-wise activation that is the only consumer after that can run as a oneDNN post-op.
Which modules form such chains is a fact of each architecture's ``forward``, so each model class
lists them by submodule name in a ``cpu_fusions()`` method, as torchvision's quantizable models
list the pairs their ``fuse_model()`` fuses. ``fuse_for_cpu`` reads that list; nothing is traced.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from torch import nn

from .packed import POST_OPS, PackedConv2d, PackedLinear
from .patch_conv1d import adopt_patch_conv1d


@dataclass(frozen=True)
class Fusion:
    """A convolution or linear ``layer``, the batch norm only it feeds, the activation only they
    feed, and the batch norm that feeds only the layer: submodule names (norms: convolutions only)."""

    layer: str
    norm: str | None = None
    activation: str | None = None
    input_norm: str | None = None

    def under(self, prefix: str) -> "Fusion":
        """The same chain named from a parent module whose child ``prefix`` declared it."""
        def name(n: str | None) -> str | None:
            return None if n is None else f"{prefix}.{n}"
        return Fusion(name(self.layer), name(self.norm), name(self.activation), name(self.input_norm))


def under(prefix: str, fusions: Iterable[Fusion]) -> list[Fusion]:
    """A child module's declared chains, named from its parent (``under("backbone", ...)``)."""
    return [f.under(prefix) for f in fusions]


def conv_bn(prefix: str, activation: str | None = None) -> Fusion:
    """The common ``prefix.conv`` -> ``prefix.bn`` (-> ``prefix.<activation>``) chain."""
    return Fusion(f"{prefix}.conv", f"{prefix}.bn", activation and f"{prefix}.{activation}")


def fc_act(prefix: str) -> Fusion:
    """An MLP's ``prefix.fc1`` -> ``prefix.act`` chain."""
    return Fusion(f"{prefix}.fc1", activation=f"{prefix}.act")


def declared_fusions(model: nn.Module) -> list[Fusion]:
    """``model.cpu_fusions()``, or nothing for a model that declares none."""
    declare = getattr(model, "cpu_fusions", None)
    return list(declare()) if callable(declare) else []


def fuse_for_cpu(model: nn.Module) -> nn.Module:
    """Swap packed layers into ``model`` in place and return it (run it on a copy of your own:
    the model changes; see ``poster.inference.accelerate.fast_copy``).

    Every ``nn.Conv2d`` and ``nn.Linear`` becomes packed; the norms and activations of the chains
    the model declares are folded into their layer, and a 1-D convolution whose windows do not
    overlap becomes one matrix product (``patch_conv1d``). A declared name that is missing or of
    the wrong kind raises ``ValueError`` before anything is changed.
    """
    chains = {}
    for fusion in declared_fusions(model):
        chain = _resolve(model, fusion)
        chains[id(chain[0])] = chain
    for module in list(model.modules()):
        if type(module) is nn.Conv2d:
            _, norm, activation, input_norm = chains.get(id(module), (module, None, None, None))
            PackedConv2d.adopt(module, norm, activation, input_norm)
        elif type(module) is nn.Linear:
            _, _, activation, _ = chains.get(id(module), (module, None, None, None))
            PackedLinear.adopt(module, activation)
        else:
            adopt_patch_conv1d(module)
    return model


def _resolve(model: nn.Module, fusion: Fusion) -> tuple[nn.Module, nn.Module | None, nn.Module | None, nn.Module | None]:
    def get(name: str | None, kinds: tuple[type, ...], what: str) -> nn.Module | None:
        if name is None:
            return None
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"{type(model).__name__} declares a fusion of {name!r}, which it does not have") from None
        if type(module) not in kinds:
            raise ValueError(f"{type(model).__name__}.{name} is a {type(module).__name__}, not {what}")
        return module

    layer = get(fusion.layer, (nn.Conv2d, nn.Linear), "a convolution or linear layer")
    norm_kinds = (nn.BatchNorm2d,) if type(layer) is nn.Conv2d else ()
    return (layer, get(fusion.norm, norm_kinds, "a batch norm after a convolution"),
            get(fusion.activation, tuple(POST_OPS), "an activation oneDNN applies as a post-op"),
            get(fusion.input_norm, norm_kinds, "a batch norm before a convolution"))


__all__ = ["Fusion", "under", "conv_bn", "fc_act", "declared_fusions", "fuse_for_cpu"]

"""Where a run's weights start: a checkpoint (its classification head fitted to the run's classes),
or the pretrained backbones."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import CheckpointError
from ..models import PosterV2
from ..weights import locate
from ..weights.checkpoints import load_pretrained_backbones, read_weights
from ..weights.registry import canonical_class
from .recipe import TrainConfig


def build_model(config: TrainConfig, class_names: Sequence[str],
                log: Callable[[str], None] | None = None) -> PosterV2:
    """POSTER++ for ``class_names``: fine-tuned from ``config.init``, or pretrained backbones."""
    say = log or (lambda message: None)
    model = PosterV2(len(class_names))
    if config.init:
        path = locate.resolve(config.init)
        state, meta = read_weights(path, config.init_dataset)
        state, note = fit_head(state, meta["class_names"], class_names)
        missing, unexpected = model.load_state_dict(state, strict=False)
        head = {"transformer.head.weight", "transformer.head.bias"}
        allowed = set() if head <= state.keys() else head  # a dropped head stays freshly initialised
        if set(missing) - allowed or unexpected:
            raise CheckpointError(f"{path.name} does not fit POSTER++ (missing {sorted(missing)[:4]}, "
                                  f"unexpected {sorted(unexpected)[:4]})")
        say(f"initialised from {path} ({meta['name']}; {meta['dataset'] or 'dataset'} "
            f"{meta['dataset_reason'].replace('--dataset', '--init-dataset')}); {note}")
        return model
    load_pretrained_backbones(model, ir50=config.ir50, mobilefacenet=config.mobilefacenet)
    for label, source in (("IR-50", config.ir50), ("MobileFaceNet", config.mobilefacenet)):
        say(f"{label}: {'pretrained weights from ' + str(source) if source else 'RANDOM weights (no pretraining)'}")
    return model


def fit_head(state: dict[str, torch.Tensor], old_names: Sequence[str],
             new_names: Sequence[str]) -> tuple[dict[str, torch.Tensor], str]:
    """Make a checkpoint's classification head fit ``new_names``; returns the state and what was done.

    Same classes (by canonical name) in another order: rows reordered. Unnamed classes, same count:
    kept as they are. Otherwise the head is dropped, so the model's freshly initialised head stays.
    """
    old = [canonical_class(n) for n in old_names]
    new = [canonical_class(n) for n in new_names]
    weight, bias = state["transformer.head.weight"], state["transformer.head.bias"]
    if old == new:
        return state, "head kept"
    if not old and weight.shape[0] == len(new):
        return state, "head kept (the checkpoint names no classes; assumed to be in the same order)"
    if sorted(old) == sorted(new) and len(set(old)) == len(old):
        order = [old.index(name) for name in new]
        state = dict(state, **{"transformer.head.weight": weight[order], "transformer.head.bias": bias[order]})
        return state, "head rows reordered to the new class order"
    state = {k: v for k, v in state.items() if not k.startswith("transformer.head.")}
    return state, f"head replaced ({weight.shape[0]} -> {len(new)} classes, freshly initialised)"

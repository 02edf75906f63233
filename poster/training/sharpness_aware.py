"""Sharpness-Aware Minimization (Foret et al., ICLR 2021) around any PyTorch optimizer.

SAM looks for weights whose whole neighbourhood has low loss. Each update needs two gradients:

1. ``g = grad L(w)``; climb to ``w_adv = w + rho * g / ||g||`` (``first_step``);
2. ``g_adv = grad L(w_adv)``; go back to ``w`` and let the base optimizer step with ``g_adv``
   (``second_step``).

Distributed training: SAM itself never communicates. Run both forward/backward passes through the
DistributedDataParallel-wrapped model, without ``no_sync``, and DDP averages each gradient across
processes before the step that reads it. ``||g||`` and ``w_adv`` are therefore the same on every
process, and so is the update, exactly as with one process seeing the whole batch.

Learning-rate schedulers and ``GradScaler.step`` drive ``sam.base_optimizer``; its parameter
groups are the ones SAM reads ``rho`` from, so a schedule changes both.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch.optim import Optimizer


class SAM(Optimizer):
    """SAM wrapper: ``SAM(model.parameters(), torch.optim.Adam, rho=0.05, lr=3.5e-5)``.

    ``adaptive=True`` scales the climb per weight by ``|w|`` (ASAM, Kwon et al. 2021).
    Extra keyword arguments go to the base optimizer.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
                 base_optimizer: type[Optimizer] = torch.optim.Adam, *, rho: float = 0.05,
                 adaptive: bool = False, **kwargs: Any) -> None:
        if rho < 0:
            raise ValueError(f"rho must be non-negative, got {rho}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        # Weights at w while the model sits at w_adv; never saved (it only lives between the steps).
        self._backup: dict[torch.Tensor, torch.Tensor] = {}

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """``||g||`` over every parameter that has a gradient (``|w| * g`` when adaptive)."""
        norms = []
        device = None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                device = device or p.device
                g = p.grad * p.abs() if group["adaptive"] else p.grad
                # At least float32: half-precision squares overflow at |g| ~ 256.
                dtype = torch.promote_types(g.dtype, torch.float32)
                norms.append(torch.linalg.vector_norm(g, dtype=dtype).to(device))
        if not norms:
            return torch.zeros(())
        dtype = max((n.dtype for n in norms), key=lambda d: torch.finfo(d).bits)
        return torch.linalg.vector_norm(torch.stack([n.to(dtype) for n in norms]))

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> torch.Tensor:
        """Move every weight to ``w + rho * g / ||g||``; returns ``||g||``.

        A non-finite norm (an fp16 overflow) leaves weights NaN: check it and call ``restore``.
        """
        norm = self.grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._backup[p] = p.detach().clone()
                climb = p.grad * scale.to(p)
                if group["adaptive"]:
                    climb = climb * p.square()
                p.add_(climb)
        if zero_grad:
            self.zero_grad()
        return norm

    @torch.no_grad()
    def restore(self) -> None:
        """Put the weights back at ``w`` (exactly: from a copy, not by subtracting the climb)."""
        for p, original in self._backup.items():
            p.copy_(original)
        self._backup.clear()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Back to ``w``, then the base optimizer's step with the gradient taken at ``w_adv``."""
        self.restore()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """One full SAM update; ``closure`` must zero the gradients, run forward and backward
        and return the loss. Expects the first backward to have run already."""
        if closure is None:
            raise RuntimeError("SAM.step needs a closure that recomputes the loss; "
                               "or call first_step() and second_step() around your own backward")
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        # The base optimizer holds the moments; its groups carry rho and adaptive too.
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups  # loading replaced the list

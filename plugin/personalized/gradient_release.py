"""Gradient release: update each parameter inside the backward pass and free its gradient at once.

Without it, every gradient of the model lives until ``optimizer.step()``;
with it, a gradient lives only until its parameter's update, which on a
LoRA or a full fine-tune saves roughly the size of the trainable weights in
VRAM. Use::

    release = personalized.GradientRelease(optimizer)   # hooks every parameter of the optimizer
    for batch in data:
        loss(batch).backward()     # parameters are updated during backward, .grad stays None
        scheduler.step()           # no optimizer.step() / zero_grad() needed
    release.remove()               # back to ordinary steps

With ``accumulation_steps=N`` each parameter is updated at every N-th
backward pass, from the gradient summed over the N micro-batches (the first
N-1 keep their gradient, as without release). Every optimizer of this package
supports it except Prodigy, whose step size depends on all gradients at once.
Gradient clipping by the global norm is not possible (each parameter is
updated before the others have a gradient).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class GradientRelease:
    """Installs ``register_post_accumulate_grad_hook`` hooks that call ``optimizer.step_parameter``."""

    def __init__(self, optimizer: torch.optim.Optimizer, accumulation_steps: int = 1) -> None:
        if not callable(getattr(optimizer, "step_parameter", None)) or not getattr(
            optimizer, "per_parameter_update", True
        ):
            raise TypeError(
                f"{type(optimizer).__name__} cannot update one parameter at a time, so its gradients cannot be "
                "released during backward; use ordinary optimizer.step()"
            )
        if isinstance(accumulation_steps, bool) or not isinstance(accumulation_steps, int) or accumulation_steps < 1:
            raise ValueError(
                f"GradientRelease: accumulation_steps={accumulation_steps!r} is not allowed; "
                "expected a whole number >= 1"
            )
        self.optimizer = optimizer
        self.accumulation_steps = accumulation_steps
        self._backward_passes: dict[Tensor, int] = {}
        self._handles = [
            p.register_post_accumulate_grad_hook(self._hook(group, index))
            for group in optimizer.param_groups
            for index, p in enumerate(group["params"])
            if p.requires_grad
        ]

    def _hook(self, group: dict[str, Any], index: int) -> Any:
        def release(p: Tensor) -> None:
            count = self._backward_passes.get(p, 0) + 1
            self._backward_passes[p] = count
            if count % self.accumulation_steps == 0:
                self.optimizer.step_parameter(p, group, index)
                p.grad = None

        return release

    def remove(self) -> None:
        """Remove the hooks; ``optimizer.step()`` is needed again afterwards."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

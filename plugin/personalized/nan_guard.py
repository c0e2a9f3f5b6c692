"""NaNGuard: skip steps that would go non-finite, and apply a preset's fallbacks.

Wrap any optimizer::

    optimizer = personalized.NaNGuard(personalized.create_optimizer(params, "rvc/FCompass"), preset="rvc/FCompass")

Before every step the guard checks that the gradients are finite and, for the
optimizers of this package, that the update would be (it is computed on
scratch copies first, see ``update_is_finite``). Both checks together cost one
host synchronisation per step, not one per parameter. A step that fails is
skipped: parameters and optimizer state stay exactly as they were. After
``patience`` skipped steps the guard applies the preset's next fallback (for
example ``diff_mult=0``) to every param group of the live optimizer and warns
once, in plain words. For Prodigy (whose step size is global) and for
optimizers from other packages only the gradients can be checked before the
step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .validation import validate


class NaNGuard(torch.optim.Optimizer):
    """Opt-in wrapper that keeps non-finite values out of the parameters and the optimizer state.

    Args:
        optimizer: the optimizer to guard. Its ``param_groups`` and ``state``
            are shared, so LR schedulers and checkpoints work as before.
        preset: a preset name or :class:`personalized.presets.Preset` whose
            ``fallbacks`` to apply, or None to only skip bad steps.
        patience: how many skipped steps trigger the next fallback.
        fallbacks: explicit fallbacks (lists of hyperparameter overrides),
            instead of the preset's.

    ``skipped_steps`` counts every skipped step; ``fallbacks_applied`` how
    many fallbacks are in force. Both are saved in ``state_dict()``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        preset: Any = None,
        patience: int = 3,
        fallbacks: list[dict[str, Any]] | None = None,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"NaNGuard wraps a torch.optim.Optimizer, not {type(optimizer).__name__}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"NaNGuard: patience={patience!r} is not allowed; expected a whole number >= 1")
        if isinstance(preset, str):
            from . import presets

            preset = presets.load(preset)
        self.optimizer = optimizer
        self.preset_name = preset.name if preset is not None else None
        self.fallbacks = [dict(f) for f in (fallbacks if fallbacks is not None else getattr(preset, "fallbacks", ()))]
        self.patience = patience
        self.skipped_steps = 0
        self.fallbacks_applied = 0
        self._since_fallback = 0
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state

    def __repr__(self) -> str:
        return f"NaNGuard({self.optimizer!r})"

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if bool(self._step_is_finite()):  # the one host sync of the step
            self.optimizer.step()
        else:
            self._skip()
        return loss

    def _step_is_finite(self) -> Tensor:
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        checks = [torch.isfinite(grad).all() for grad in grads]
        if checks and getattr(self.optimizer, "per_parameter_update", False):
            checks.append(self.optimizer.update_is_finite())
        return torch.stack(checks).all() if checks else torch.tensor(True)

    def _skip(self) -> None:
        self.skipped_steps += 1
        self._since_fallback += 1
        if self._since_fallback >= self.patience and self.fallbacks_applied < len(self.fallbacks):
            self._apply_next_fallback()

    def _apply_next_fallback(self) -> None:
        overrides = self.fallbacks[self.fallbacks_applied]
        rules = getattr(type(self.optimizer), "hyperparameter_rules", dict)()
        for index, group in enumerate(self.param_groups):
            validate(type(self.optimizer).__name__, f"fallback for param group {index}", dict(overrides), rules)
            group.update(overrides)
        self.fallbacks_applied += 1
        self._since_fallback = 0
        settings = ", ".join(f"{key}={value!r}" for key, value in overrides.items())
        source = f" from preset {self.preset_name}" if self.preset_name else ""
        warnings.warn(
            f"non-finite values {self.patience} times; applying fallback {self.fallbacks_applied} of "
            f"{len(self.fallbacks)}{source}: {settings}",
            RuntimeWarning,
            stacklevel=4,
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        state = self.optimizer.state_dict()
        state["nan_guard"] = {
            "skipped_steps": self.skipped_steps,
            "fallbacks_applied": self.fallbacks_applied,
            "since_fallback": self._since_fallback,
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        guard = state_dict.pop("nan_guard", None)
        self.optimizer.load_state_dict(state_dict)
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        if guard is not None:
            self.skipped_steps = guard["skipped_steps"]
            self.fallbacks_applied = guard["fallbacks_applied"]
            self._since_fallback = guard["since_fallback"]

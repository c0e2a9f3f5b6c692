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
once, in plain words. With ``stop=True``, ``patience`` more skipped steps after
the last fallback raise :class:`NonFiniteTraining` instead of training on. For
Prodigy (whose step size is global) and for optimizers from other packages
only the gradients can be checked before the step.

The bookkeeping lives in :class:`StepGuard`, which the trainers' switch
(:mod:`personalized.guarding`) builds into the optimizer class itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from .checks import refuse_meta
from .closure import closure_loss
from .validation import validate


class NonFiniteTraining(RuntimeError):
    """Training kept producing NaN/inf after every fallback was applied (a guard with ``stop=True``)."""


def warn(message: str) -> None:
    """The default report of a guard: a RuntimeWarning."""
    warnings.warn(message, RuntimeWarning, stacklevel=5)


def grad_is_finite(grad: Tensor) -> Tensor:
    """Whether every value of ``grad`` is finite, as a 0-dim tensor (a sparse gradient's stored values:
    the optimizer says for itself whether it takes sparse gradients)."""
    return torch.isfinite(grad.coalesce().values() if grad.is_sparse else grad).all()


class StepGuard:
    """What a NaN guard knows and decides, for one optimizer.

    Args:
        optimizer: the optimizer whose steps are checked; its param groups
            receive the fallbacks.
        preset: a preset name or :class:`personalized.presets.Preset` whose
            ``fallbacks`` to apply, or None to only skip bad steps.
        patience: how many skipped steps trigger the next fallback (and, with
            ``stop``, how many more after the last one stop training).
        fallbacks: explicit fallbacks (lists of hyperparameter overrides),
            instead of the preset's.
        stop: raise :class:`NonFiniteTraining` once the fallbacks are used up
            and steps still go non-finite, instead of skipping them for ever.
        report: called with each message (a fallback applied); a
            RuntimeWarning by default.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        preset: Any = None,
        patience: int = 3,
        fallbacks: Iterable[dict[str, Any]] | None = None,
        stop: bool = False,
        report: Callable[[str], None] = warn,
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"NaNGuard: patience={patience!r} is not allowed; expected a whole number >= 1")
        if isinstance(preset, str):
            from . import presets

            preset = presets.load(preset)
        self.optimizer = optimizer
        self.preset_name = preset.name if preset is not None else None
        self.fallbacks = [dict(f) for f in (fallbacks if fallbacks is not None else getattr(preset, "fallbacks", ()))]
        self.patience = patience
        self.stop = stop
        self.report = report
        self.skipped_steps = 0
        self.fallbacks_applied = 0
        self.since_fallback = 0
        #: Parameters stepped one at a time in the current round, and whether the round was skipped.
        self._round: set[int] = set()
        self._round_skipped = False

    def step(self, step: Callable[[], Any], closure: Callable[[], Any] | None) -> Any:
        """Run ``closure`` (with grad enabled), then ``step()`` if :meth:`allows_step`; return the closure's loss."""
        loss = closure_loss(closure)
        if self.allows_step():
            step()
        return loss

    def allows_step(self) -> bool:
        """Whether the next ``step()`` may run; a refused step is counted (the one host sync of the step)."""
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        self._refuse_meta(params)
        checks = [grad_is_finite(p.grad) for p in params]
        if checks and getattr(self.optimizer, "per_parameter_update", False):
            checks.append(self.optimizer.update_is_finite())
        if not checks or bool(torch.stack(checks).all()):
            return True
        self.skip()
        return False

    def allows_parameter(self, p: Tensor) -> bool:
        """Whether ``step_parameter(p, ...)`` may run (one host sync per parameter).

        A round of single-parameter steps (a fused backward pass) ends when a
        parameter comes again; a round in which any parameter was refused
        counts as one skipped step.
        """
        if id(p) in self._round:
            self._round.clear()
            self._round_skipped = False
        self._round.add(id(p))
        self._refuse_meta([p])
        checks = [grad_is_finite(p.grad)]
        if getattr(self.optimizer, "per_parameter_update", False):
            checks.append(self.optimizer.update_is_finite([p]))
        if bool(torch.stack(checks).all()):
            return True
        if not self._round_skipped:
            self._round_skipped = True
            self.skip()
        return False

    def _refuse_meta(self, params: list[Tensor]) -> None:
        """Meta tensors have no values to check: a clear error instead of torch's about ``.item()``."""
        owner = f"NaN guard of {type(self.optimizer).__name__}"
        refuse_meta(owner, self.optimizer.param_groups, params, "the guard checks gradient and update values")

    def skip(self) -> None:
        """Count a skipped step; apply the next fallback, or stop, when ``patience`` is reached."""
        self.skipped_steps += 1
        self.since_fallback += 1
        if self.since_fallback < self.patience:
            return
        if self.fallbacks_applied < len(self.fallbacks):
            self._apply_next_fallback()
        elif self.stop:
            raise NonFiniteTraining(self._stop_message())

    def _times(self) -> str:
        return f"{self.patience} time{'s' if self.patience > 1 else ''}"

    def _source(self) -> str:
        return f" from preset {self.preset_name}" if self.preset_name else ""

    def _apply_next_fallback(self) -> None:
        overrides = self.fallbacks[self.fallbacks_applied]
        rules = getattr(type(self.optimizer), "hyperparameter_rules", dict)()
        for index, group in enumerate(self.optimizer.param_groups):
            validate(type(self.optimizer).__name__, f"fallback for param group {index}", dict(overrides), rules)
            group.update(overrides)
        self.fallbacks_applied += 1
        self.since_fallback = 0
        settings = ", ".join(f"{key}={value!r}" for key, value in overrides.items())
        self.report(
            f"non-finite values {self._times()}; applying fallback {self.fallbacks_applied} of "
            f"{len(self.fallbacks)}{self._source()}: {settings}"
        )

    def _stop_message(self) -> str:
        tried = (
            f"after all {len(self.fallbacks)} fallbacks{self._source()} were applied"
            if self.fallbacks
            else f"and there is no fallback to try{self._source()}"
        )
        return (
            f"{type(self.optimizer).__name__}: non-finite values {self._times()} {tried}; stopping training "
            f"so that no NaN weights are saved ({self.skipped_steps} steps skipped in all). "
            "Lower the learning rate, or resume from an earlier checkpoint"
        )

    def state(self) -> dict[str, int]:
        """The counters, for ``state_dict()`` (plain numbers: loads with ``weights_only=True``)."""
        return {
            "skipped_steps": self.skipped_steps,
            "fallbacks_applied": self.fallbacks_applied,
            "since_fallback": self.since_fallback,
        }

    def load(self, saved: dict[str, int]) -> None:
        """Restore the counters of :meth:`state`."""
        self.skipped_steps = saved["skipped_steps"]
        self.fallbacks_applied = saved["fallbacks_applied"]
        self.since_fallback = saved["since_fallback"]


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
        stop: once the fallbacks are used up, ``patience`` more skipped steps
            raise :class:`NonFiniteTraining` (so a run does not go on with
            nothing but skipped steps); False skips bad steps for ever.

    ``skipped_steps`` counts every skipped step; ``fallbacks_applied`` how
    many fallbacks are in force. Both are saved in ``state_dict()``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        preset: Any = None,
        patience: int = 3,
        fallbacks: list[dict[str, Any]] | None = None,
        stop: bool = False,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"NaNGuard wraps a torch.optim.Optimizer, not {type(optimizer).__name__}")
        self.guard = StepGuard(optimizer, preset, patience, fallbacks, stop)
        self.optimizer = optimizer
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state

    def __repr__(self) -> str:
        return f"NaNGuard({self.optimizer!r})"

    @property
    def skipped_steps(self) -> int:
        return self.guard.skipped_steps

    @property
    def fallbacks_applied(self) -> int:
        return self.guard.fallbacks_applied

    @property
    def fallbacks(self) -> list[dict[str, Any]]:
        return self.guard.fallbacks

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        return self.guard.step(self.optimizer.step, closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        state = self.optimizer.state_dict()
        state["nan_guard"] = self.guard.state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        guard = state_dict.pop("nan_guard", None)
        self.optimizer.load_state_dict(state_dict)
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        if guard is not None:
            self.guard.load(guard)

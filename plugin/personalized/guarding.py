"""The NaN guard, switched on from a trainer's own optimizer settings.

Trainers build the optimizer themselves from the keywords their config
holds, so the guard is three more keywords, accepted by every optimizer of
this package wherever the trainer passes keywords (kohya ``--optimizer_args``,
diffusion-pipe's ``[optimizer]`` table, OneTrainer's side channel, RVC's
``train`` section)::

    nan_guard = "stop"                  # off (default) | true / "fallbacks" | "stop"
    nan_guard_preset = "rvc/FCompass"   # whose fallbacks (default: default/<Optimizer>)
    nan_guard_patience = 3              # skipped steps before the next fallback

``true`` (or ``"fallbacks"``) skips every step that would put NaN/inf into the
weights or the optimizer state and applies the preset's fallbacks one by one,
printing one plain line to the console for each. ``"stop"`` does the same, and
once the fallbacks are used up, ``patience`` more skipped steps stop training
with :class:`personalized.nan_guard.NonFiniteTraining`, before a NaN
checkpoint can be saved.

With any of these keywords, ``FCompass(params, nan_guard="stop")`` builds an
instance of :func:`guarded_class` ``(FCompass)``: a subclass with the same
name, signature and behaviour whose ``step()`` and ``step_parameter()`` ask a
:class:`personalized.nan_guard.StepGuard` first. Being the optimizer itself
(not a wrapper), it keeps working wherever a trainer looks at the object:
class-name checks (``__class__.__name__ == "Prodigy"``), ``isinstance``,
``param_groups`` read or replaced, LR schedulers, ``state_dict()`` /
``load_state_dict()`` (the guard's counters travel in the checkpoint under
``"nan_guard"``; a checkpoint without them loads, and an unguarded optimizer
loads one with them) and OneTrainer's fused back pass.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .nan_guard import StepGuard

#: The keywords that switch the guard on and tune it.
GUARD_KEYS = frozenset({"nan_guard", "nan_guard_preset", "nan_guard_patience"})
#: What ``nan_guard`` may say, lower-cased, and whether it means "stop when the fallbacks are used up"
#: (None: the guard is off).
MODES: dict[Any, bool | None] = {
    False: None,
    None: None,
    "off": None,
    True: False,
    "on": False,
    "fallbacks": False,
    "stop": True,
}
ALLOWED = "True, False, 'fallbacks', 'stop' or 'off'"

_printed: set[str] = set()


def console(message: str) -> None:
    """Print ``message`` once per process, as one plain line on stderr (the trainer's console).

    Once: trainers that build one optimizer per parameter (diffusion-pipe's
    gradient release) would otherwise print the same line for each.
    """
    if message not in _printed:
        _printed.add(message)
        print(f"personalized: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class GuardSettings:
    """The guard's settings, checked: stop when the fallbacks are used up, whose fallbacks, patience."""

    stop: bool
    preset: str | None = None
    patience: int = 3

    @classmethod
    def parse(cls, owner: str, values: Mapping[str, Any]) -> GuardSettings | None:
        """The settings in ``values`` (the ``nan_guard*`` keywords as written), or None when the guard is off.

        Raises TypeError for an unknown ``nan_guard*`` keyword, ValueError or
        TypeError for a value that is not allowed, naming ``owner``.
        """
        unknown = sorted(set(values) - GUARD_KEYS)
        if unknown:
            allowed = ", ".join(sorted(GUARD_KEYS))
            raise TypeError(f"{owner}: unknown NaN guard setting(s) {', '.join(unknown)}; allowed: {allowed}")
        mode = values.get("nan_guard")
        key = mode.strip().lower() if isinstance(mode, str) else mode
        if (not isinstance(key, (bool, str)) and key is not None) or key not in MODES:
            raise ValueError(f"{owner}: nan_guard={mode!r} is not allowed; expected {ALLOWED}")
        preset = values.get("nan_guard_preset")
        if preset is not None and (not isinstance(preset, str) or not preset.strip()):
            raise TypeError(
                f"{owner}: nan_guard_preset={preset!r} is not allowed; expected a preset name such as 'rvc/FCompass'"
            )
        patience = values.get("nan_guard_patience", 3)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"{owner}: nan_guard_patience={patience!r} is not allowed; expected a whole number >= 1")
        stop = MODES[key]
        return None if stop is None else cls(stop, preset.strip() if preset else None, patience)

    def guard(self, optimizer: torch.optim.Optimizer) -> StepGuard:
        """A guard for ``optimizer`` with the fallbacks of the chosen preset (``default/<Name>`` by default)."""
        preset = self._preset(type(optimizer).__name__)
        return StepGuard(optimizer, preset, self.patience, stop=self.stop, report=console)

    def _preset(self, name: str) -> Any:
        from . import presets

        if self.preset is None:
            default = f"default/{name}"
            return presets.load(default) if default in presets.available() else None
        preset = presets.load(self.preset)
        if preset.optimizer != name:
            raise ValueError(
                f"{name}: nan_guard_preset={self.preset!r} is a preset for {preset.optimizer}, not {name}; "
                f"name one of {name}'s presets ('personalized presets' lists them)"
            )
        return preset


def split_guard_keywords(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``kwargs`` as (the ``nan_guard*`` keywords, the others)."""
    guard = {key: value for key, value in kwargs.items() if key.startswith("nan_guard")}
    return guard, {key: value for key, value in kwargs.items() if key not in guard}


def _without_step_hooks(step: Callable[..., Any]) -> Callable[..., Any]:
    """The bound ``step`` without torch's hook wrapper: the guarded class's own ``step`` already runs the hooks."""
    function = step.__func__  # type: ignore[attr-defined]
    if getattr(function, "hooked", False):
        return functools.partial(function.__wrapped__, step.__self__)  # type: ignore[attr-defined]
    return step


@functools.cache
def guarded_class(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """``cls`` with the NaN guard built in: the same name, signature and behaviour, plus the ``nan_guard*`` keywords.

    The guard is off unless ``nan_guard`` switches it on; the optimizer is
    then exactly ``cls``'s.
    """

    class Guarded(cls):  # type: ignore[valid-type,misc]
        __doc__ = cls.__doc__
        #: Marks the guarded variant (its constructor takes the ``nan_guard*`` keywords itself).
        nan_guarded: ClassVar[bool] = True

        def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
            guard_values, kwargs = split_guard_keywords(kwargs)
            settings = GuardSettings.parse(cls.__name__, guard_values)
            super().__init__(params, *args, **kwargs)
            #: The :class:`StepGuard` deciding every step, or None when the guard is off.
            self.nan_guard = settings.guard(self) if settings is not None else None

        @torch.no_grad()
        def step(self, closure: Callable[[], Any] | None = None) -> Any:
            step = _without_step_hooks(super().step)
            if self.nan_guard is None:
                return step(closure)
            return self.nan_guard.step(step, closure)

        if hasattr(cls, "step_parameter"):

            def step_parameter(self, p: torch.Tensor, group: dict[str, Any], i: int | None = None) -> None:
                if self.nan_guard is None or self.nan_guard.allows_parameter(p):
                    super().step_parameter(p, group, i)

        def state_dict(self) -> dict[str, Any]:
            state = super().state_dict()
            if self.nan_guard is not None:
                state["nan_guard"] = self.nan_guard.state()
            return state

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            state_dict = dict(state_dict)
            saved = state_dict.pop("nan_guard", None)
            super().load_state_dict(state_dict)
            if saved is not None and self.nan_guard is not None:
                self.nan_guard.load(saved)

    Guarded.__name__, Guarded.__qualname__, Guarded.__module__ = cls.__name__, cls.__qualname__, cls.__module__
    Guarded.__init__.__signature__ = inspect.signature(cls.__init__)  # type: ignore[attr-defined]
    return Guarded

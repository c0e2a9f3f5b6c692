"""Everything a training loop needs from one preset: the optimizer, a learning-rate schedule, the NaN guard.

The ComfyUI node "Train LoRA (personalized optimizer)" uses this, and so can any
loop that calls ``optimizer.step()`` and ``optimizer.zero_grad()``::

    optimizer, scheduler = build_training_optimizer(
        lora.values(), "rvc/FCompass", steps=500, schedule="cosine", warmup_steps=50
    )
    for batch in batches:
        loss_of(batch).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

For a loop you cannot edit (ComfyUI's trainer only calls ``optimizer.step()``),
:func:`attach_scheduler` makes every ``optimizer.step()`` also step the schedule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.hooks import RemovableHandle

from .factory import create_optimizer, resolve
from .nan_guard import NaNGuard

#: The learning-rate schedules: keep the lr, or lower it to zero along a cosine or a straight line.
SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(step: int, steps: int, schedule: str = "constant", warmup_steps: int = 0) -> float:
    """The fraction of the preset's lr that optimizer step ``step + 1`` uses (``step`` counts from 0).

    During ``warmup_steps`` the lr grows in equal parts and reaches the full
    value at step ``warmup_steps``; then ``constant`` keeps it, while ``cosine``
    and ``linear`` lower it towards zero at step ``steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def build_training_optimizer(
    params: Iterable[Any],
    spec: str,
    steps: int,
    schedule: str = "constant",
    warmup_steps: int = 0,
    nan_guard: bool = True,
    patience: int = 3,
    **overrides: Any,
) -> tuple[torch.optim.Optimizer, LambdaLR | None]:
    """The optimizer ``spec`` names (a preset or an optimizer name) and its lr schedule over ``steps`` steps.

    Args:
        params: what to train (a list, ``model.parameters()``, ``state_dict.values()``...).
        spec: a preset (``"rvc/FCompass"``) or an optimizer name (``"fcompass"``),
            as for :func:`personalized.create_optimizer`.
        steps: how many times ``optimizer.step()`` will be called.
        schedule: one of :data:`SCHEDULES`.
        warmup_steps: steps over which the lr grows from a small value to the full one.
        nan_guard: wrap the optimizer in :class:`personalized.NaNGuard`, which skips
            steps that would turn weights into NaN/inf and applies the preset's fallbacks.
        patience: skipped steps before the guard applies the next fallback.
        overrides: constructor keywords that replace the preset's (``lr=2e-4``...).

    Returns ``(optimizer, scheduler)``. ``scheduler`` is None for an optimizer
    that has no lr to schedule (EnhancedAdafactor with ``lr=None`` picks its own
    step size), which is allowed only with ``schedule="constant"`` and no warmup.
    """
    _check_schedule(steps, schedule, warmup_steps)
    optimizer = create_optimizer(params, spec, **overrides)
    if nan_guard:
        optimizer = NaNGuard(optimizer, preset=resolve(spec)[2], patience=patience)
    if any(group["lr"] is None for group in optimizer.param_groups):
        if schedule != "constant" or warmup_steps:
            raise ValueError(
                f"{spec}: this optimizer has no lr (lr=None: it picks its own step size), so there is no lr "
                f"to schedule; use schedule 'constant' with warmup_steps=0, or set an lr "
                f"(EnhancedAdafactor: lr=1e-4, relative_step=False, scale_parameter=False, as in chroma/adafactor)"
            )
        return optimizer, None
    factor = partial(lr_factor, steps=steps, schedule=schedule, warmup_steps=warmup_steps)
    return optimizer, LambdaLR(optimizer, factor)


def attach_scheduler(optimizer: torch.optim.Optimizer, scheduler: LambdaLR) -> RemovableHandle:
    """Step ``scheduler`` after every ``optimizer.step()``; ``.remove()`` the returned handle to stop."""
    return optimizer.register_step_post_hook(lambda *_: scheduler.step())


def _check_schedule(steps: int, schedule: str, warmup_steps: int) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is not one of {', '.join(SCHEDULES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: expected a whole number >= 1")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps={warmup_steps!r}: expected a whole number >= 0")
    if warmup_steps > steps:
        raise ValueError(f"warmup_steps={warmup_steps} is more than steps={steps}: the lr would never reach its value")

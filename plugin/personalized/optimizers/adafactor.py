from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..base import NeededWhen, PersonalizedOptimizer, float32_zeros, hyperparameters
from ..blocks import Scalar, add_scaled_, item_ndim, rms_by_norm, saturate_
from ..validation import NON_NEGATIVE, Flag, Number, Numbers, Rule

#: The state keys of the second moment (:func:`second_moment_state`): full, or factored for matrices.
SECOND_MOMENT_KEYS = frozenset({"exp_avg_sq", "exp_avg_sq_row", "exp_avg_sq_col"})

#: The relative step is ``min(RELATIVE_STEP_LR, 1/sqrt(t))``: this lr for the first 10,000 steps.
RELATIVE_STEP_LR = 1e-2


def second_moment_state(p: Tensor) -> dict[str, Tensor]:
    """Adafactor's float32 second-moment state: row and column EMAs for tensors with
    at least two dimensions (about ``4 * (rows + cols)`` bytes), a full EMA otherwise."""
    if item_ndim(p) >= 2:
        return {
            "exp_avg_sq_row": p.new_zeros(p.shape[:-1], dtype=torch.float32),
            "exp_avg_sq_col": p.new_zeros(p.shape[:-2] + p.shape[-1:], dtype=torch.float32),
        }
    return {"exp_avg_sq": torch.zeros_like(p, dtype=torch.float32)}


def adafactor_normalize_(state: dict[str, Tensor], grad: Tensor, beta2: Scalar, eps: float) -> Tensor:
    """Fold ``grad² + eps`` into the (factored) second moment and return ``grad / sqrt(v)``
    (EnhancedAdafactor and Automagic).

    The moments saturate (:func:`personalized.blocks.saturate_`) where ``grad²`` overflows
    float32 (gradients beyond about 1.8e19), so the update stays finite.
    """
    squared = grad.square() + eps
    if "exp_avg_sq_row" in state:
        row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
        saturate_(add_scaled_(row.mul_(beta2), squared.mean(dim=-1), 1 - beta2), row.shape[-1])
        saturate_(add_scaled_(col.mul_(beta2), squared.mean(dim=-2), 1 - beta2))
        row_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
        return (row_factor * col.unsqueeze(-2).rsqrt()).mul_(grad)
    full = state["exp_avg_sq"]
    saturate_(add_scaled_(full.mul_(beta2), squared, 1 - beta2))
    return full.rsqrt().mul_(grad)


class EnhancedAdafactor(PersonalizedOptimizer):
    """EnhancedAdafactor: Hugging Face Adafactor (factored second moment) with stochastic rounding for bf16.

    Memory-light: matrices keep only row and column averages of g², so the
    state is a few bytes per row and column instead of 8 bytes per element.

    Args:
        params: parameters or param-group dicts.
        lr: fixed step size; requires ``relative_step=False``. ``None`` uses the
            relative step ``min(1e-2, 1/sqrt(t))`` (or a warm-up with ``warmup_init``).
        eps: ``(eps_g, eps_scale)``: added to g², and the smallest parameter
            RMS used with ``scale_parameter``.
        clip_threshold: cap on the RMS of the normalised update.
        decay_rate: the second-moment beta is ``1 - t^decay_rate`` (must be <= 0).
        beta1: momentum on the (lr-scaled) update; None saves 4 bytes per element.
        weight_decay: decoupled decay, scaled by the step size.
        scale_parameter: multiply the step size by the parameter's RMS.
        relative_step: compute the step size from the step count (no ``lr``).
        warmup_init: with ``relative_step``, warm the step size up from 0.

    For a plain fixed-lr setup (the Chroma README's "minimal" config) use
    ``lr=1e-4, scale_parameter=False, relative_step=False``.

    Differences from the original / known quirks:
        * Kept: with ``beta1`` the momentum integrates the lr-scaled update,
          so lr changes are smoothed.
        * Fixed: the closure now runs with grad enabled (HF ran it under
          ``no_grad``, so a closure calling ``backward()`` failed).
        * Fixed: no host synchronisation (the parameter-scale ``max`` is a clamp).
        * Changed: float16 parameters are written back with stochastic rounding
          (the original rounded them to nearest); state stays float32.
        * Changed: ``lr=None`` with ``relative_step=False`` is rejected at
          construction instead of failing inside ``step()``.
        * Fixed: gradients above about 1.8e19 (whose squares overflow
          float32, see the README's NaN section) turned the weights NaN. The
          second moments now saturate below float32's largest value
          (``blocks.saturate_``), which leaves every smaller value as it was.
    """

    state_tensors: ClassVar[Mapping[str, NeededWhen]] = {
        "exp_avg": NeededWhen(lambda group: group["beta1"] is not None, float32_zeros)
    }
    scalar_state_keys: ClassVar[frozenset[str]] = frozenset({"RMS"})
    #: The second moment's shape depends on the parameter: ``_update`` creates it.
    extra_state_keys: ClassVar[frozenset[str]] = SECOND_MOMENT_KEYS

    own_rules: ClassVar[Mapping[str, Rule]] = {
        "lr": Number(0.0, optional=True),
        "eps": Numbers(2, NON_NEGATIVE),
        "decay_rate": Number(high=0.0),
        "beta1": Number(0.0, 1.0, high_open=True, optional=True),
        "scale_parameter": Flag(),
        "relative_step": Flag(),
        "warmup_init": Flag(),
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | None = None,
        eps: tuple[float, float] = (1e-30, 1e-3),
        clip_threshold: float = 1.0,
        decay_rate: float = -0.8,
        beta1: float | None = None,
        weight_decay: float = 0.0,
        scale_parameter: bool = True,
        relative_step: bool = True,
        warmup_init: bool = False,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    @classmethod
    def _check_group(cls, where: str, group: dict[str, Any]) -> None:
        owner = cls.__name__
        if group["lr"] is not None and group["relative_step"]:
            raise ValueError(
                f"{owner}: {where}: lr={group['lr']!r} with relative_step=True is not allowed; "
                "set relative_step=False to use a fixed lr, or lr=None for the relative step"
            )
        if group["lr"] is None and not group["relative_step"]:
            raise ValueError(f"{owner}: {where}: lr=None needs relative_step=True; give a number for lr")
        if group["warmup_init"] and not group["relative_step"]:
            raise ValueError(f"{owner}: {where}: warmup_init=True needs relative_step=True")

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        size = group["lr"]
        if group["relative_step"]:
            size = min(1e-6 * step if group["warmup_init"] else RELATIVE_STEP_LR, 1.0 / math.sqrt(step))
        return {"size": size, "beta2": 1.0 - math.pow(step, group["decay_rate"])}

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        if "exp_avg_sq" not in state and "exp_avg_sq_row" not in state:
            state.update(second_moment_state(p))
        state["RMS"] = rms_by_norm(p)
        step_size = state["RMS"].clamp(min=group["eps"][1]) * s["size"] if group["scale_parameter"] else s["size"]

        update = adafactor_normalize_(state, grad, s["beta2"], group["eps"][0])
        update.div_((rms_by_norm(update) / group["clip_threshold"]).clamp_(min=1.0))
        update.mul_(step_size)
        if group["beta1"] is not None:
            update = state["exp_avg"].mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
        if group["weight_decay"] != 0:
            p.sub_(p * (group["weight_decay"] * step_size))
        p.sub_(update)

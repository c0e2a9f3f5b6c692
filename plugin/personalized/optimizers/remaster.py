from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..base import StateInit, hyperparameters, zeros
from ..blocks import ATAN2_SCALE, add_scaled_, cautious_floor, item_norm
from .atan2_adopt import Atan2AdoptFamily


class REMASTER(Atan2AdoptFamily):
    """REMASTER: atan2-ADOPT with Compass amplification, OrthoGrad and gradient norm matching.

    The gradient is RMS-capped, matched in norm to its EMA, amplified by that
    EMA and divided through ``atan2`` by the previous step's EMA of the
    squared result, so no element moves by more than ``2 * lr`` before weight
    decay (exactly ``2 * lr`` at the first step).

    Args:
        params: parameters or param-group dicts.
        lr: step size; every element moves by at most ``2 * lr``.
        betas: ``(beta1, beta2)``: beta1 for the gradient EMA, beta2 for the
            squared EMA (through the soft beta).
        weight_decay: weight decay added to the update, fading as
            ``weight_decay_rate ** t``.
        weight_decay_rate: per-step fading of the weight decay (1 keeps it constant).
        amp: Compass amplification of the EMA added to the gradient.
        reset_interval: reset the EMAs every this many steps (0: never); only
            useful for runs of at least a hundred steps.
        reset_increment: each reset lengthens the next interval by this much.
        orthograd: remove the gradient component along the weights (matrices
            and convolutions). On by default.
        cautious_min: 1 turns the cautious mask off, 0 applies it fully
            (components whose sign disagrees with the gradient are dropped).
        stochastic_fp: stochastic rounding for bf16/fp16 parameters and state.

    Differences from the original / known quirks:
        * Kept: the denominator is "bias-corrected" although the soft beta
          already debiases it, which inflates it by about 1.26x early on.
        * Kept: the step counter is per parameter (the diffusion-chroma copy);
          with resets it counts the steps since the last reset.
        * Fixed: the original modified ``p.grad`` in place (OrthoGrad, RMS cap,
          norm matching); the caller's gradient is now left alone.
        * Fixed: ``param_groups.index(group)`` crashed with two groups of the
          same size; groups are no longer compared.
        * Fixed: OrthoGrad works on non-contiguous parameters, and nothing
          synchronises with the host (the norm-matching ``if`` is a select).
        * Changed: float16 parameters round stochastically on float16's grid.
        * Fixed: gradients above about 1e19 (whose squares overflow float32,
          see the README's NaN section) turned the weights NaN. Gradient
          elements are now limited to ``±sqrt(3.4e38 / (16 n))`` for an
          n-element tensor first (``blocks.square_safe``); smaller ones, so
          every normal run, are untouched.
    """

    state_tensors: ClassVar[Mapping[str, StateInit]] = {"ema": zeros, "ema_squared": zeros}
    orthograd_floor: ClassVar[float] = 1e-3
    #: The original applies the ``atan2`` quotient, decay included, times 4/pi.
    step_scale: ClassVar[float] = ATAN2_SCALE

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.95, 0.9999),
        weight_decay: float = 0.0,
        weight_decay_rate: float = 0.998,
        amp: float = 5.0,
        reset_interval: int = 0,
        reset_increment: int = 0,
        orthograd: bool = True,
        cautious_min: float = 1.0,
        stochastic_fp: bool = True,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    def _fold(self, grad: Tensor, ema: Tensor, group: dict[str, Any]) -> Tensor:
        """Match the gradient's norm to the EMA's, fold it in, then mask the EMA cautiously."""
        beta1 = group["betas"][0]
        norm_ratio = ATAN2_SCALE * torch.atan2(item_norm(grad), item_norm(ema))
        grad = torch.where(norm_ratio > 1e-6, grad / norm_ratio, grad)
        ema.mul_(beta1).add_(grad, alpha=1 - beta1)
        ema.mul_(cautious_floor(grad, ema, floor=beta1, mean_floor=1e-3))
        return grad

    def _finish(
        self, update: Tensor, p: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]
    ) -> Tensor:
        """Plus the weight decay (applied with the quotient, times 4/pi)."""
        if group["weight_decay"] != 0:
            add_scaled_(update, p, s["decay"])
        return update

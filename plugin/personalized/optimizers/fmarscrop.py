from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..base import NeededWhen, PersonalizedOptimizer, StateInit, hyperparameters, negative_grad, ones, zeros
from ..blocks import (
    add_scaled_,
    cautious_mask,
    centralize,
    clamped_square_ema_,
    compass,
    difference_fisher_base_,
    farms_scalars,
    mars_correction,
    moment_centralize,
    rms_clip_relative,
)
from ..validation import POSITIVE, Rule


class FMARSCrop(PersonalizedOptimizer):
    """FMARSCrop: FARMSCropV2 with MARS variance reduction and momentum centralisation.

    The gradient is corrected with MARS (``g + beta1/2 * (g - g_prev)``),
    norm-clipped, then preconditioned like FARMSCropV2.

    Args:
        params: parameters or param-group dicts.
        lr: step size.
        betas: ``(beta1, beta2)``: beta1 sets the MARS strength and the EMA of
            squared gradient changes; beta2 the Fisher EMA.
        eps: lower bound of the square roots of the Fisher EMAs (must be > 0).
        weight_decay: decoupled, preconditioned weight decay.
        centralization: strength of centralisation of the full step
            (matrices and convolutions only).
        moment_centralization: non-zero subtracts the momentum's mean before
            amplification (the value itself is not used).
        diff_mult: > 0 enables the gradient-difference preconditioner (one more
            state tensor). With a low beta1, disable it if training NaNs early.
        momentum_beta: EMA beta of the momentum.
        momentum_lambda: the momentum is amplified by ``t^momentum_lambda``.
        clip: limit of the corrected gradient's L2 norm and of the relative RMS
            clips. ``0`` disables clipping.

    Differences from the original / known quirks:
        * Kept: the natural gradient is divided by the difference base twice
          (the original reused the clipped tensor in place).
        * Kept: the MARS gamma is hard-wired to ``(1 - beta1) / 2``; use
          FMARSCrop_ExMachina to change it.
        * Kept: ``prev_grad`` is stored even with ``diff_mult=0``.
        * Fixed: ``clip=0`` raised ZeroDivisionError; it now disables clipping.
        * Fixed: no host synchronisation (the norm clip is a clamp, not an ``if``).
        * Changed: bf16/fp16 parameters are updated in float32 and written
          back with stochastic rounding.
    """

    own_rules: ClassVar[Mapping[str, Rule]] = {"eps": POSITIVE}
    state_tensors: ClassVar[Mapping[str, StateInit | NeededWhen]] = {
        "momentum": zeros,
        "fim": ones,
        "prev_grad": negative_grad,
        "grad_diff_fim": NeededWhen(lambda group: group["diff_mult"] > 0, ones),
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.999, 0.9999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        centralization: float = 0.0,
        moment_centralization: float = 1.0,
        diff_mult: float = 1.0,
        momentum_beta: float = 0.9999,
        momentum_lambda: float = 0.25,
        clip: float = 1.0,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        return farms_scalars(group, step)

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        gamma = (1 - group["betas"][0]) / 2
        fmars_update(p, grad, state, group, s, gamma=gamma, floor=group["eps"], divide_twice=True, cautious=False)


def fmars_update(
    p: Tensor,
    grad: Tensor,
    state: dict[str, Any],
    group: dict[str, Any],
    s: dict[str, Any],
    *,
    gamma: float,
    floor: float | Tensor,
    divide_twice: bool,
    cautious: bool,
) -> None:
    """The FMARSCrop family's update, for FMARSCrop and FMARSCrop_ExMachina.

    ``gamma`` is the MARS strength, ``floor`` the lower bound of the Fisher
    square roots; ``divide_twice`` reproduces FMARSCrop's double division of
    the natural gradient by the difference base; ``cautious`` applies
    ExMachina's mask. ``s`` holds :func:`personalized.blocks.farms_scalars`.
    """
    beta1 = group["betas"][0]
    clip, momentum_beta = group["clip"], group["momentum_beta"]
    fim, momentum = state["fim"], state["momentum"]
    bound = s["bound"]

    grad_change = grad + state["prev_grad"]
    corrected = mars_correction(grad, grad_change, gamma, beta1, clip)
    diff_base: Tensor | float = 1.0
    if group["diff_mult"] > 0:
        diff_base = difference_fisher_base_(
            state["grad_diff_fim"], grad_change, group["diff_mult"], beta1, clip, bound, floor
        )
    approx = rms_clip_relative(corrected / diff_base, clip)
    fim_base = fim.sqrt().clamp_(min=floor)
    grad_nat = rms_clip_relative((approx if divide_twice else corrected) / fim_base / diff_base, clip)
    amplified = compass(grad_nat, moment_centralize(momentum, group["moment_centralization"]), s["amplification"])
    full_step = centralize(amplified, group["centralization"])

    if group["weight_decay"] != 0:
        add_scaled_(p, rms_clip_relative(p / fim_base / diff_base, clip), s["neg_decay"])
    if cautious:
        full_step = full_step * cautious_mask(full_step, corrected)
    add_scaled_(p, full_step, s["neg_lr"])

    clamped_square_ema_(fim, s["fim_beta"], approx, bound)
    momentum.mul_(momentum_beta).add_(grad_nat, alpha=1 - momentum_beta)
    state["prev_grad"].copy_(grad).neg_()

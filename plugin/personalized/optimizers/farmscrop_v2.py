from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..base import NeededWhen, PersonalizedOptimizer, StateInit, hyperparameters, negative_grad, ones, zeros
from ..blocks import (
    add_scaled_,
    centralize,
    clamped_square_ema_,
    compass,
    difference_fisher_base_,
    farms_scalars,
    rms_clip_relative,
)
from ..validation import POSITIVE, Rule


class FARMSCropV2(PersonalizedOptimizer):
    """FARMSCropV2 (V2.1): ADOPT-placed Fisher RMS with t^lambda Compass amplification and clipping.

    Denominators come from the previous step's Fisher EMAs (ADOPT placement),
    the momentum is folded in after the step, and every normalised quantity
    is RMS-clipped relative to ``clip``.

    Args:
        params: parameters or param-group dicts.
        lr: step size.
        betas: ``(beta1, beta2)``: beta1 for the EMA of squared gradient
            changes, beta2 for the Fisher EMA (through ``sqrt(soft beta)``).
        eps: lower bound of the square roots of the Fisher EMAs (must be > 0).
        weight_decay: decoupled, preconditioned weight decay.
        centralization: strength of centralisation of the full step
            (matrices and convolutions only).
        diff_mult: > 0 enables the gradient-difference preconditioner and its
            two state tensors; set 0 to save memory or on early NaN.
        momentum_beta: EMA beta of the momentum. For noisy data keep it slow
            (0.9999); 0.9 reacts faster on clean data.
        momentum_lambda: the momentum is amplified by ``t^momentum_lambda``.
        clip: RMS limit of the normalised gradient, the gradient change and
            the weight term. ``0`` disables clipping.

    Differences from the original / known quirks:
        * Kept: the original wrote the clipped ``g / dfb`` back into ``p.grad``
          and reused it, so the natural gradient is divided by the
          difference base twice and the next gradient change is taken against
          the normalised gradient. The math is reproduced exactly, but the
          caller's ``p.grad`` is no longer modified.
        * Kept: the amplification ``t^lambda`` grows without bound
          (about 10x at step 10^4).
        * Fixed: ``clip=0`` raised ZeroDivisionError; it now disables clipping.
        * Fixed: turning ``diff_mult`` on after the first step raised
          KeyError; the missing state now starts as at step 1.
        * Changed: bf16/fp16 parameters are updated in float32 and written
          back with stochastic rounding.
    """

    own_rules: ClassVar[Mapping[str, Rule]] = {"eps": POSITIVE}
    state_tensors: ClassVar[Mapping[str, StateInit | NeededWhen]] = {
        "fim": ones,
        "momentum": zeros,
        "previous_grad": NeededWhen(lambda group: group["diff_mult"] > 0, negative_grad),
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
        beta1 = group["betas"][0]
        eps, clip, momentum_beta = group["eps"], group["clip"], group["momentum_beta"]
        fim, momentum = state["fim"], state["momentum"]
        bound = s["bound"]

        diff_base: Tensor | float = 1.0
        if group["diff_mult"] > 0:
            diff_base = difference_fisher_base_(
                state["grad_diff_fim"], grad + state["previous_grad"], group["diff_mult"], beta1, clip, bound, eps
            )
        approx = rms_clip_relative(grad / diff_base, clip)
        fim_base = fim.sqrt().clamp_(min=eps)
        grad_nat = rms_clip_relative(approx / fim_base / diff_base, clip)
        full_step = centralize(compass(grad_nat, momentum, s["amplification"]), group["centralization"])

        if group["weight_decay"] != 0:
            add_scaled_(p, rms_clip_relative(p / fim_base / diff_base, clip), s["neg_decay"])
        add_scaled_(p, full_step, s["neg_lr"])

        clamped_square_ema_(fim, s["fim_beta"], approx, bound)
        momentum.mul_(momentum_beta).add_(grad_nat, alpha=1 - momentum_beta)
        if group["diff_mult"] > 0:
            state["previous_grad"].copy_(approx).neg_()

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..base import PersonalizedOptimizer, StateInit, hyperparameters, ones, zeros
from ..blocks import addcdiv_scaled_, addcmul_scaled_, centralize, compass, rms_clip_scaled, soft_beta
from ..validation import NON_NEGATIVE, Rule


class FCompass(PersonalizedOptimizer):
    """Fisher Compass: FAdam-style Fisher preconditioning with Compass momentum amplification.

    The gradient is centralised, divided by the square root of a debiased
    EMA of g² (the diagonal Fisher information), RMS-clipped, amplified by
    its own momentum and finally normalised by an AMSGrad maximum of the
    squared step.

    Args:
        params: parameters or param-group dicts.
        lr: step size. Early steps are much larger than ``lr`` (see quirks).
        betas: ``(beta1, beta2)``. beta1 smooths the momentum; beta2 sets the
            Fisher EMA and the AMSGrad EMA. If training turns NaN almost at
            once, lower them to ``(0.9, 0.99)`` (the RVC advice).
        amp_fac: Compass amplification: the step is ``g_nat + amp_fac * momentum``.
        eps: added to the square roots and RMS values.
        weight_decay: weight of the Fisher-preconditioned weight term that is
            added to the step (coupled decay).
        clip: multiplier applied after capping the RMS of the natural gradient
            (and of the weight term) at 1; values > 1 amplify. ``0`` disables
            both clips.
        centralization: strength of gradient centralisation (matrices and
            convolutions only); set 0 if training is unstable.

    Differences from the original / known quirks:
        * Kept: the AMSGrad EMA is bias-corrected with the soft beta instead of
          ``1 - beta2^t``, so the first step moves every element by about
          ``lr / sqrt(1 - beta2)`` (31.6x lr with the default betas, 10x with
          ``(0.9, 0.99)``), and later early steps by several lr.
        * Kept: ``clip`` multiplies even when the RMS is below 1.
        * Fixed: the original centralised ``p.grad`` in place; the caller's
          gradient is no longer modified.
        * Fixed: no host synchronisation (``max(1, rms)`` became a clamp).
        * Changed: bf16/fp16 parameters are updated in float32 and written
          back with stochastic rounding (the original did the math in half
          precision). The weight term is skipped when ``weight_decay == 0``
          (identical result, but it cannot turn an infinity into NaN).
        * Kept: gradients above about 1.8e19 square to inf in float32; the
          weights stay finite (as with torch's AdamW), but the Fisher EMA of
          those elements holds inf and they stop moving (README, NaN section).
    """

    own_rules: ClassVar[Mapping[str, Rule]] = {"amp_fac": NON_NEGATIVE}
    state_tensors: ClassVar[Mapping[str, StateInit]] = {"momentum": zeros, "max_ema_squared": zeros, "fim": ones}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.99, 0.999),
        amp_fac: float = 2.0,
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        clip: float = 1.0,
        centralization: float = 1.0,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        fim_beta = soft_beta(group["betas"][1], step)
        return {
            "fim_beta": fim_beta,
            "fim_weight": 1 - fim_beta,
            "bias_correction": math.sqrt(1 - fim_beta**step),
            "neg_lr": -group["lr"],
        }

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        eps, clip = group["eps"], group["clip"]
        fim, momentum, max_ema_sq = state["fim"], state["momentum"], state["max_ema_squared"]

        grad = centralize(grad, group["centralization"])
        addcmul_scaled_(fim.mul_(s["fim_beta"]), grad, grad, s["fim_weight"])
        fim_base = fim.sqrt().add_(eps)
        grad_nat = rms_clip_scaled(grad / fim_base, clip, eps)
        momentum.mul_(beta1).add_(grad_nat, alpha=1 - beta1)
        full_step = compass(grad_nat, momentum, group["amp_fac"])
        if group["weight_decay"] != 0:
            weight_term = rms_clip_scaled(p / fim_base, clip, eps)
            full_step.add_(weight_term, alpha=group["weight_decay"])

        max_ema_sq.copy_(max_ema_sq.maximum(max_ema_sq * beta2 + (1 - beta2) * full_step.square()))
        denom = max_ema_sq.sqrt().div_(s["bias_correction"]).add_(eps)
        addcdiv_scaled_(p, full_step, denom, s["neg_lr"])

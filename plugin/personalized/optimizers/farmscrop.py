from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..base import PersonalizedOptimizer, StateInit, hyperparameters, ones, zeros
from ..blocks import add_scaled_, addcmul_scaled_, centralize, compass, rms_cap, soft_beta, square_safe
from ..validation import NON_NEGATIVE, Rule


class FARMSCrop(PersonalizedOptimizer):
    """FARMSCrop (V1): Fisher RMS with a gradient-difference preconditioner and Compass momentum.

    A Fisher EMA of the gradient normalised by an EMA of squared gradient
    changes preconditions the step; a very slow momentum amplifies it.

    Args:
        params: parameters or param-group dicts.
        lr: step size.
        betas: ``(beta1, beta2)``: beta1 for the EMA of squared gradient
            changes, beta2 for the Fisher EMA (through ``sqrt(soft beta)``).
        eps: added to the square roots.
        weight_decay: weight of the preconditioned weight term added to the step.
        centralization: strength of centralisation of the natural gradient
            (matrices and convolutions only).
        diff_mult: multiplier on the gradient change. 0 does not remove state.
        momentum_beta: EMA beta of the Compass momentum. Values near 1 suit
            noisy data but the amplification then takes thousands of steps.
        momentum_amp: Compass amplification: step = g_nat + momentum_amp * momentum.

    Differences from the original / known quirks:
        * Kept: with ``diff_mult=0`` the difference EMA decays towards 0 over
          very long runs and its square root towards ``eps``.
        * Kept: the momentum has no bias correction, so the amplification
          ramps up slowly.
        * Dropped: an unused ``bias_correction_sqrt``.
        * Fixed: gradients above about 1e19 (whose squares overflow float32,
          see the README's NaN section) turned the weights NaN. The gradient
          change and the terms whose RMS is capped are now limited to
          ``±sqrt(3.4e38 / (16 n))`` for an n-element tensor first
          (``blocks.square_safe``); smaller values, so every normal run, are
          untouched.
        * Changed: bf16/fp16 parameters are updated in float32 and written
          back with stochastic rounding.
    """

    own_rules: ClassVar[Mapping[str, Rule]] = {"momentum_amp": NON_NEGATIVE}
    state_tensors: ClassVar[Mapping[str, StateInit]] = {
        "fim": ones,
        "momentum": zeros,
        "previous_grad": zeros,
        "grad_diff_fim": ones,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.999, 0.9999),
        eps: float = 1e-8,
        weight_decay: float = 1e-6,
        centralization: float = 1.0,
        diff_mult: float = 1.0,
        momentum_beta: float = 0.9999,
        momentum_amp: float = 5.0,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        fim_beta = soft_beta(group["betas"][1], step) ** 0.5
        return {"fim_beta": fim_beta, "fim_weight": 1 - fim_beta, "neg_lr": -group["lr"]}

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        beta1 = group["betas"][0]
        eps, momentum_beta = group["eps"], group["momentum_beta"]
        fim, momentum = state["fim"], state["momentum"]
        previous_grad, diff_fim = state["previous_grad"], state["grad_diff_fim"]

        grad_diff = square_safe((grad + previous_grad) * group["diff_mult"])
        diff_fim.mul_(beta1).addcmul_(grad_diff, grad_diff, value=1 - beta1)
        diff_base = diff_fim.sqrt().add_(eps)

        approx = rms_cap(grad / diff_base)
        addcmul_scaled_(fim.mul_(s["fim_beta"]), approx, approx, s["fim_weight"])
        fim_base = fim.sqrt().add_(eps)

        grad_nat = centralize(rms_cap(grad / fim_base * diff_base), group["centralization"])
        momentum.mul_(momentum_beta).add_(grad_nat, alpha=1 - momentum_beta)
        full_step = compass(grad_nat, momentum, group["momentum_amp"])
        if group["weight_decay"] != 0:
            full_step.add_(rms_cap(p / fim_base * diff_base), alpha=group["weight_decay"])
        add_scaled_(p, full_step, s["neg_lr"])
        previous_grad.copy_(grad).neg_()

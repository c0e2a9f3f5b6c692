from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..base import NeededWhen, PersonalizedOptimizer, StateInit, hyperparameters, negative_grad, ones, zeros
from ..blocks import add_scaled_, addcmul_scaled_, centralize, rms_clip_scaled, soft_beta
from ..validation import BETA, NON_NEGATIVE, Rule


class FishMonger(PersonalizedOptimizer):
    """FishMonger: two stacked Fisher preconditioners with a gradient-difference term.

    The momentum is normalised by a Fisher EMA of itself, a slow momentum of
    that is normalised again, and the raw gradient is divided by both
    bases. An EMA of the gradient change can be subtracted (``diff_amp``).

    Args:
        params: parameters or param-group dicts.
        lr: step size; the first steps are larger (see quirks).
        betas: ``(beta1, beta2, beta3)``: beta1 for both momenta, beta2 for the
            first Fisher EMA, beta3 for the second. The stock values are fine.
        eps: added to the square roots and RMS values.
        weight_decay: weight of the preconditioned weight term added to the step.
        clip: multiplier applied after capping each term's RMS at 1 (> 1
            amplifies). ``0`` disables the clips.
        centralization: strength of centralisation of the final step
            (matrices and convolutions only).
        diff_amp: weight of the smoothed gradient change; set 0 if it causes
            trouble (saves two state tensors).
        diff_amp_beta: EMA beta of the gradient change.

    Differences from the original / known quirks:
        * Kept: the lr is divided by ``1 - beta1^t`` although the step is
          already normalised, so the first step is 10x lr, the second 5.3x...
        * Kept: the gradient-change term is subtracted, so parameters move
          with the smoothed change of the gradient.
        * Fixed: ``clip <= 0`` was silently replaced by 1.0; ``clip=0`` now
          disables clipping, as the original README describes (pass
          ``clip=1.0`` for the original behaviour).
        * Fixed: turning ``diff_amp`` on after the first step raised KeyError;
          the missing state now starts as at step 1.
        * Fixed: no host synchronisation. The weight term is skipped when
          ``weight_decay == 0`` (identical result).
        * Changed: bf16/fp16 parameters are updated in float32 and written
          back with stochastic rounding.
    """

    own_rules: ClassVar[Mapping[str, Rule]] = {"diff_amp": NON_NEGATIVE, "diff_amp_beta": BETA}
    state_tensors: ClassVar[Mapping[str, StateInit | NeededWhen]] = {
        "momentum": zeros,
        "momentum_slow": zeros,
        "momentum_slow_squared": zeros,
        "fim": ones,
        "ema_diff": NeededWhen(lambda group: group["diff_amp"] != 0, zeros),
        "previous_grad": NeededWhen(lambda group: group["diff_amp"] != 0, negative_grad),
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.99, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        clip: float = 1.0,
        centralization: float = 1.0,
        diff_amp: float = 1.0,
        diff_amp_beta: float = 0.999,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        beta1, beta2, beta3 = group["betas"]
        fim_beta, slow_beta = soft_beta(beta2, step), soft_beta(beta3, step)
        return {
            "fim_beta": fim_beta,
            "fim_weight": 1 - fim_beta,
            "slow_beta": slow_beta,
            "slow_weight": 1 - slow_beta,
            "step_size": -group["lr"] / (1 - beta1**step),
        }

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        beta1 = group["betas"][0]
        eps, clip, diff_amp = group["eps"], group["clip"], group["diff_amp"]
        momentum, fim = state["momentum"], state["fim"]
        slow, slow_sq = state["momentum_slow"], state["momentum_slow_squared"]

        if diff_amp:
            ema_diff, previous_grad = state["ema_diff"], state["previous_grad"]
            beta_d = group["diff_amp_beta"]
            ema_diff.mul_(beta_d).add_(grad + previous_grad, alpha=1 - beta_d)
            previous_grad.copy_(grad).neg_()

        momentum.mul_(beta1).add_(grad, alpha=1 - beta1)
        addcmul_scaled_(fim.mul_(s["fim_beta"]), momentum, momentum, s["fim_weight"])
        fim_base = fim.sqrt().add_(eps)
        grad_nat = rms_clip_scaled(momentum / fim_base, clip, eps)

        slow.mul_(beta1).add_(grad_nat, alpha=1 - beta1)
        addcmul_scaled_(slow_sq.mul_(s["slow_beta"]), slow, slow, s["slow_weight"])
        slow_base = slow_sq.sqrt().add_(eps)

        full_step = rms_clip_scaled(grad / fim_base / slow_base, clip, eps)
        if group["weight_decay"] != 0:
            weight_term = rms_clip_scaled(p / fim_base / slow_base, clip, eps)
            full_step.add_(weight_term, alpha=group["weight_decay"])
        if diff_amp:
            full_step.sub_(rms_clip_scaled(ema_diff / fim_base / slow_base, clip, eps), alpha=diff_amp)
        full_step = centralize(full_step, group["centralization"])
        add_scaled_(p, full_step, s["step_size"])

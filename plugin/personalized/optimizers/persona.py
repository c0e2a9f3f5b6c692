from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..base import NeededWhen, PersonalizedOptimizer, StateInit, grad_squared, hyperparameters, zeros
from ..blocks import ATAN2_SCALE, add_scaled_, cautious_floor, item_ndim, orthogonalize_guarded, square_safe
from ..resets import PERSONA_CLOCK_KEYS, persona_clock, reset_now
from ..validation import NON_NEGATIVE, Rule


class PersonaOptimizer(PersonalizedOptimizer):
    """PersonaOptimizer: atan2-Adam with momentum amplification, an optional variance "focus boost" and resets.

    An Adam-like step taken through ``atan2`` (bounded by ``2 * lr`` per
    element before boosts and decay), whose second moment starts at g², with
    optional OrthoGrad, cautious masking, state resets and weight constraining.

    Args:
        params: parameters or param-group dicts.
        lr: step size.
        betas: ``(beta1, beta2)`` of the gradient EMA and the squared EMA.
        weight_decay: weight decay added to the update (ignored with ``constrain``).
        weight_decay_rate: the decay fades as ``weight_decay_rate ** (t - 1)``; 1 keeps it.
        amp_factor: weight of the bias-corrected momentum added to the gradient.
        focus_boost: boost updates where the gradient variance is high
            (0 off; 0.01 to 0.5 if used). Costs one more state tensor.
        focus_eps: stabiliser of the variance normalisation.
        reset_interval: reset the state every this many steps (0: never).
        reset_increment: each reset lengthens the next interval by this much.
        orthograd: remove the gradient component along the weights (matrices
            and convolutions).
        constrain: shrink the weights by ``(1 - lr)`` every step instead of
            weight decay.
        cautious_min: 1 turns the cautious mask off, 0 applies it fully.
        stochastic_fp: stochastic rounding for bf16/fp16 parameters and state.
        eps: stabiliser of the denominators.

    Differences from the original / known quirks:
        * Kept: the second moment starts at g², so the first step is about
          ``1.41 * lr`` per element with ``amp_factor=1``.
        * Kept: ``constrain`` shrinks the weights whatever ``weight_decay`` is.
        * Kept: OrthoGrad uses the constructor's ``eps``, not the group's.
        * Fixed: OrthoGrad no longer writes into ``p.grad``; no host
          synchronisation (its ``if`` tests became tensor selects).
        * Changed: ``ema_grad_var`` is written back with stochastic rounding
          like the other state (the original rounded it to nearest), and
          float16 rounds stochastically on float16's grid.
        * Fixed: gradients above about 1e19 (whose squares overflow float32,
          see the README's NaN section) turned the weights NaN with OrthoGrad or the focus boost. Gradient
          elements are now limited to ``±sqrt(3.4e38 / (16 n))`` for an
          n-element tensor first (``blocks.square_safe``); smaller ones, so
          every normal run, are untouched.
    """

    own_rules: ClassVar[Mapping[str, Rule]] = {
        "amp_factor": NON_NEGATIVE,
        "focus_boost": NON_NEGATIVE,
        "focus_eps": NON_NEGATIVE,
    }
    state_tensors: ClassVar[Mapping[str, StateInit | NeededWhen]] = {
        "ema": zeros,
        "ema_squared": grad_squared,
        "ema_grad_var": NeededWhen(lambda group: group["focus_boost"] > 0, zeros),
    }
    extra_state_keys: ClassVar[frozenset[str]] = PERSONA_CLOCK_KEYS

    write_param_first: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.95, 0.999),
        weight_decay: float = 0.0,
        weight_decay_rate: float = 1.0,
        amp_factor: float = 1.0,
        focus_boost: float = 0.0,
        focus_eps: float = 1e-7,
        reset_interval: int = 0,
        reset_increment: int = 0,
        orthograd: bool = False,
        constrain: bool = False,
        cautious_min: float = 1.0,
        stochastic_fp: bool = True,
        eps: float = 1e-8,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    def _prepare_grad(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
        grad = square_safe(grad)
        if group["orthograd"] and item_ndim(p) >= 2:
            return orthogonalize_guarded(p, grad, self.defaults["eps"])
        return grad

    def _advance_step(self, state: dict[str, Any], group: dict[str, Any]) -> int:
        return persona_clock(state, group)

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        decay = group["weight_decay"] * group["weight_decay_rate"] ** (step - 1)
        return {
            "reset": reset_now(state, step, "times_reset"),
            "bias_correction": max(1 - beta1**step, eps),
            "denominator_eps": eps * max((1 - beta2**step) ** 0.5, eps),
            "decay": decay,
            "decay_on": decay > 0 and not group["constrain"],
            "lr": group["lr"],
            "neg_lr": -group["lr"],
        }

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        ema, ema_sq = state["ema"], state["ema_squared"]
        if s["reset"]:
            self._restart_state(p, grad, state)

        ema.mul_(beta1).add_(grad, alpha=1 - beta1)
        ema_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = ema_sq.sqrt().add_(s["denominator_eps"])
        update = grad.add(ema / s["bias_correction"], alpha=group["amp_factor"]).atan2(denom).mul_(ATAN2_SCALE)

        if group["focus_boost"] > 0:
            grad_var = state["ema_grad_var"]
            variance = (ema_sq - ema.square()).clamp_(min=0)
            grad_var.mul_(beta2).add_(variance, alpha=1 - beta2)
            relative = (variance / grad_var.sqrt().add_(group["focus_eps"])).clamp_(0, 5.0)
            update.mul_(1.0 + group["focus_boost"] * relative)
        if s["decay_on"]:
            add_scaled_(update, p, s["decay"])
        if group["cautious_min"] < 1:
            update.mul_(cautious_floor(update, grad, floor=group["cautious_min"], mean_floor=eps, strict=False))
        if group["constrain"]:
            p.mul_(1 - s["lr"])
        add_scaled_(p, update, s["neg_lr"])

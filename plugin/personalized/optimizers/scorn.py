from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..base import NeededWhen, PersonalizedOptimizer, StateInit, grad_squared, hyperparameters, zeros
from ..blocks import (
    ATAN2_SCALE,
    add_scaled_,
    addcmul_scaled_,
    cautious_floor,
    item_ndim,
    orthogonalize,
    rms,
    scion_init,
    scion_lmo,
    square_safe,
)
from ..resets import INTERVAL_CLOCK_KEYS, atan2_adopt_scalars, interval_clock
from ..validation import NON_NEGATIVE, Rule


class SCORN(PersonalizedOptimizer):
    """SCORN: REMASTER-style atan2 momentum on Scion's spectral LMO (Newton-Schulz orthogonalised gradients).

    The gradient is RMS-capped and mapped through Scion's "AUTO" norm
    (orthogonalised matrices and convolutions, normalised vectors), then
    amplified by its adaptively masked EMA and divided through ``atan2`` by the
    previous step's EMA of the squared result.

    Args:
        params: parameters or param-group dicts.
        lr: step size (the Chroma trainer's default config uses 1e-4).
        betas: ``(beta1, beta2)``: beta1 for the gradient EMA, beta2 for the
            squared EMA (through the soft beta).
        focus_ratio: FOCUS "valley attraction" towards the EMA of the weights
            (0 off; 0.1 typical, 0 to 0.2). Costs one more state tensor.
        weight_decay: weight decay added to the update, fading as
            ``weight_decay_rate ** t`` (ignored with ``constrain``).
        weight_decay_rate: per-step fading of the weight decay.
        amp: Compass amplification of the EMA added to the gradient.
        reset_interval: reset the EMAs every this many steps (0: never; >= 100 if used).
        reset_increment: each reset lengthens the next interval by this much.
        orthograd: remove the gradient component along the weights first.
        spectral_update_scale: multiplies the update; with ``constrain``,
            divide the lr by it.
        constrain: shrink the weights by ``(1 - lr)`` every step instead of
            weight decay.
        cautious_min: 1 turns the cautious mask off, 0 applies it fully.
        stochastic_fp: stochastic rounding for bf16/fp16 parameters and state.

    Differences from the original / known quirks:
        * Kept: ``ema_squared`` starts at the raw g² while the numerator is
          LMO-normalised, so the first denominator is on another scale.
        * Kept: convolution updates are scaled by ``1/k²`` and are much smaller.
        * Kept: the step counter is per parameter; with resets it counts the
          steps since the last reset.
        * Fixed: the original modified ``p.grad`` in place (OrthoGrad, RMS cap,
          normalisation); the caller's gradient is now left alone.
        * Fixed: ``param_groups.index(group)`` crashed with two groups of the
          same size; ``init()`` raised KeyError and now takes ``scale`` as an
          argument.
        * Changed: float16 parameters round stochastically on float16's grid.
        * Fixed: gradients above about 1e19 (whose squares overflow float32,
          see the README's NaN section) turned the weights NaN. Gradient
          elements are now limited to ``±sqrt(3.4e38 / (16 n))`` for an
          n-element tensor first (``blocks.square_safe``); smaller ones, so
          every normal run, are untouched.
    """

    own_rules: ClassVar[Mapping[str, Rule]] = {"focus_ratio": NON_NEGATIVE, "spectral_update_scale": NON_NEGATIVE}
    state_tensors: ClassVar[Mapping[str, StateInit | NeededWhen]] = {
        "ema": zeros,
        "ema_squared": grad_squared,
        "pbar": NeededWhen(lambda group: group["focus_ratio"] > 0, zeros),
    }
    extra_state_keys: ClassVar[frozenset[str]] = INTERVAL_CLOCK_KEYS

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.95, 0.9999),
        focus_ratio: float = 0.0,
        weight_decay: float = 0.0,
        weight_decay_rate: float = 0.998,
        amp: float = 5.0,
        reset_interval: int = 0,
        reset_increment: int = 0,
        orthograd: bool = False,
        spectral_update_scale: float = 1.0,
        constrain: bool = False,
        cautious_min: float = 1.0,
        stochastic_fp: bool = True,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    def _prepare_grad(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
        grad = square_safe(grad)
        if group["orthograd"] and item_ndim(p) >= 2:
            return orthogonalize(p, grad, norm_floor=1e-6)
        return grad

    def _advance_step(self, state: dict[str, Any], group: dict[str, Any]) -> int:
        return interval_clock(state, group)

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        return atan2_adopt_scalars(group, step, state)

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        beta1 = group["betas"][0]
        ema, ema_sq = state["ema"], state["ema_squared"]
        if s["reset"]:
            ema.zero_()
            ema_sq.copy_(grad.square())
            if "pbar" in state:
                state["pbar"].zero_()
        bias_correction = s["bias_correction"]

        grad = scion_lmo(grad / rms(grad).clamp(min=1.0))
        ema.mul_(cautious_floor(grad, ema, floor=beta1, mean_floor=1e-3))
        ema.mul_(beta1).add_(grad, alpha=1 - beta1)

        corrected = grad.add(ema / bias_correction, alpha=group["amp"])
        denom = ema_sq.sqrt() / s["sq_bias_correction"]
        addcmul_scaled_(ema_sq.mul_(s["sq_beta"]), corrected, corrected, s["sq_weight"])
        update = corrected.atan2(denom).mul_(ATAN2_SCALE).mul_(group["spectral_update_scale"])

        if group["focus_ratio"] > 0:
            pbar = state["pbar"]
            pbar.lerp_(p, 1 - beta1)
            update.add_(p - pbar / bias_correction, alpha=group["focus_ratio"])
        if group["weight_decay"] != 0 and not group["constrain"]:
            add_scaled_(update, p, s["decay"])
        if group["cautious_min"] != 1:
            update.mul_(cautious_floor(update, grad, floor=group["cautious_min"], mean_floor=1e-3))
        if group["constrain"]:
            p.mul_(1 - s["lr"])
        add_scaled_(p, update, s["neg_lr"])

    @torch.no_grad()
    def init(self, scale: float = 1.0) -> None:
        """Re-initialise every parameter the way Scion's "AUTO" norms expect, times ``scale``.

        Only for training from scratch: vectors become zeros, matrices scaled
        orthogonal matrices, convolutions scaled orthogonal kernels. Never call
        it on a pretrained model or a LoRA. (The original's ``init()`` read a
        ``scale`` key that no group has, and always raised KeyError.)
        """
        for group in self.param_groups:
            for p in group["params"]:
                p.copy_(scion_init(p) * scale)

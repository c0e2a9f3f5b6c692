"""The atan2-ADOPT family: REMASTER and SCORN, and the update they share.

Both take their step through ``atan2``: the RMS-capped gradient (REMASTER: matched in
norm to its EMA; SCORN: through Scion's spectral LMO) is amplified by its adaptively
masked EMA and divided, through ``atan2``, by the previous step's EMA of the squared
result (ADOPT placement), so the quotient, times 4/pi, lies within ``(-2, 2)`` for every
element before the other terms. Both count steps per parameter with optional periodic resets
(:func:`personalized.resets.interval_clock`), take OrthoGrad as an option, and scale
weight decay by ``weight_decay_rate ** t``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from ..base import PersonalizedOptimizer
from ..blocks import add_scaled_, addcmul_scaled_, cautious_floor, item_ndim, orthogonalize, rms, soft_beta, square_safe
from ..resets import INTERVAL_CLOCK_KEYS, interval_clock, reset_now


class Atan2AdoptFamily(PersonalizedOptimizer):
    """What REMASTER and SCORN share: OrthoGrad, the step clock with resets, the step's numbers
    and the update. A member says, through the hooks below, how the gradient feeds its EMA and
    what becomes of the ``atan2`` quotient before the cautious mask."""

    extra_state_keys: ClassVar[frozenset[str]] = INTERVAL_CLOCK_KEYS
    #: OrthoGrad's floor of the orthogonal part's norm (the originals differ).
    orthograd_floor: ClassVar[float]
    #: The factor the update is applied with, besides ``-lr``.
    step_scale: ClassVar[float] = 1.0

    def _prepare_grad(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
        grad = square_safe(grad)
        if group["orthograd"] and item_ndim(p) >= 2:
            return orthogonalize(p, grad, norm_floor=self.orthograd_floor)
        return grad

    def _advance_step(self, state: dict[str, Any], group: dict[str, Any]) -> int:
        return interval_clock(state, group)

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        """Whether the clock has just reset, the debiasing of both EMAs (the second with a soft
        beta), the decoupled decay and the lr."""
        beta1, beta2 = group["betas"]
        sq_beta = soft_beta(beta2, step)
        return {
            "reset": reset_now(state, step, "times_zero"),
            "bias_correction": 1 - beta1**step,
            "sq_beta": sq_beta,
            "sq_weight": 1 - sq_beta,
            "sq_bias_correction": (1 - sq_beta**step) ** 0.5,
            "decay": group["weight_decay"] * group["weight_decay_rate"] ** step,
            "lr": group["lr"],
            "neg_lr": -group["lr"],
        }

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        ema, ema_sq = state["ema"], state["ema_squared"]
        if s["reset"]:
            self._restart_state(p, grad, state)

        grad = self._fold(grad / rms(grad).clamp(min=1.0), ema, group)
        corrected = grad.add(ema / s["bias_correction"], alpha=group["amp"])
        denom = ema_sq.sqrt() / s["sq_bias_correction"]
        addcmul_scaled_(ema_sq.mul_(s["sq_beta"]), corrected, corrected, s["sq_weight"])
        update = self._finish(corrected.atan2(denom), p, state, group, s)
        if group["cautious_min"] != 1:
            update.mul_(cautious_floor(update, grad, floor=group["cautious_min"], mean_floor=1e-3))
        add_scaled_(p, update, s["neg_lr"] * self.step_scale)

    def _fold(self, grad: Tensor, ema: Tensor, group: dict[str, Any]) -> Tensor:
        """Fold the RMS-capped ``grad`` into ``ema`` (in place); return the gradient the step follows."""
        raise NotImplementedError

    def _finish(
        self, update: Tensor, p: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]
    ) -> Tensor:
        """The update from the ``atan2`` quotient (weight decay and the member's own terms)."""
        raise NotImplementedError

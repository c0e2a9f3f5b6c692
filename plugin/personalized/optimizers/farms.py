"""The FARMSCropV2 family: FARMSCropV2, FMARSCrop and FMARSCrop_ExMachina, and the update they share.

All three precondition in ADOPT placement: the denominators come from the previous
step's Fisher EMA of the normalised gradient and EMA of the squared gradient change, the
momentum is folded in after the step and amplified by ``t^momentum_lambda``, and every
normalised quantity is RMS-clipped relative to ``clip``. FMARSCrop (:class:`FMARSFamily`)
adds MARS variance reduction and centres the momentum; ExMachina also makes MARS's
strength a setting, its eps adaptive, and masks the step cautiously. FARMSCrop (V1) came
before the ADOPT placement and shares none of this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..base import PersonalizedOptimizer
from ..blocks import (
    Scalar,
    add_scaled_,
    addcmul_scaled_,
    centralize,
    compass,
    item_mean,
    norm_clip,
    rms_clip_relative,
    soft_beta,
)
from ..validation import POSITIVE, Rule


def clamped_square_ema_(ema: Tensor, beta: Scalar, value: Tensor, bound: Scalar) -> None:
    """``ema <- clamp(beta * ema + (1 - beta) * value², -bound, bound)`` in place."""
    addcmul_scaled_(ema.mul_(beta), value, value, 1 - beta).clamp_(-bound, bound)


def difference_fisher_base_(
    diff_fim: Tensor,
    grad_change: Tensor,
    diff_mult: float,
    beta: float,
    clip: float,
    bound: Scalar,
    eps: float | Tensor,
) -> Tensor:
    """The gradient-difference Fisher base.

    Returns ``max(sqrt(diff_fim), eps)`` from the *previous* EMA (ADOPT
    placement), then folds the clipped, scaled gradient change into the EMA.
    """
    change = rms_clip_relative(grad_change * diff_mult, clip)
    base = diff_fim.sqrt().clamp_(min=eps)
    clamped_square_ema_(diff_fim, beta, change, bound)
    return base


def mars_correction(grad: Tensor, grad_change: Tensor, gamma: float, beta1: float, clip: float) -> Tensor:
    """MARS variance reduction ``g + gamma * beta1 / (1 - beta1) * (g - g_prev)``, norm-clipped at ``clip``."""
    return norm_clip(grad + (gamma * beta1 / (1 - beta1)) * grad_change, clip)


def moment_centralize(momentum: Tensor, enabled: float) -> Tensor:
    """``m - mean(m)`` over the whole tensor when ``enabled`` is non-zero (its size is ignored)."""
    return momentum - item_mean(momentum) if enabled else momentum


class FARMSFamily(PersonalizedOptimizer):
    """What the FARMSCropV2 family shares: the ``eps`` rule, the step's numbers and the update.

    A member says, through the hooks below, which gradient the step follows and
    what it keeps of it for the next step's gradient change.
    """

    own_rules: ClassVar[Mapping[str, Rule]] = {"eps": POSITIVE}
    #: Divide the natural gradient by the difference base twice, as the originals of FARMSCropV2
    #: and FMARSCrop did (they reused the clipped ``g / diff_base``); ExMachina divides once.
    divide_twice: ClassVar[bool] = True

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        """The EMA bound ``t^0.25``, the Fisher EMA's beta ``sqrt(soft_beta(beta2, t))``, the
        momentum amplification ``t^momentum_lambda`` and the signed step sizes."""
        lr = group["lr"]
        return {
            "bound": step**0.25,
            "fim_beta": soft_beta(group["betas"][1], step) ** 0.5,
            "amplification": step ** group["momentum_lambda"],
            "neg_lr": -lr,
            "neg_decay": -(lr * group["weight_decay"]),
        }

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        beta1 = group["betas"][0]
        clip, momentum_beta = group["clip"], group["momentum_beta"]
        fim, momentum = state["fim"], state["momentum"]
        bound = s["bound"]
        floor = self._floor(grad, group)

        corrected, grad_change = self._followed(grad, state, group)
        diff_base: Tensor | float = 1.0
        if group["diff_mult"] > 0:
            diff_base = difference_fisher_base_(
                state["grad_diff_fim"], grad_change, group["diff_mult"], beta1, clip, bound, floor
            )
        approx = rms_clip_relative(corrected / diff_base, clip)
        fim_base = fim.sqrt().clamp_(min=floor)
        grad_nat = rms_clip_relative((approx if self.divide_twice else corrected) / fim_base / diff_base, clip)
        amplified = compass(grad_nat, self._amplified_momentum(momentum, group), s["amplification"])
        full_step = centralize(amplified, group["centralization"])

        if group["weight_decay"] != 0:
            add_scaled_(p, rms_clip_relative(p / fim_base / diff_base, clip), s["neg_decay"])
        add_scaled_(p, self._masked(full_step, corrected, group), s["neg_lr"])

        clamped_square_ema_(fim, s["fim_beta"], approx, bound)
        momentum.mul_(momentum_beta).add_(grad_nat, alpha=1 - momentum_beta)
        self._remember(grad, approx, state, group)

    def _followed(self, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """The gradient the step follows, and the gradient change (None where ``diff_mult`` leaves it unused)."""
        raise NotImplementedError

    def _remember(self, grad: Tensor, approx: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Keep what the next step's gradient change is taken against (``approx``: the clipped ``g / diff_base``)."""
        raise NotImplementedError

    def _floor(self, grad: Tensor, group: dict[str, Any]) -> float | Tensor:
        """The lower bound of the Fisher square roots: ``eps``."""
        return group["eps"]

    def _amplified_momentum(self, momentum: Tensor, group: dict[str, Any]) -> Tensor:
        """The momentum the natural gradient is amplified by."""
        return momentum

    def _masked(self, full_step: Tensor, corrected: Tensor, group: dict[str, Any]) -> Tensor:
        """The step as applied (ExMachina masks it cautiously)."""
        return full_step


class FMARSFamily(FARMSFamily):
    """FMARSCrop and ExMachina: the step follows the MARS-corrected gradient, the momentum is
    centred (with ``moment_centralization``), and the raw gradient is kept, negated, as ``prev_grad``."""

    def _gamma(self, group: dict[str, Any]) -> float:
        """The MARS strength."""
        raise NotImplementedError

    def _followed(self, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        grad_change = grad + state["prev_grad"]
        corrected = mars_correction(grad, grad_change, self._gamma(group), group["betas"][0], group["clip"])
        return corrected, grad_change

    def _amplified_momentum(self, momentum: Tensor, group: dict[str, Any]) -> Tensor:
        return moment_centralize(momentum, group["moment_centralization"])

    def _remember(self, grad: Tensor, approx: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["prev_grad"].copy_(grad).neg_()

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..base import NeededWhen, StateInit, hyperparameters, negative_grad, ones, zeros
from .farms import FARMSFamily


class FARMSCropV2(FARMSFamily):
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

    def _followed(self, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """The gradient itself; its change against the kept ``previous_grad`` only with ``diff_mult``."""
        grad_change = grad + state["previous_grad"] if group["diff_mult"] > 0 else None
        return grad, grad_change

    def _remember(self, grad: Tensor, approx: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """The normalised gradient, negated (the original's reuse of ``p.grad``)."""
        if group["diff_mult"] > 0:
            state["previous_grad"].copy_(approx).neg_()

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..base import NeededWhen, StateInit, hyperparameters, negative_grad, ones, zeros
from ..blocks import adaptive_eps, cautious_mask
from ..validation import NON_NEGATIVE, POSITIVE, Flag, Number, Rule
from .farms import FMARSFamily

#: What ``eps_floor <= 0`` becomes, as in the original.
TINY_EPS_FLOOR = 1e-38


class FMARSCrop_ExMachina(FMARSFamily):
    """FMARSCrop_ExMachina: FMARSCrop with configurable MARS gamma, adaptive eps and a cautious mask.

    The recommended member of the FMARSCrop family: the double-division bug
    of FMARSCrop is fixed, the step counter is shared by the param group,
    and components of the step whose sign disagrees with the corrected
    gradient are masked out.

    Args:
        params: parameters or param-group dicts.
        lr: step size; already 1.5x FMARSCrop's to make up for the cautious
            mask. Lower it by 1.5x if you turn ``cautious`` off.
        betas: ``(beta1, beta2)``: beta1 for the MARS scale and the EMA of
            squared gradient changes; beta2 for the Fisher EMA.
        eps: lower bound of the square roots of the Fisher EMAs (must be > 0).
        eps2: with adaptive eps, the bound is ``eps2 * rms(grad)``.
        eps_floor: ``None`` keeps a fixed ``eps``. A value below ``eps``
            enables adaptive eps ``max(min(eps, eps2 * rms(grad)), eps_floor)``;
            ``0`` means 1e-38, as in the original.
        weight_decay: decoupled, preconditioned weight decay.
        centralization: strength of centralisation of the full step
            (matrices and convolutions only).
        moment_centralization: non-zero subtracts the momentum's mean before
            amplification.
        diff_mult: > 0 enables the gradient-difference preconditioner. With a
            low beta1, disable it if training NaNs early.
        momentum_beta: EMA beta of the momentum.
        momentum_lambda: the momentum is amplified by ``t^momentum_lambda``.
        gamma: MARS strength: ``c = g + gamma * beta1 / (1 - beta1) * (g - g_prev)``.
        clip: limit of the corrected gradient's L2 norm and of the relative RMS
            clips. ``0`` disables clipping.
        cautious: mask step components that disagree with the corrected gradient.

    Differences from the original / known quirks:
        * Kept: the step counter lives in the param group (``group["step"]``)
          and counts every ``step()`` call, even for parameters without a
          gradient.
        * Kept: ``eps_floor <= 0`` becomes 1e-38, a subnormal number; on
          hardware that flushes subnormals to zero use a small positive floor.
        * Kept: the amplification ``t^lambda`` grows without bound.
        * Fixed: ``clip=0`` raised ZeroDivisionError; it now disables clipping.
        * Fixed: stochastic rounding was only correct for bfloat16; float16
          parameters and state now round stochastically on float16's own grid.
        * Fixed: no host synchronisation (adaptive eps used ``.item()``, the
          norm clip an ``if``).
    """

    own_rules: ClassVar[Mapping[str, Rule]] = {
        "eps": POSITIVE,
        "eps2": NON_NEGATIVE,
        "eps_floor": Number(0.0, optional=True),
        "gamma": NON_NEGATIVE,
        "cautious": Flag(),
    }
    group_step: ClassVar[bool] = True
    divide_twice: ClassVar[bool] = False
    state_tensors: ClassVar[Mapping[str, StateInit | NeededWhen]] = {
        "grad_diff_fim": NeededWhen(lambda group: group["diff_mult"] > 0, ones),
        "fim": ones,
        "momentum": zeros,
        "prev_grad": negative_grad,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.5e-4,
        betas: tuple[float, float] = (0.999, 0.9999),
        eps: float = 1e-6,
        eps2: float = 1e-2,
        eps_floor: float | None = None,
        weight_decay: float = 0.01,
        centralization: float = 0.0,
        moment_centralization: float = 1.0,
        diff_mult: float = 1.0,
        momentum_beta: float = 0.9999,
        momentum_lambda: float = 0.25,
        gamma: float = 5e-4,
        clip: float = 1.0,
        cautious: bool = True,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    def _gamma(self, group: dict[str, Any]) -> float:
        return group["gamma"]

    def _floor(self, grad: Tensor, group: dict[str, Any]) -> float | Tensor:
        """``eps``, or the adaptive eps when ``eps_floor`` is below it."""
        eps, eps_floor = group["eps"], group["eps_floor"]
        if eps_floor is not None and eps_floor < eps:
            return adaptive_eps(grad, eps, group["eps2"], eps_floor if eps_floor > 0 else TINY_EPS_FLOOR)
        return eps

    def _masked(self, full_step: Tensor, corrected: Tensor, group: dict[str, Any]) -> Tensor:
        """With ``cautious``: without the components whose sign disagrees with the corrected gradient."""
        return full_step * cautious_mask(full_step, corrected) if group["cautious"] else full_step

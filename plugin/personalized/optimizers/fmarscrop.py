from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from ..base import NeededWhen, StateInit, hyperparameters, negative_grad, ones, zeros
from .farms import FMARSFamily


class FMARSCrop(FMARSFamily):
    """FMARSCrop: FARMSCropV2 with MARS variance reduction and momentum centralisation.

    The gradient is corrected with MARS (``g + beta1/2 * (g - g_prev)``),
    norm-clipped, then preconditioned like FARMSCropV2.

    Args:
        params: parameters or param-group dicts.
        lr: step size.
        betas: ``(beta1, beta2)``: beta1 sets the MARS strength and the EMA of
            squared gradient changes; beta2 the Fisher EMA.
        eps: lower bound of the square roots of the Fisher EMAs (must be > 0).
        weight_decay: decoupled, preconditioned weight decay.
        centralization: strength of centralisation of the full step
            (matrices and convolutions only).
        moment_centralization: non-zero subtracts the momentum's mean before
            amplification (the value itself is not used).
        diff_mult: > 0 enables the gradient-difference preconditioner (one more
            state tensor). With a low beta1, disable it if training NaNs early.
        momentum_beta: EMA beta of the momentum.
        momentum_lambda: the momentum is amplified by ``t^momentum_lambda``.
        clip: limit of the corrected gradient's L2 norm and of the relative RMS
            clips. ``0`` disables clipping.

    Differences from the original / known quirks:
        * Kept: the natural gradient is divided by the difference base twice
          (the original reused the clipped tensor in place).
        * Kept: the MARS gamma is hard-wired to ``(1 - beta1) / 2``; use
          FMARSCrop_ExMachina to change it.
        * Kept: ``prev_grad`` is stored even with ``diff_mult=0``.
        * Fixed: ``clip=0`` raised ZeroDivisionError; it now disables clipping.
        * Fixed: no host synchronisation (the norm clip is a clamp, not an ``if``).
        * Changed: bf16/fp16 parameters are updated in float32 and written
          back with stochastic rounding.
    """

    state_tensors: ClassVar[Mapping[str, StateInit | NeededWhen]] = {
        "momentum": zeros,
        "fim": ones,
        "prev_grad": negative_grad,
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
        moment_centralization: float = 1.0,
        diff_mult: float = 1.0,
        momentum_beta: float = 0.9999,
        momentum_lambda: float = 0.25,
        clip: float = 1.0,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    def _gamma(self, group: dict[str, Any]) -> float:
        """Hard-wired to ``(1 - beta1) / 2``, as in the original."""
        return (1 - group["betas"][0]) / 2

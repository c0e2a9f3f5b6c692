from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..base import NeededWhen, StateInit, grad_squared, hyperparameters, zeros
from ..blocks import ATAN2_SCALE, add_scaled_, cautious_floor, item_ndim, item_norm, item_sum
from ..validation import NON_NEGATIVE, Rule
from .atan2_adopt import Atan2AdoptFamily

#: Newton-Schulz coefficients of SCORN's six orthogonalisation steps (divided by 1024).
NEWTON_SCHULZ6 = tuple(
    (a / 1024, b / 1024, c / 1024)
    for a, b, c in [
        (3955, -8306, 5008),
        (3735, -6681, 3463),
        (3799, -6499, 3211),
        (4019, -6385, 2906),
        (2677, -3029, 1162),
        (2172, -1833, 682),
    ]
)


def newton_schulz6(matrix: Tensor) -> Tensor:
    """Approximate the orthogonal polar factor of each matrix of an ``(n, rows, cols)`` batch
    with six Newton-Schulz steps (float32)."""
    x = matrix.float()
    x = x / (item_norm(x) + 1e-12)
    transposed = x.shape[-2] > x.shape[-1]
    if transposed:
        x = x.mT
    for a, b, c in NEWTON_SCHULZ6:
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if transposed else x


def scion_lmo(grad: Tensor) -> Tensor:
    """SCORN's "AUTO" Scion norm linear minimisation oracle.

    Vectors and scalars are L2-normalised; matrices are orthogonalised and
    scaled by ``sqrt(d_out / d_in)``; convolutions ``(d0, d1, k, ...)`` are
    orthogonalised as ``(d0, -1)`` matrices and scaled by ``sqrt(d0 / d1) / k^2``.
    """
    if item_ndim(grad) <= 1 or grad.numel() == 0:
        return grad / (item_sum(grad.square()).sqrt() + 1e-12)
    d_out, d_in = grad.shape[1:3]
    scale = math.sqrt(d_out / d_in)
    if item_ndim(grad) > 2:
        scale /= grad.shape[3] ** 2
    return newton_schulz6(grad.reshape(grad.shape[0], d_out, -1)).reshape(grad.shape) * scale


def scion_init(p: Tensor) -> Tensor:
    """A fresh value for ``p`` matching :func:`scion_lmo`'s norms (computed in float64).

    Vectors and scalars: zeros. Matrices: orthogonal times ``sqrt(d_out / d_in)``.
    Convolutions: an orthogonal ``(d_out, d_in)`` matrix per kernel position,
    times ``sqrt(d_out / d_in) / k^2``.
    """
    value = torch.zeros_like(p, dtype=torch.float64)
    if p.dim() <= 1 or p.numel() == 0:
        return value.to(p.dtype)
    d_out, d_in = p.shape[:2]
    if p.dim() == 2:
        return (torch.nn.init.orthogonal_(value) * math.sqrt(d_out / d_in)).to(p.dtype)
    for position in itertools.product(*(range(size) for size in p.shape[2:])):
        torch.nn.init.orthogonal_(value[(..., *position)])
    return (value * (math.sqrt(d_out / d_in) / p.shape[2] ** 2)).to(p.dtype)


class SCORN(Atan2AdoptFamily):
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
    orthograd_floor: ClassVar[float] = 1e-6

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

    def _fold(self, grad: Tensor, ema: Tensor, group: dict[str, Any]) -> Tensor:
        """Map the gradient through the Scion LMO, mask the EMA cautiously, then fold the gradient in."""
        beta1 = group["betas"][0]
        grad = scion_lmo(grad)
        ema.mul_(cautious_floor(grad, ema, floor=beta1, mean_floor=1e-3))
        ema.mul_(beta1).add_(grad, alpha=1 - beta1)
        return grad

    def _finish(
        self, update: Tensor, p: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]
    ) -> Tensor:
        """Scaled by 4/pi and ``spectral_update_scale``; then the focus term, and weight decay or
        the constraint's shrinking of the weights."""
        update.mul_(ATAN2_SCALE).mul_(group["spectral_update_scale"])
        if group["focus_ratio"] > 0:
            pbar = state["pbar"]
            pbar.lerp_(p, 1 - group["betas"][0])
            update.add_(p - pbar / s["bias_correction"], alpha=group["focus_ratio"])
        if group["weight_decay"] != 0 and not group["constrain"]:
            add_scaled_(update, p, s["decay"])
        if group["constrain"]:
            p.mul_(1 - s["lr"])
        return update

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

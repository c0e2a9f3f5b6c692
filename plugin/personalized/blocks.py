"""Named building blocks shared by every update rule.

Each block works on one tensor and returns a new tensor (blocks ending in ``_``
write into their first argument). Scalars that only depend on the step count
(soft betas, amplification factors) are plain Python floats computed on the
host; everything that depends on tensor values stays a tensor, so no block
ever synchronises the host with the device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def soft_beta(beta: float, step: int) -> float:
    """Debiasing beta ``(beta^t - beta) / (beta^t - 1)``.

    It is 0 at ``t = 1``, about ``(t-1)/t`` while ``t`` is small against
    ``1/(1-beta)``, and tends to ``beta``. An EMA ``x <- s*x + (1-s)*y`` with
    ``s = soft_beta(beta, t)`` is an unbiased running average from step 1 and
    ignores the initial value of ``x``.
    """
    beta_t = beta**step
    return (beta_t - beta) / (beta_t - 1)


def rms(x: Tensor) -> Tensor:
    """Root mean square over the whole tensor, as a 0-dim tensor."""
    return x.square().mean().sqrt()


def rms_clip_scaled(x: Tensor, clip: float, eps: float) -> Tensor:
    """``x * clip / max(1, rms(x) + eps)``: cap the RMS at 1, then multiply by ``clip``.

    The FCompass / FishMonger idiom: ``clip > 1`` amplifies, ``clip < 1``
    always shrinks. ``clip == 0`` disables the block (returns ``x``).
    """
    if clip == 0:
        return x
    return x / (rms(x) + eps).clamp(min=1.0) * clip


def rms_clip_relative(x: Tensor, clip: float) -> Tensor:
    """``x / (max(clip, rms(x)) / clip)``: limit the RMS to ``clip``.

    The FARMSCropV2 / FMARSCrop / ExMachina idiom; the divisor is exactly 1
    while ``rms(x) <= clip``. ``clip == 0`` disables the block.
    """
    if clip == 0:
        return x
    return x / (rms(x).clamp(min=clip) / clip)


def rms_cap(x: Tensor) -> Tensor:
    """``x / max(1, rms(x))``: cap the RMS at 1 (FARMSCrop V1)."""
    return x / rms(x).clamp(min=1.0)


def norm_clip(x: Tensor, max_norm: float) -> Tensor:
    """Rescale ``x`` so that its Frobenius norm is at most ``max_norm`` (0 disables)."""
    if max_norm == 0:
        return x
    return x * (max_norm / torch.linalg.vector_norm(x).clamp(min=max_norm))


def centralize(x: Tensor, strength: float) -> Tensor:
    """Subtract ``strength`` times the per-row (per output channel) mean.

    Only tensors with more than one dimension are centralised; vectors and
    scalars are returned unchanged, as are all tensors when ``strength == 0``.
    """
    if strength == 0 or x.dim() <= 1:
        return x
    return x - strength * x.mean(dim=tuple(range(1, x.dim())), keepdim=True)


def compass(update: Tensor, momentum: Tensor, amplification: float) -> Tensor:
    """Compass amplification ``update + amplification * momentum``."""
    return update + amplification * momentum


def cautious_mask(update: Tensor, direction: Tensor) -> Tensor:
    """Cautious mask ``k * n / (sum(k) + 1)`` with ``k = [update * direction > 0]``.

    Components whose sign disagrees with ``direction`` are dropped and the
    rest rescaled by about ``1 / fraction kept`` (ExMachina's normaliser).
    """
    keep = (update * direction > 0).to(update.dtype)
    return keep * (update.numel() / (keep.sum() + 1))


def adaptive_eps(grad: Tensor, eps: float, eps2: float, eps_floor: float) -> Tensor:
    """``max(min(eps, eps2 * rms(grad)), eps_floor)`` as a 0-dim tensor (no host sync)."""
    return (eps2 * rms(grad)).clamp(min=eps_floor, max=eps)


def copy_stochastic_(target: Tensor, source: Tensor) -> None:
    """Write the float32 ``source`` into ``target`` with stochastic rounding.

    bfloat16 targets use the classic bit trick (add 16 random low bits, then
    truncate), drawing ``torch.randint_like(source, dtype=int32, 0, 65536)``
    from the global RNG exactly as the original optimizers do, so recorded
    trajectories replay bit for bit. float16 targets round up or down to the
    two neighbouring float16 values with probabilities proportional to the
    distance, which is unbiased over float16's own grid (the originals' bit
    trick rounds float16 onto the coarser bfloat16 grid). Other dtypes get a
    plain copy.
    """
    if target.dtype == torch.bfloat16:
        noise = torch.randint_like(source, dtype=torch.int32, low=0, high=1 << 16)
        bits = (source.view(torch.int32) + noise).bitwise_and_(-65536)
        target.copy_(bits.view(torch.float32))
    elif target.dtype == torch.float16:
        nearest = source.to(torch.float16)
        nearest32 = nearest.float()
        away = torch.where(source > nearest32, math.inf, -math.inf).to(torch.float16)
        other = torch.nextafter(nearest, away)
        chance_other = (source - nearest32) / (other.float() - nearest32)
        target.copy_(torch.where(torch.rand_like(source) < chance_other, other, nearest))
    else:
        target.copy_(source)


def clamped_square_ema_(ema: Tensor, beta: float, value: Tensor, bound: float) -> None:
    """``ema <- clamp(beta * ema + (1 - beta) * value², -bound, bound)`` in place."""
    ema.mul_(beta).addcmul_(value, value, value=1 - beta).clamp_(-bound, bound)


def difference_fisher_base_(
    diff_fim: Tensor,
    grad_change: Tensor,
    diff_mult: float,
    beta: float,
    clip: float,
    bound: float,
    eps: float | Tensor,
) -> Tensor:
    """The gradient-difference Fisher base of the FARMSCropV2 / FMARSCrop family.

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
    return momentum - momentum.mean() if enabled else momentum

"""Named building blocks shared by every update rule.

Only generic math lives here; what one family of optimizers shares (its step's
numbers, its preconditioner) lives in that family's module of ``optimizers/``.

Each block works on an *item batch* (``(n, *shape)``: ``n`` parameter tensors
of the same shape, see :mod:`personalized.items`) and returns a new tensor
(blocks ending in ``_`` write into their first argument). Every reduction is
per item ("the RMS of the tensor" is the RMS of each item) and keeps its
dimensions, so per-tensor scalars broadcast against the batch. Scalars that only depend on the step count
(soft betas, amplification factors) are plain Python floats computed on the
host; everything that depends on tensor values stays a tensor, so no block
ever synchronises the host with the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def item_ndim(x: Tensor) -> int:
    """The number of dimensions of one item (of the parameter tensor itself)."""
    return x.dim() - 1


def item_numel(x: Tensor) -> int:
    """The number of elements of one item."""
    return math.prod(x.shape[1:])


def per_item(reduce: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``reduce`` (over the last dimension) applied to each flattened item, shape ``(n, 1, ..., 1)``.

    Reducing one contiguous row per item gives the same values as reducing over
    the item dimensions, and compiles into much faster kernels.
    """
    if x.dim() <= 1:
        return reduce(x.unsqueeze(-1))
    return reduce(x.reshape(x.shape[0], -1)).view(x.shape[0], *[1] * item_ndim(x))


def item_mean(x: Tensor) -> Tensor:
    """Mean of each item, shape ``(n, 1, ..., 1)``."""
    return per_item(lambda rows: rows.mean(dim=-1), x)


def item_sum(x: Tensor) -> Tensor:
    """Sum of each item, shape ``(n, 1, ..., 1)``."""
    return per_item(lambda rows: rows.sum(dim=-1), x)


def item_amax(x: Tensor) -> Tensor:
    """Largest element of each item, shape ``(n, 1, ..., 1)``."""
    return per_item(lambda rows: rows.amax(dim=-1), x)


def item_norm(x: Tensor) -> Tensor:
    """Euclidean (Frobenius) norm of each item, shape ``(n, 1, ..., 1)``."""
    return per_item(lambda rows: torch.linalg.vector_norm(rows, dim=-1), x)


def item_dot(a: Tensor, b: Tensor) -> Tensor:
    """Dot product of the flattened items of two ``(n, m)`` batches, shape ``(n, 1)``.

    float32: one multiply-and-sum pass (a batched matrix product gives the same numbers ten
    times slower on a CPU). bf16/fp16: a batched matrix product, which accumulates in float32
    and rounds once, as the originals' ``torch.dot`` does (a product rounded term by term
    would not).
    """
    if a.dtype == torch.float32:
        return torch.linalg.vecdot(a, b, dim=-1).view(a.shape[0], 1)
    return (a.unsqueeze(1) @ b.unsqueeze(2)).view(a.shape[0], 1)


#: A number that changes from step to step (lr, debiasing betas): a Python float on the
#: eager paths, a 0-dim tensor on the compiled path (so that a new value does not recompile).
Scalar = float | Tensor


def add_scaled_(x: Tensor, y: Tensor, scale: Scalar) -> Tensor:
    """``x += scale * y`` in place (one fused kernel for a float ``scale``)."""
    return x.add_(y * scale) if isinstance(scale, Tensor) else x.add_(y, alpha=scale)


def addcmul_scaled_(x: Tensor, a: Tensor, b: Tensor, scale: Scalar) -> Tensor:
    """``x += scale * a * b`` in place (one fused kernel for a float ``scale``)."""
    return x.add_(a * b * scale) if isinstance(scale, Tensor) else x.addcmul_(a, b, value=scale)


def addcdiv_scaled_(x: Tensor, a: Tensor, b: Tensor, scale: Scalar) -> Tensor:
    """``x += scale * a / b`` in place (one fused kernel for a float ``scale``)."""
    return x.add_(a / b * scale) if isinstance(scale, Tensor) else x.addcdiv_(a, b, value=scale)


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
    """Root mean square of each item."""
    return item_mean(x.square()).sqrt()


#: The largest finite float32 number (about 3.4e38).
FLOAT32_MAX = torch.finfo(torch.float32).max


def square_safe(x: Tensor) -> Tensor:
    """``x`` with its elements limited to ``±sqrt(FLOAT32_MAX / (16 * numel))`` per item.

    Within that bound (4.6e18 for a single number, 4.6e15 for a million) the squares of
    ``x``, of the sum of two such tensors, and their sums over the item stay finite in
    float32. Beyond it, squaring a gradient of 1e20 would overflow to inf and the update
    would turn NaN; clamped, the update keeps its direction. Any input inside the bound
    comes back with the very same values. float64 tensors are limited by float64's range;
    float16 ones are returned as they are (the math squares them in float32, where they fit).
    """
    if x.dtype == torch.float16:
        return x
    largest = torch.finfo(torch.float64).max if x.dtype == torch.float64 else FLOAT32_MAX
    bound = (largest / (16 * item_numel(x))) ** 0.5
    return x.clamp(-bound, bound)


def saturate_(x: Tensor, terms: int = 1) -> Tensor:
    """Clamp the non-negative ``x`` in place below ``FLOAT32_MAX / (2 * terms)``: an EMA of
    squares that overflowed to inf stays finite, and so does a sum of ``terms`` of its elements.
    Every finite value a float32 square can take below that is kept as it is."""
    return x.clamp_(max=FLOAT32_MAX / (2 * terms))


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
    """``x / max(1, rms(x))``: cap the RMS at 1 (FARMSCrop V1); elements beyond
    :func:`square_safe`'s bound (an overflow) are limited to it first."""
    x = square_safe(x)
    return x / rms(x).clamp(min=1.0)


def norm_clip(x: Tensor, max_norm: float) -> Tensor:
    """Rescale ``x`` so that its Frobenius norm is at most ``max_norm`` (0 disables)."""
    if max_norm == 0:
        return x
    return x * (max_norm / item_norm(x).clamp(min=max_norm))


def centralize(x: Tensor, strength: float) -> Tensor:
    """Subtract ``strength`` times the per-row (per output channel) mean.

    Only tensors with more than one dimension are centralised; vectors and
    scalars are returned unchanged, as are all tensors when ``strength == 0``.
    """
    if strength == 0 or item_ndim(x) <= 1:
        return x
    return x - strength * x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def compass(update: Tensor, momentum: Tensor, amplification: float) -> Tensor:
    """Compass amplification ``update + amplification * momentum``."""
    return update + amplification * momentum


def cautious_mask(update: Tensor, direction: Tensor) -> Tensor:
    """Cautious mask ``k * n / (sum(k) + 1)`` with ``k = [update * direction > 0]``.

    Components whose sign disagrees with ``direction`` are dropped and the
    rest rescaled by about ``1 / fraction kept`` (ExMachina's normaliser).
    """
    keep = (update * direction > 0).to(update.dtype)
    return keep * (item_numel(update) / (item_sum(keep) + 1))


def adaptive_eps(grad: Tensor, eps: float, eps2: float, eps_floor: float) -> Tensor:
    """``max(min(eps, eps2 * rms(grad)), eps_floor)`` per item, as a tensor (no host sync)."""
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


#: The originals' literal for 4/pi: ``ATAN2_SCALE * atan2(a, b)`` lies in (-2, 2).
ATAN2_SCALE = 1.27323954474


def orthogonalize(p: Tensor, grad: Tensor, norm_floor: float) -> Tensor:
    """OrthoGrad (REMASTER / SCORN): remove the gradient's component along the weights, keep its norm.

    ``g - (4/pi) atan2(w.g, w.w) * w``, rescaled by ``|g| / max(|g_orth|, norm_floor)``.
    As in the originals, the projection and the norm ratio are computed in
    the gradient's dtype and the orthogonal part in float32; the result has
    the gradient's dtype.
    """
    n = grad.shape[0]
    w, g = p.reshape(n, -1).to(grad.dtype), grad.reshape(n, -1)
    projection = torch.atan2(item_dot(w, g), item_dot(w, w)) * ATAN2_SCALE
    ortho = g.float() - projection.float() * w.float()
    ratio = (item_norm(g) / item_norm(ortho).clamp(min=norm_floor)).to(grad.dtype)
    return (ortho * ratio).view(grad.shape).to(grad.dtype)


def orthogonalize_guarded(p: Tensor, grad: Tensor, eps: float) -> Tensor:
    """OrthoGrad as PersonaOptimizer does it, in float32: skipped when ``w.w < eps``, and
    renormalised only when both norms exceed ``eps``. The branches are tensor
    selects, so nothing synchronises with the host."""
    n = grad.shape[0]
    w, g = p.reshape(n, -1).float(), grad.reshape(n, -1).float()
    w_sq = item_dot(w, w)
    ortho = g - torch.atan2(item_dot(w, g), w_sq) * ATAN2_SCALE * w
    g_norm, o_norm = item_norm(g), item_norm(ortho)
    rescale = (g_norm > eps) & (o_norm > eps)
    ortho = torch.where(rescale, ortho * (g_norm / torch.where(rescale, o_norm, 1.0)), ortho)
    return torch.where(w_sq >= eps, ortho, g).view(grad.shape).to(grad.dtype)


def cautious_floor(update: Tensor, direction: Tensor, floor: float, mean_floor: float, strict: bool = True) -> Tensor:
    """Soft cautious mask ``k / max(mean(k), mean_floor)`` with ``k = max([u*d > 0], floor)``.

    ``floor = 0`` is the full mask, ``floor = 1`` turns it off. ``strict=False``
    keeps components where ``u*d == 0`` too (PersonaOptimizer).
    """
    agree = update * direction
    keep = ((agree > 0) if strict else (agree >= 0)).to(update.dtype).clamp_(min=floor)
    return keep / item_mean(keep).clamp(min=mean_floor)


def rms_by_norm(x: Tensor) -> Tensor:
    """``norm(x) / sqrt(numel)``: the Adafactor family's RMS (same value as :func:`rms`,
    rounded the way HF Adafactor rounds it)."""
    return item_norm(x) / (item_numel(x) ** 0.5)


def kahan_write_(
    p: Tensor, p32: Tensor, state: dict[str, Any], round_: Callable[[Tensor, Tensor], Any] = Tensor.copy_
) -> None:
    """Write the float32 result ``p32`` into the low-precision ``p`` with Kahan compensation.

    ``state["shift"]`` (started at the first write, in ``p``'s dtype) collects the update
    ``p32 - p`` plus what earlier roundings cut off; ``p`` takes ``p + shift``, rounded by
    ``round_`` (to nearest by default; :func:`copy_stochastic_` rounds stochastically), and
    ``shift`` keeps the rest, measured exactly in float32. So updates far below ``p``'s
    resolution still add up. ``p32`` is overwritten.
    """
    shift = state.get("shift")
    if shift is None:
        shift = state["shift"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    shift.add_(p32.sub_(p))
    before = p.float()
    round_(p, before + shift.float())
    shift.add_(before.sub_(p))

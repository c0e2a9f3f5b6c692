from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..base import PersonalizedOptimizer, hyperparameters
from ..blocks import kahan_write_, rms
from ..validation import COUNT, Flag, OneOf, Rule, refused

try:
    import bitsandbytes.functional as bnbf
except ImportError:  # the class still describes its settings (presets); the registry builds it only with bitsandbytes
    bnbf = None

#: Elements per absmax block of the 8-bit state, as in bitsandbytes' AdamW8bit.
BLOCK_SIZE = 256

#: bitsandbytes' dynamic quantisation maps: signed for m, unsigned for v. Built
#: once at import, because building one reads tensors back to the host.
SIGNED_MAP = bnbf.create_dynamic_map(signed=True) if bnbf else None
UNSIGNED_MAP = bnbf.create_dynamic_map(signed=False) if bnbf else None


class AdamW8bitKahan(PersonalizedOptimizer):
    """AdamW8bitKahan: AdamW with bitsandbytes 8-bit blockwise state and Kahan-compensated low-precision updates.

    AdamW whose moments ``m`` and ``v`` are stored as bitsandbytes 8-bit
    blockwise codes (dynamic maps, one float32 absmax per block of 256
    elements): about 2 bytes per element instead of 8. bf16/fp16 parameters
    keep a Kahan buffer ``shift`` in their own dtype that carries what
    rounding cut off each update into the next step, so small updates add up
    instead of vanishing. Optionally (``stabilize``, on by default as in the
    original) the step size is divided by the RMS of ``g / sqrt(v)``.

    Needs bitsandbytes (``pip install 'personalized-optimizers[bnb]'``);
    works on CPU and CUDA.

    Args:
        params: parameters or param-group dicts.
        lr: step size. The chroma README uses 2e-5 with ``stabilize=False``
            for LoRA training.
        betas: ``(beta1, beta2)`` of the EMAs of ``g`` and ``g²``. ``(0.9, 0.99)``
            (the README's) adapts faster to changing gradient scales.
        eps: added to ``sqrt(v)``; also the floor of ``sqrt(v)`` in ``stabilize``.
        weight_decay: decoupled AdamW decay: every step multiplies the
            parameter by ``1 - lr * weight_decay``. Raise it to keep weights
            small, set 0 to turn it off.
        amsgrad: only False (accepted so that bitsandbytes configs load).
        optim_bits: 8 or 32, ignored as in bitsandbytes' AdamW8bit: the state is
            8-bit for every tensor with at least ``min_8bit_size`` elements.
        args: only None (a bitsandbytes ``args`` object is not read; pass
            ``optim_bits`` and ``min_8bit_size`` as keywords).
        min_8bit_size: tensors with fewer elements keep float32 moments
            (8 bytes per element instead of about 2). The default 4096 is
            bitsandbytes'. LoRA matrices are often around it: rank 16 x 320 =
            5120 elements is quantised, rank 8 x 320 = 2560 is not. Set 1 to
            quantise every tensor (least memory, a little more quantisation
            noise), or a huge number to keep every state in float32. Can
            differ per param group.
        is_paged: accepted for bitsandbytes configs; has no effect (the state
            lives in ordinary device memory).
        stabilize: divide lr by ``max(1, rms(g / max(sqrt(v_prev), eps)))``,
            with ``v_prev`` the previous, not bias-corrected ``v``. The first
            update is therefore 0 and the first steps are strongly damped (see
            below). Set False for plain AdamW (the README's choice). Can differ
            per param group.
        stochastic_fp: bf16/fp16 parameters only. False (the original's
            deterministic Kahan summation) rounds ``p + shift`` to nearest and
            keeps the rest in ``shift``, so a parameter may lag its exact value
            by up to half a rounding step while the updates are smaller. True
            rounds ``p + shift`` stochastically (unbiased at every step).
        percentile_clipping: only 100, which means no clipping (removed from
            bitsandbytes 0.50; clip gradients in the trainer instead).
        block_wise: only True (the state is always quantised per block).

    Memory per parameter element: about 2.03 bytes of 8-bit state (8 bytes
    below ``min_8bit_size``), plus 2 bytes of Kahan buffer for bf16/fp16
    parameters; never more than the original.

    Differences from the original / known quirks:
        * Fixed: it runs on bitsandbytes 0.50 and later (the original raised
          ``KeyError: 'percentile_clipping'`` at its first step). The 8-bit
          state is (de)quantised with bitsandbytes' ``quantize_blockwise`` and
          ``dequantize_blockwise`` with AdamW8bit's maps and blocks, and the
          update runs in PyTorch in float32, exactly as bitsandbytes' CPU
          kernel does, on every device (bitsandbytes' fused CUDA kernel may
          round a few codes differently). On CUDA this is a few kernels
          instead of one, with float32 copies of the ``m`` and ``v`` of the
          tensor being updated as temporary memory.
        * Fixed: weight decay decays the parameter (decoupled AdamW, applied
          before the Adam step, with the step's lr). The original multiplied
          the Kahan buffer instead, so its decay did nothing: its runs are
          this optimizer's runs with ``weight_decay=0``.
        * Kept: ``stabilize`` is not StableAdamW. It uses the previous, not
          bias-corrected ``v``: the first update is exactly 0, and step ``t``
          is damped by about ``sqrt(1 - beta2^(t-1))`` (about 0.03x at
          ``t = 2`` with beta2 = 0.999), a long implicit warm-up. The damped
          lr also scales the weight decay.
        * Fixed: with 8-bit state, ``stabilize`` divided by the uint8 codes of
          ``v`` (so after step 1 it hardly ever acted); it now uses the
          dequantised ``v``, so 8-bit and float32 state behave alike.
        * Changed: ``stabilize`` is a param-group setting (the original kept
          one value for the whole optimizer).
        * Changed: float32 (and float64) parameters have no Kahan buffer. It
          only kept amounts below float32's rounding step and cost 4 bytes per
          element; without it the trajectory differs from the original's by
          about one float32 ulp per step.
        * Kept: for bf16/fp16 parameters ``p + shift`` is rounded to nearest,
          which reproduces the original bit for bit (with ``weight_decay=0``);
          ``stochastic_fp=True`` (new) rounds it stochastically instead.
        * Kept: the Kahan buffer has the parameter's dtype (bf16 keeps 8
          significant bits), so small updates are kept to within a few
          percent, not exactly.
        * Changed: what rounding cut off (``old p - new p``) is measured
          exactly, in float32, and rounded into the buffer once (as
          Automagic's original does). The original took it in the
          parameter's dtype, which rounds it twice when a step flips a
          parameter's sign or more than halves or doubles it; its recording
          is reproduced bit for bit all the same.
        * Kept: the state names (``step``, ``state1``, ``state2``, ``qmap1``,
          ``qmap2``, ``absmax1``, ``absmax2``, ``shift``) and dtypes: moments
          are float32 or uint8 codes for every parameter dtype, and
          ``load_state_dict`` keeps those dtypes.
        * Fixed: no host synchronisation: the stabilised lr stays a tensor
          (the original called ``.item()`` for every tensor at every step).
        * Changed: ``is_paged`` has no effect, and bitsandbytes'
          ``GlobalOptimManager`` overrides are not read: use param groups
          instead (for example a group with its own ``min_8bit_size``).
    """

    #: bitsandbytes quantises each tensor on its own: one parameter per update, unbatched.
    item_batched: ClassVar[bool] = False
    #: The state depends on each tensor's size and dtype: ``_update`` creates the moments (8-bit codes
    #: with maps and absmax, or float32), ``_write_param`` the Kahan buffer ``shift``.
    extra_state_keys: ClassVar[frozenset[str]] = frozenset(
        {"state1", "state2", "qmap1", "qmap2", "absmax1", "absmax2", "shift"}
    )

    #: ``amsgrad``, ``optim_bits``, ``percentile_clipping`` and ``block_wise`` are kept so that configs
    #: written for bitsandbytes still load: with the only values supported, and why.
    own_rules: ClassVar[Mapping[str, Rule]] = {
        "amsgrad": OneOf((False,), "AdamW8bit has no AMSGrad variant"),
        "optim_bits": OneOf((8, 32), "ignored as in AdamW8bit: the state is 8-bit from min_8bit_size elements on"),
        "min_8bit_size": COUNT,
        "is_paged": Flag(),
        "stabilize": Flag(),
        "percentile_clipping": OneOf(
            (100,), "bitsandbytes 0.50 removed percentile clipping; clip gradients in the trainer"
        ),
        "block_wise": OneOf((True,), "the 8-bit state is always quantised in blocks of 256 elements"),
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        amsgrad: bool = False,
        optim_bits: int = 32,
        args: None = None,
        min_8bit_size: int = 4096,
        is_paged: bool = False,
        stabilize: bool = True,
        stochastic_fp: bool = False,
        percentile_clipping: int = 100,
        block_wise: bool = True,
        **unexpected: Any,
    ) -> None:
        if args is not None:
            expected = "None (pass optim_bits and min_8bit_size as keywords)"
            raise refused(type(self).__name__, "constructor", "args", args, expected)
        del args  # checked above; never stored in a param group
        super().__init__(params, hyperparameters(locals()), unexpected)

    @classmethod
    def hyperparameter_defaults(cls) -> dict[str, Any]:
        """The constructor keywords, without ``args`` (an object, never stored in a group)."""
        defaults = super().hyperparameter_defaults()
        del defaults["args"]
        return defaults

    def _scalars(self, group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
        return {"step": step}

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        step = s["step"]
        if "state1" not in state:
            state.update(new_moments(p, group["min_8bit_size"]))
        beta1, beta2 = group["betas"]
        eps, weight_decay = group["eps"], group["weight_decay"]
        m, v = load_moments(state)
        lr = stabilized_lr(group["lr"], grad, v, eps) if group["stabilize"] else group["lr"]

        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        store_moments(state, m, v)

        bias_correction1 = 1 - beta1**step
        bias_correction2 = math.sqrt(1 - beta2**step)
        if weight_decay != 0:
            p.mul_(1 - lr * weight_decay)
        adam_step = m / (v.sqrt() + eps * bias_correction2)
        p.add_(adam_step.mul_(-lr * bias_correction2 / bias_correction1))

    def _write_param(self, p: Tensor, p32: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Kahan-compensated write-back of the float32 result into the bf16/fp16 parameter
        (:func:`personalized.blocks.kahan_write_`), rounded stochastically unless ``stochastic_fp=False``."""
        kahan_write_(p, p32, state, self._round(group))


def new_moments(p: Tensor, min_8bit_size: int) -> dict[str, Tensor]:
    """Zero moments: 8-bit codes with maps and absmax per block, or float32 below ``min_8bit_size``."""
    n = p.numel()
    if n < min_8bit_size:
        return {name: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for name in ("state1", "state2")}
    blocks = math.ceil(n / BLOCK_SIZE)
    signed, unsigned = dynamic_maps(p.device)
    return {
        "state1": torch.zeros(p.shape, dtype=torch.uint8, device=p.device),
        "state2": torch.zeros(p.shape, dtype=torch.uint8, device=p.device),
        "qmap1": signed,
        "qmap2": unsigned,
        "absmax1": torch.zeros(blocks, dtype=torch.float32, device=p.device),
        "absmax2": torch.zeros(blocks, dtype=torch.float32, device=p.device),
    }


@functools.cache
def dynamic_maps(device: torch.device) -> tuple[Tensor, Tensor]:
    """The signed and unsigned maps on ``device``, one copy per device shared by every tensor (as in bitsandbytes)."""
    return SIGNED_MAP.to(device), UNSIGNED_MAP.to(device)


def is_quantized(state: dict[str, Any]) -> bool:
    return state["state1"].dtype == torch.uint8


def load_moments(state: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """``m`` and ``v`` in float32: dequantised copies of 8-bit state, else the state tensors themselves."""
    if not is_quantized(state):
        return state["state1"], state["state2"]
    return dequantize(state, 1), dequantize(state, 2)


def dequantize(state: dict[str, Any], i: int) -> Tensor:
    codes, absmax, qmap = state[f"state{i}"], state[f"absmax{i}"], state[f"qmap{i}"]
    return bnbf.dequantize_blockwise(codes, absmax=absmax, code=qmap, blocksize=BLOCK_SIZE)


def store_moments(state: dict[str, Any], m: Tensor, v: Tensor) -> None:
    """Quantise ``m`` and ``v`` back into 8-bit state (float32 state was updated in place)."""
    if is_quantized(state):
        for i, value in ((1, m), (2, v)):
            bnbf.quantize_blockwise(
                value,
                code=state[f"qmap{i}"],
                absmax=state[f"absmax{i}"],
                out=state[f"state{i}"],
                blocksize=BLOCK_SIZE,
            )


def stabilized_lr(lr: float, grad: Tensor, v: Tensor, eps: float) -> Tensor:
    """``lr / max(1, rms(g / max(sqrt(v), eps)))`` as a 0-dim tensor (no host sync)."""
    return lr / rms((grad / v.sqrt().clamp_(min=eps)).reshape(1, -1)).view(()).clamp_(min=1.0)

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..base import PersonalizedOptimizer, StateInit, hyperparameters
from ..blocks import item_amax, item_mean, kahan_write_, rms_by_norm
from ..validation import BETA, NON_NEGATIVE, UNIT, Flag, Numbers, Rule, refused
from .adafactor import SECOND_MOMENT_KEYS, adafactor_normalize_, second_moment_state

#: Start lrs above this are replaced by :data:`FALLBACK_START_LR`, as in the original.
HIGHEST_START_LR = 1e-3
FALLBACK_START_LR = 1e-6


def quantize_lr_mask(lr: Tensor) -> tuple[Tensor, Tensor]:
    """int8 codes and float32 scale (``absmax / 127``) of a per-element lr tensor."""
    absmax = item_amax(lr.abs())
    scale = torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax))
    return (lr / scale).round_().clamp_(-127, 127).to(torch.int8), scale


def all_false(p: Tensor, grad: Tensor) -> Tensor:
    """The first previous polarity: all negative."""
    return torch.zeros_like(p, dtype=torch.bool)


class Automagic(PersonalizedOptimizer):
    """Automagic: Adafactor-style normalisation with a per-element learning rate that grows while the sign holds.

    Every element keeps its own lr (stored as int8): it rises by ``lr_bump``
    while the update keeps its sign and falls by ``lr_bump`` when it flips,
    within ``[min_lr, max_lr]``. No lr schedule is needed (or used).

    Args:
        params: parameters or param-group dicts.
        lr: the starting per-element lr. Values above 1e-3 start at 1e-6
            instead (with a warning), as in the original. Schedulers have no effect.
        min_lr: lowest per-element lr.
        max_lr: highest per-element lr.
        lr_bump: how much an element's lr moves per step.
        eps: ``(eps_g, unused)``: added to g² (the second value is kept for
            Adafactor-style configs).
        clip_threshold: cap on the RMS of the normalised update.
        beta2: EMA beta of the (factored) second moment.
        weight_decay: decoupled decay, scaled by each element's lr.
        do_paramiter_swapping: train only a random ``paramiter_swapping_factor``
            share of the parameters (chosen once, at construction, by turning
            ``requires_grad`` off for the rest).
        paramiter_swapping_factor: share of parameters kept trainable.

    Differences from the original / known quirks:
        * Kept: the lr mask is re-quantised to int8 every step, so an
          element's lr has about 8 bits of resolution relative to the
          tensor's largest lr; the first step lowers the lr where the update
          is positive (the previous polarity starts all-negative).
        * Kept: bf16 parameters are updated with Kahan summation (``shift``).
        * Fixed: bf16 parameters with ``weight_decay=0`` (the default) raised
          UnboundLocalError at the first step.
        * Fixed: the closure runs with grad enabled (the original ran it under
          ``no_grad``); no host synchronisation (the int8 scale stays a tensor).
        * ``compile=True`` compiles the update on GPUs only: on the CPU the
          compiled code is slower than eager (int8 and bool state).
        * Kept: ``_get_lr(group, state)``, which diffusion-pipe's logging calls.
          Changed: before a parameter's first step (or when parameter swapping
          froze it) it returns a zero tensor where the original returned the
          float 0.0, which made ``torch.stack`` in that logging fail.
        * Changed: gradients are left in ``p.grad`` (the original moved them
          into a private buffer with a backward hook); the second moment is
          float32 from the first step; ``min_lr``, ``max_lr`` and ``lr_bump``
          may differ per param group; float16 parameters round stochastically
          on float16's grid.
        * Fixed: gradients above about 1.8e19 (whose squares overflow
          float32, see the README's NaN section) turned the weights NaN. The
          second moments now saturate below float32's largest value
          (``blocks.saturate_``), which leaves every smaller value as it was.
    """

    state_tensors: ClassVar[Mapping[str, StateInit]] = {"last_polarity": all_false}
    scalar_state_keys: ClassVar[frozenset[str]] = frozenset({"RMS", "lr_mask_scale", "avg_lr"})
    #: Created by ``_update`` (the lr mask, the second moment) and, for bf16, ``_write_param`` (Kahan's ``shift``).
    extra_state_keys: ClassVar[frozenset[str]] = SECOND_MOMENT_KEYS | {"lr_mask", "shift"}
    #: Inductor's CPU code loads and stores the int8 lr mask and the bool polarity slowly (a 1M-element
    #: batch: 12.5 ms compiled against 5.3 ms eager), so ``compile=True`` compiles for GPUs only.
    compile_on_cpu: ClassVar[bool] = False
    #: Every stepped parameter has these (an EnhancedAdafactor state, whose other keys are ours, has not).
    required_state_keys: ClassVar[frozenset[str]] = frozenset({"lr_mask", "last_polarity"})

    own_rules: ClassVar[Mapping[str, Rule]] = {
        "min_lr": NON_NEGATIVE,
        "max_lr": NON_NEGATIVE,
        "lr_bump": NON_NEGATIVE,
        "eps": Numbers(2, NON_NEGATIVE),
        "beta2": BETA,
        "do_paramiter_swapping": Flag(),
        "paramiter_swapping_factor": UNIT,
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-6,
        min_lr: float = 1e-7,
        max_lr: float = 1e-3,
        lr_bump: float = 1e-6,
        eps: tuple[float, float] = (1e-30, 1e-3),
        clip_threshold: float = 1.0,
        beta2: float = 0.999,
        weight_decay: float = 0.0,
        do_paramiter_swapping: bool = False,
        paramiter_swapping_factor: float = 0.1,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)
        if self.defaults["lr"] > HIGHEST_START_LR:
            warnings.warn(
                f"Automagic: start lr {lr} is above {HIGHEST_START_LR}; starting at {FALLBACK_START_LR} instead "
                "(Automagic adapts each element's lr itself, between min_lr and max_lr)",
                stacklevel=2,
            )
        if do_paramiter_swapping:
            self.swap_parameters(paramiter_swapping_factor)

    @classmethod
    def _check_group(cls, where: str, group: dict[str, Any]) -> None:
        if group["min_lr"] > group["max_lr"]:
            raise refused(cls.__name__, where, "min_lr", group["min_lr"], f"at most max_lr={group['max_lr']!r}")

    @staticmethod
    def _get_lr(param_group: dict[str, Any], param_state: Mapping[str, Any]) -> Tensor:
        """One parameter's mean per-element lr, as a 0-dim float32 tensor (0 before its first step).

        The original's name and arguments: diffusion-pipe's train.py calls it on every
        parameter of an optimizer class named ``Automagic``, stacks the values with
        ``torch.stack`` and logs them as ``train/automagic_lrs`` and ``train/automagic_avg_lr``.
        """
        if "avg_lr" in param_state:
            return param_state["avg_lr"]
        return torch.zeros((), device=param_group["params"][0].device)

    def swap_parameters(self, share: float) -> None:
        """Keep a random ``share`` of all parameter elements trainable; freeze the rest."""
        params = [p for group in self.param_groups for p in group["params"]]
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        random.shuffle(params)
        target, total = int(sum(p.numel() for p in params) * share), 0
        for p in params:
            total += p.numel()
            if total >= target:
                break
            p.requires_grad_(True)

    def _start_lr_mask(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        start = group["lr"] if group["lr"] <= HIGHEST_START_LR else FALLBACK_START_LR
        codes, scale = quantize_lr_mask(torch.full_like(p, start, dtype=torch.float32))
        return {"lr_mask": codes, "lr_mask_scale": scale}

    @staticmethod
    def _stepped_params(group: dict[str, Any]) -> list[Tensor]:
        """Also skips parameters frozen by parameter swapping (not tensors that can never require
        grad, such as integer ones: the step's check phase refuses those)."""
        stepped = PersonalizedOptimizer._stepped_params(group)
        return [p for p in stepped if p.requires_grad or not p.is_floating_point()]

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        if "lr_mask" not in state:
            state.update(self._start_lr_mask(p, group), **second_moment_state(p))
        state["RMS"] = rms_by_norm(p)
        update = adafactor_normalize_(state, grad, group["beta2"], group["eps"][0])
        update.div_((rms_by_norm(update) / group["clip_threshold"]).clamp_(min=1.0))

        polarity = update > 0
        # +lr_bump where the sign held, -lr_bump where it flipped (exactly; faster than torch.where)
        bump = (polarity == state["last_polarity"]).to(torch.float32).mul_(2 * group["lr_bump"]).sub_(group["lr_bump"])
        state["last_polarity"] = polarity
        lr = (state["lr_mask"].float() * state["lr_mask_scale"] + bump).clamp_(group["min_lr"], group["max_lr"])
        state["lr_mask"], state["lr_mask_scale"] = quantize_lr_mask(lr)
        state["avg_lr"] = item_mean(lr)

        update.mul_(lr)
        if group["weight_decay"] != 0:
            p.add_(p * -group["weight_decay"] * lr)
        p.sub_(update)

    def _write_param(self, p: Tensor, p32: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        if p.dtype != torch.bfloat16:
            super()._write_param(p, p32, state, group)
            return
        kahan_write_(p, p32, state)

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..base import LOW_PRECISION, PersonalizedOptimizer, hyperparameters
from ..blocks import copy_stochastic_
from ..checks import refuse_meta
from ..closure import closure_loss
from ..validation import BETA, POSITIVE, Flag, Number, NumberOrInf, Rule, refused

try:
    from prodigyopt import Prodigy as ProdigyOpt
except ImportError:  # the class still describes its settings (presets); the registry builds it only with prodigyopt
    ProdigyOpt = torch.optim.Optimizer

#: The state tensors prodigyopt updates in place (it only reads ``p0``).
UPDATED_STATE = ("exp_avg", "exp_avg_sq", "s")


class _KeywordProdigy(ProdigyOpt):
    """``prodigyopt.Prodigy`` taking its keywords as the one dict PersonalizedOptimizer passes on."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        super().__init__(params, **defaults)


class Prodigy(PersonalizedOptimizer, _KeywordProdigy):
    """Prodigy: prodigyopt's learning-rate-free Adam, validated, with d and d*lr in every param group.

    Prodigy is Adam that finds its own step size: it keeps an estimate ``d``
    of how far the weights have to travel, which starts tiny (``d0``) and
    grows during the first hundreds of steps; every step moves by about
    ``d * lr``. This class *is* ``prodigyopt.Prodigy`` (a subclass; install it
    with ``pip install 'personalized-optimizers[prodigy]'``): same keywords,
    same defaults, bit-identical float32 results, plus validation, safe
    bf16/fp16 handling, and two keys in every param group for loggers, set at
    construction and after every step:

    * ``group["d"]``: the current estimate d (the same for all groups);
    * ``group["d_lr"]``: ``group["d"] * group["lr"]``, the effective learning
      rate: the size of the next step at the lr of the last one. Log this
      one; ``group["lr"]`` stays near 1.0 by design.

    Args:
        params: parameters or param-group dicts.
        lr: leave it at 1.0; it multiplies the step size d finds, so a
            scheduler (warmup, cosine) on it works as usual. Lower it only if
            training is unstable, and prefer ``d_coef`` to scale the steps.
        betas: Adam's ``(beta1, beta2)``. (0.9, 0.99) adapts faster than the
            default (0.9, 0.999) and is popular for LoRA. ``beta1=0`` drops the
            momentum buffer (saves memory).
        beta3: smoothing of d's running sums; None means ``sqrt(beta2)``.
            Rarely touched.
        eps: added to Adam's denominator (scaled by d); leave it.
        weight_decay: shrinks the weights towards zero at each step, scaled by
            ``d * lr``; 0.01 to 0.1 is common for LoRA, 0 turns it off.
        decouple: True: AdamW-style decay applied to the weights. False: an L2
            term added to the gradient (which then also feeds d).
        use_bias_correction: Adam's bias correction of the step size; it damps
            the first thousand or so steps, which are otherwise inflated.
            Recommended for diffusion LoRA.
        safeguard_warmup: keeps lr out of d's estimate, so a warmup (small lr
            early on) does not inflate d. Recommended for diffusion LoRA and
            whenever the schedule has a warmup.
        d0: the initial d. Raise it (1e-5, 1e-4) if d takes too long to grow.
        d_coef: the knob to tune: it multiplies the estimate of d. 0.5 for
            gentler steps (overfitting, burned samples), 2.0 for bolder ones.
        growth_rate: the most d may grow per step; inf is no limit, 1.02 gives
            a gentle built-in warmup.
        fsdp_in_use: set True only for sharded parameters that prodigyopt
            cannot detect itself (PyTorch's own FSDP is detected).
        slice_p: estimate d from every ``slice_p``-th element only, which
            shrinks two of the four state buffers; about 11 is reasonable,
            1 is exact Prodigy.

    Differences from prodigyopt / known quirks:
        * Kept: the math. float32 results are bit-identical to prodigyopt's
          (tested with prodigyopt 1.1.2), and so is the state.
        * Kept: d is computed on the host. prodigyopt reads two numbers from
          the device per parameter tensor with a gradient at every step
          (``.item()``) and one more per tensor at its first step
          (``p.any()``); each waits for the GPU. This class adds no host
          synchronisation of its own.
        * Kept: all groups share one lr; a group may differ only by lr=0,
          otherwise ``step()`` raises RuntimeError. A group with lr=0 is not
          frozen: decoupled weight decay still applies to it (and with
          ``beta1=0`` its weights still move). To freeze weights, leave them
          out of the optimizer.
        * Kept: prodigyopt prints "Using decoupled weight decay" when
          weight_decay > 0 and decouple is True.
        * ``d_lr`` leaves out Adam's bias correction: with
          ``use_bias_correction=True`` the step actually taken is
          ``d_lr * sqrt(1 - beta2^k) / (1 - beta1^k)``, a factor that tends to 1.
        * Changed: bf16/fp16 parameters are updated in float32 and written back
          with stochastic rounding (prodigyopt did the math in half precision,
          where small updates vanish). The state keeps the parameter's dtype,
          so memory between steps is prodigyopt's; during ``step()`` the
          low-precision parameters, their gradients and updated state exist
          as temporary float32 copies.
        * Kept: with float16 parameters the second moment, which is scaled by
          d² (1e-15 at the start), underflows to zero in storage, so early
          steps can be far too large, as in prodigyopt. Prefer bf16 or float32
          parameters.
        * Fixed: with ``decouple=False`` prodigyopt added the weight decay to
          ``p.grad`` in place; the caller's gradient is no longer modified.
        * Changed: hyperparameters are validated. The constructor's lr must be
          > 0 (prodigyopt's rule); a param group may use lr=0. Sparse
          gradients, complex and integer parameters and meta-device
          parameters (d is computed from values on the host) are refused
          with a clear error before anything changes. The closure runs with
          grad enabled.
    """

    #: prodigyopt's own state (and its ``step``).
    extra_state_keys: ClassVar[frozenset[str]] = frozenset({"s", "p0", "exp_avg", "exp_avg_sq"})
    required_state_keys: ClassVar[frozenset[str]] = frozenset({"s", "p0", "exp_avg_sq"})

    #: d is global: no per-parameter update (NaNGuard checks gradients only; no gradient release).
    per_parameter_update: ClassVar[bool] = False
    item_batched: ClassVar[bool] = False

    own_rules: ClassVar[dict[str, Rule]] = {
        "beta3": dataclasses.replace(BETA, optional=True),
        "eps": POSITIVE,
        "decouple": Flag(),
        "use_bias_correction": Flag(),
        "safeguard_warmup": Flag(),
        "d0": POSITIVE,
        "d_coef": POSITIVE,
        "growth_rate": NumberOrInf(1.0),
        "fsdp_in_use": Flag(),
        "slice_p": Number(1.0, integral=True),
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = float("inf"),
        fsdp_in_use: bool = False,
        slice_p: int = 1,
        **unexpected: Any,
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    @classmethod
    def _check_group(cls, where: str, group: dict[str, Any]) -> None:
        # The defaults (constructor, preset) need lr > 0, as in prodigyopt; a param group may use 0.
        if "params" not in group and not POSITIVE.accepts(group["lr"]):
            expected = f"{POSITIVE.describe()} (only a param group may use lr=0)"
            raise refused(cls.__name__, where, "lr", group["lr"], expected)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        _publish_d_lr(self.param_groups[-1])

    def step_parameter(self, p: Tensor, group: dict[str, Any], i: int | None = None) -> None:
        """Not possible: Prodigy's step size d is computed from every gradient at once."""
        raise RuntimeError(
            "Prodigy cannot update one parameter at a time (its step size d needs every gradient at once); "
            "turn off the fused backward pass / gradient release for it"
        )

    # Replaces PersonalizedOptimizer.step: prodigyopt needs every parameter at once (d is global).
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimisation step; return the closure's loss, if a closure is given."""
        loss = closure_loss(closure)
        self._check_step([p for group in self.param_groups for p in group["params"] if p.grad is not None])
        with contextlib.ExitStack() as loans:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        loans.enter_context(self._lend(p, group))
            _prodigyopt_step(self)
        for group in self.param_groups:
            _publish_d_lr(group)
        return loss

    def _check_step(self, params: Iterable[Tensor]) -> None:
        """Also refuses meta-device parameters: prodigyopt reads values on the host."""
        params = list(params)
        super()._check_step(params)
        refuse_meta(type(self).__name__, self.param_groups, params, "Prodigy computes its step size d on the host")

    def _lend(self, p: Tensor, group: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
        """What ``p`` needs while prodigyopt's step works on it."""
        if p.dtype in LOW_PRECISION:
            return self._float32_working_copy(p)
        if group["weight_decay"] != 0 and not group["decouple"]:
            return _private_grad(p)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _float32_working_copy(self, p: Tensor) -> Iterator[None]:
        """Swap float32 copies of ``p``, its gradient and its updated state in, then round them back.

        The parameter keeps its storage; new or updated state tensors are
        rounded stochastically to the parameter's dtype.
        """
        own, grad, state = p.data, p.grad, self.state[p]
        p.data, p.grad = own.float(), grad.float()
        for key in UPDATED_STATE:
            if key in state:
                state[key] = state[key].float()
        try:
            yield
        finally:
            work = p.data
            p.data, p.grad = own, grad
            for key, value in state.items():
                if torch.is_tensor(value) and value.dtype != own.dtype:
                    state[key] = _rounded(value, own.dtype)
            copy_stochastic_(own, work)


@contextlib.contextmanager
def _private_grad(p: Tensor) -> Iterator[None]:
    """Give prodigyopt a copy of the gradient to add its coupled weight decay to."""
    grad = p.grad
    p.grad = grad.clone()
    try:
        yield
    finally:
        p.grad = grad


def _rounded(value: Tensor, dtype: torch.dtype) -> Tensor:
    """``value`` in ``dtype``, stochastically rounded."""
    low = torch.empty_like(value, dtype=dtype)
    copy_stochastic_(low, value)
    return low


def _prodigyopt_step(optimizer: Prodigy) -> None:
    """prodigyopt's own step, without the hooks torch wraps around a class's ``step`` (ours already ran them)."""
    inspect.unwrap(ProdigyOpt.step)(optimizer)


def _publish_d_lr(group: dict[str, Any]) -> None:
    group["d_lr"] = group["d"] * group["lr"]

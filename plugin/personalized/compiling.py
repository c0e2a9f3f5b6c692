"""The opt-in compiled path (``compile=True``): the same ``_update``, through ``torch.compile``.

Inductor fuses an update's dozens of elementwise passes into a few kernels.
Three things keep it from recompiling: the numbers that change every step
(``lr`` from a scheduler, debiasing betas) reach the compiled code as 0-dim
float32 tensors, never as Python floats (see
:meth:`personalized.base.PersonalizedOptimizer._scalars`); the updates scale
through :func:`personalized.blocks.add_scaled_` and friends, which use tensor
arithmetic for tensor scales; and batches of new shapes share one
dynamic-shape graph after the second shape. Per-item reductions run over one
flattened row per item, which compiles into far faster kernels.

Compilation needs a working ``torch.compile`` (a C++ compiler on the CPU,
Triton on a GPU). What fails to compile runs in eager mode with the same
results, after one warning; tiny batches always do.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: Graphs one optimizer may compile (dtypes, first steps, resets, shapes); torch's default is 8.
RECOMPILE_LIMIT = 64
#: Inductor settings that avoid a torch 2.13 CPU code-generation failure these updates trigger
#: (KeyError 'bufN' in outer-loop fusion with local buffers): no horizontal fusion of CPU loops,
#: and intermediate results stored rather than recomputed where they are used. They cost some
#: speed (an FCompass batch of 1M elements: 3.5 ms instead of 1.8 ms) but work for every optimizer.
INDUCTOR_OPTIONS = {"cpp.max_horizontal_fusion_size": 0, "realize_opcount_threshold": 0}
#: Batches smaller than this run eager: compiling gains little there, and Inductor's CPU code
#: generation fails on some tiny reductions (torch 2.13, e.g. two (6, 5) tensors).
MIN_COMPILED_ELEMENTS = 4096
#: Failures before any success after which compilation counts as unavailable here.
FAILURES_MEANING_UNAVAILABLE = 3


class CompiledUpdate:
    """``update`` compiled on first use. A batch whose update fails to compile runs eager (one
    warning per optimizer); after a few failures and no success, everything runs eager.
    ``on_cpu=False``: CPU tensors always run eager."""

    def __init__(self, update: Callable[..., None], owner: str, on_cpu: bool = True) -> None:
        self._eager = update
        self._owner = owner
        self._on_cpu = on_cpu
        self._compiled: Callable[..., None] | None = None
        self._uncompilable: set[tuple[Any, ...]] = set()
        self._successes = 0
        self.unavailable = False

    def __call__(
        self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]
    ) -> None:
        signature = (tuple(p.shape), p.dtype, p.device.type)
        wanted = p.numel() >= MIN_COMPILED_ELEMENTS and (self._on_cpu or p.device.type != "cpu")
        if wanted and not self.unavailable and signature not in self._uncompilable:
            try:
                if self._compiled is None:
                    self._compiled = torch.compile(self._eager, dynamic=None, options=INDUCTOR_OPTIONS)
                with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
                    self._compiled(p, grad, state, group, as_tensors(s))
                self._successes += 1
                return
            except Exception as error:  # whatever fails to compile runs eager
                self._failed(signature, error)
        self._eager(p, grad, state, group, s)

    def _failed(self, signature: tuple[Any, ...], error: Exception) -> None:
        first = not self._uncompilable
        self._uncompilable.add(signature)
        if self._successes == 0 and len(self._uncompilable) >= FAILURES_MEANING_UNAVAILABLE:
            self.unavailable = True
        if first:
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            warnings.warn(
                f"{self._owner}: compile=True, but torch.compile failed here ({type(error).__name__}: {reason}) "
                f"for tensors of shape {list(signature[0][1:])}; those run without compilation (same results)",
                stacklevel=4,
            )


def as_tensors(scalars: dict[str, Any]) -> dict[str, Any]:
    """Floats become 0-dim float32 CPU tensors (graph inputs, not constants); bools stay."""
    return {
        key: torch.tensor(value, dtype=torch.float32) if isinstance(value, float) else value
        for key, value in scalars.items()
    }

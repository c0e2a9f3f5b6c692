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
Triton on a GPU). When it fails the optimizer warns once and continues in
eager mode with the same results.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: Graphs one optimizer may compile (dtypes, first steps, resets, shapes); torch's default is 8.
RECOMPILE_LIMIT = 64


class CompiledUpdate:
    """``update`` compiled on first use; eager (after one warning) when compilation is unavailable."""

    def __init__(self, update: Callable[..., None], owner: str) -> None:
        self._eager = update
        self._owner = owner
        self._compiled: Callable[..., None] | None = None
        self.failed = False

    def __call__(
        self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]
    ) -> None:
        if not self.failed:
            try:
                if self._compiled is None:
                    self._compiled = torch.compile(self._eager, dynamic=None)
                with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
                    self._compiled(p, grad, state, group, as_tensors(s))
                return
            except Exception as error:  # any failure to compile means: run eager
                self.failed = True
                reason = (str(error).strip().splitlines() or [""])[0][:200]
                warnings.warn(
                    f"{self._owner}: compile=True, but torch.compile failed here ({type(error).__name__}: {reason}); "
                    "continuing without compilation (same results, eager speed)",
                    stacklevel=4,
                )
        self._eager(p, grad, state, group, s)


def as_tensors(scalars: dict[str, Any]) -> dict[str, Any]:
    """Floats become 0-dim float32 CPU tensors (graph inputs, not constants); bools stay."""
    return {
        key: torch.tensor(value, dtype=torch.float32) if isinstance(value, float) else value
        for key, value in scalars.items()
    }

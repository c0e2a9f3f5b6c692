"""The opt-in compiled path (``compile=True``): the same ``_update``, through ``torch.compile``.

Inductor fuses an update's dozens of elementwise passes into a few kernels.
Three things keep it from recompiling: the numbers that change every step
(``lr`` from a scheduler, debiasing betas) reach the compiled code as 0-dim
float32 tensors, never as Python floats (see
:meth:`personalized.base.PersonalizedOptimizer._scalars` and
:class:`ScalarInputs`); the updates scale through
:func:`personalized.blocks.add_scaled_` and friends, which use tensor
arithmetic for tensor scales; and batches of new shapes share a
dynamic-shape graph. Per-item reductions run over one flattened row per item,
which compiles into far faster kernels.

How it compiles depends on the device type of the parameters
(:func:`compile_settings`; one compiled callable per device type):

* CPU (C++ code from Inductor): :data:`CPU_INDUCTOR_OPTIONS` work around a
  torch 2.13 code-generation failure, batches under
  :data:`CPU_MIN_COMPILED_ELEMENTS` run eager, and ``dynamic=None``: the first
  shape of a graph compiles static, the second recompiles it dynamic.
  ``dynamic=True`` shortened the CPU's first step (compilation, on a LoRA of 8
  shapes) by about 10% for FCompass and 20 to 45% for Persona, but its dynamic
  C++ kernels ran up to 1.3 times slower than static ones on a model whose
  batches all have one shape, at every step; so the CPU keeps ``None``.
* every other device type, GPUs (Triton code): Inductor's defaults (the CPU
  workarounds would store every intermediate in memory, which undoes the
  fusion), every batch compiles, tiny ones included (they save the most kernel
  launches), and ``dynamic=True``: batches of every shape share one graph from
  the start (one per number of dimensions and per branch an update takes).

Stochastic rounding of bf16/fp16 results stays out of the compiled code (the
write-back runs after it, eager), so its draws come from the device's
generator, seeded by ``torch.manual_seed``, exactly as on the eager path.

Compilation needs a working ``torch.compile`` (a C++ compiler on the CPU,
Triton on a GPU). What fails to compile runs in eager mode with the same
results, after one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

#: Graphs one optimizer may compile (dtypes, first steps, resets, shapes); torch's default is 8.
RECOMPILE_LIMIT = 64
#: Inductor settings, for CPU code only, that avoid a torch 2.13 CPU code-generation failure these
#: updates trigger (KeyError 'bufN' in outer-loop fusion with local buffers): no horizontal fusion of
#: CPU loops, and intermediate results stored rather than recomputed where they are used. They cost
#: some speed (an FCompass batch of 1M elements: 3.5 ms instead of 1.8 ms) but work for every optimizer.
CPU_INDUCTOR_OPTIONS = {"cpp.max_horizontal_fusion_size": 0, "realize_opcount_threshold": 0}
#: CPU batches smaller than this run eager: compiling gains little there, and Inductor's CPU code
#: generation fails on some tiny reductions (torch 2.13, e.g. two (6, 5) tensors).
CPU_MIN_COMPILED_ELEMENTS = 4096
#: Failures before any success after which compilation counts as unavailable here.
FAILURES_MEANING_UNAVAILABLE = 3


@dataclass(frozen=True)
class CompileSettings:
    """How updates compile for one device type (:func:`compile_settings`)."""

    #: Inductor options (``torch.compile(options=...)``).
    options: dict[str, Any]
    #: ``torch.compile(dynamic=...)``: None compiles a shape static first and dynamic at the second
    #: shape; True compiles dynamic from the start.
    dynamic: bool | None
    #: Batches with fewer elements run eager.
    min_elements: int


def compile_settings(device_type: str) -> CompileSettings:
    """The settings for parameters on ``device_type`` (``"cpu"``, ``"cuda"``...): the CPU
    workarounds for the CPU only, Inductor's defaults and dynamic shapes on every other device."""
    if device_type == "cpu":
        return CompileSettings(dict(CPU_INDUCTOR_OPTIONS), dynamic=None, min_elements=CPU_MIN_COMPILED_ELEMENTS)
    return CompileSettings({}, dynamic=True, min_elements=1)


class ScalarInputs:
    """The step's numbers as compiled-code inputs: one 0-dim float32 CPU tensor per key, kept
    between steps and refilled in place, so a step allocates no tensor and a new ``lr`` compiles
    nothing new (a tensor is a graph input, a Python float a constant).

    They stay on the CPU for every device: ``fill_`` on a CPU tensor is a host write (no kernel
    launch, no transfer), and Inductor passes a 0-dim CPU input of a GPU graph to its kernels as a
    plain number read on the host at launch (no device sync). On the GPU each refill would be a
    kernel launch per number and batch."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def __call__(self, scalars: dict[str, Any]) -> dict[str, Any]:
        """``scalars`` with every float replaced by its key's buffer, refilled; bools and the rest stay."""
        inputs = dict(scalars)
        for key, value in scalars.items():
            if isinstance(value, float):
                buffer = self._buffers.get(key)
                if buffer is None:
                    buffer = self._buffers[key] = torch.empty((), dtype=torch.float32)
                inputs[key] = buffer.fill_(value)
        return inputs


class CompiledUpdate:
    """``update`` compiled on first use, once per device type (:func:`compile_settings`). A batch whose
    update fails to compile runs eager (one warning per optimizer); after a few failures and no
    success, everything runs eager. ``on_cpu=False``: CPU tensors always run eager."""

    def __init__(self, update: Callable[..., None], owner: str, on_cpu: bool = True) -> None:
        self._eager = update
        self._owner = owner
        self._on_cpu = on_cpu
        self._compiled: dict[str, Callable[..., None]] = {}
        self._scalar_inputs = ScalarInputs()
        self._uncompilable: set[tuple[Any, ...]] = set()
        self._successes = 0
        self.unavailable = False

    def __call__(
        self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]
    ) -> None:
        device_type = p.device.type
        signature = (tuple(p.shape), p.dtype, device_type)
        settings = compile_settings(device_type)
        wanted = p.numel() >= settings.min_elements and (self._on_cpu or device_type != "cpu")
        if wanted and not self.unavailable and signature not in self._uncompilable:
            try:
                compiled = self._compiled.get(device_type)
                if compiled is None:
                    compiled = torch.compile(self._eager, dynamic=settings.dynamic, options=settings.options)
                    self._compiled[device_type] = compiled
                with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
                    compiled(p, grad, state, group, self._scalar_inputs(s))
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

"""The device check: one run on a GPU answers whether the optimizers are right and fast there.

Run from a checkout, with nothing installed but PyTorch (and what it finds)::

    PYTHONPATH=plugin python benchmarks/gpu_check.py --json gpu_check.json          # CUDA, every section
    PYTHONPATH=plugin python benchmarks/gpu_check.py --sections compile --budget 540
    python benchmarks/gpu_check.py --device cpu                                     # small sizes, seconds to minutes

It prints a table per section and writes every figure to JSON. It asserts
nothing (its exit status is 0 unless the command line is wrong): read the
``passed`` flags and the ratios. Sections, in the order they run:

``parity``
    The recorded reference trajectories (``tests/refdata``, read with safetensors,
    replayed teacher-forced as ``tests/test_reference.py`` does) on the device:
    float32 cases within :data:`FLOAT32_TOLERANCE` on the default, the multi-tensor
    (3 copies of each parameter) and the one-tensor-at-a-time path; bf16 cases
    within :func:`within_stochastic_tolerance` (another device draws other random
    numbers for stochastic rounding, so a value may land on the other neighbour).
    The cases are those the defaults reproduce on the CPU in the same run (the tests'
    list of them needs pytest); the others are listed, not replayed. It passes when
    at least one case was replayed and every replayed case passed.
``syncs``
    Host syncs of one ``step()`` after the first, eager, float32 and bf16 parameters,
    ``foreach`` on and off. On CUDA ``torch.cuda.set_sync_debug_mode("warn")`` is on
    around ``step()`` and every warning is counted (what ``"error"`` would raise at);
    on any device the Python-level reads (``.item()``, ``bool()``...) are counted, and on
    a CUDA model every operator that creates a CPU tensor inside ``step()`` is named.
``memory``
    Peak memory of a training step of a small MLP (``benchmarks/speed.py``'s), plain,
    with ``personalized.GradientRelease``, with ``bf16_state=True`` and with both:
    ``torch.cuda.max_memory_allocated()`` on CUDA, the allocator high-water on the CPU.
``bnb``
    AdamW8bitKahan, whose 8-bit state goes through bitsandbytes' kernels (CUDA kernels
    on a GPU): its recordings, its steps next to bitsandbytes' own AdamW8bit, speed
    and syncs. Skipped with a note without bitsandbytes.
``prodigy``
    Prodigy next to prodigyopt's own on the device, speed and syncs (prodigyopt
    computes its step size on the host: two syncs per tensor, documented). Skipped
    with a note without prodigyopt.
``speed``
    Eager multi-tensor ``step()`` against ``torch.optim.AdamW(fused=True)`` over the same
    parameters and gradients, interleaved (``benchmarks/speed.py``), timed with CUDA
    events on a GPU: the LoRA set (800 tensors, 13.7M elements), a few 4096 x 4096
    tensors and a rank-16 SDXL UNet LoRA (:func:`sdxl_lora_shapes`). On a GPU each row
    carries the restated target (:data:`TARGETS`) and whether it is met.
``compile``
    The same with ``compile=True``: the first step (compilation included), the graphs
    compiled, how far compiled steps part from eager ones, that a ``LambdaLR`` changing
    the lr every step compiles nothing new, the host syncs of a compiled step, and any
    fallback to eager (the optimizer's warning).
``plain``
    The same with ``foreach=False`` (one tensor at a time): last, as it matters least.

A timing round takes ``--steps`` steps, fewer (down to one) for optimizers whose step
takes longer than :data:`ROUND_MS`, so that the slow paths fit the budget.

``--budget`` bounds the whole run: what does not fit is skipped, with the reason in
the JSON. On a GPU start with the defaults (under 5 minutes is the aim), then rerun
what was skipped with ``--sections``. Without CUDA the check runs on the CPU on small
sizes, so that it keeps working (``tests/test_gpu_check.py`` runs it).

bitsandbytes and prodigyopt are imported if present; on a machine without them (and
without network) put their wheels into a git-ignored folder (``--vendor``, default
``benchmarks/vendor``): each ``*.whl`` there is unpacked into ``<folder>/unpacked``
(a wheel is a zip archive), which goes on ``sys.path``. Nothing is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import traceback
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
for folder in (BENCHMARKS, ROOT / "tests"):  # speed.py, and tests/reference.py (safetensors and torch only)
    if str(folder) not in sys.path:
        sys.path.append(str(folder))

import speed  # noqa: E402

import personalized  # noqa: E402

#: The order sections run in (cheap and decisive first, compilation last).
SECTIONS = ("parity", "syncs", "memory", "bnb", "prodigy", "speed", "compile", "plain")
#: Largest parameter error of a float32 recording replayed on the device.
FLOAT32_TOLERANCE = 1e-5
#: bf16 recordings: the tolerance the tests use where stochastic rounding draws other numbers
#: (tests/test_fast_paths.py): ``|ours - recorded| <= BF16_ATOL + BF16_RTOL * |recorded|``.
BF16_RTOL = 4 * torch.finfo(torch.bfloat16).eps
BF16_ATOL = 1e-3
#: Default of ``--budget``: the whole run in under 5 minutes.
DEFAULT_BUDGET_SECONDS = 280.0
#: The restated targets (the issue), as ratios to fused AdamW: compiled on the LoRA set and on
#: large tensors, eager multi-tensor on the LoRA set.
TARGETS = {("compile", "lora"): 1.5, ("compile", "large"): 1.3, ("foreach", "lora"): 2.0}
#: Optimizers whose update is not elementwise plus per-tensor reductions: no target applies.
NO_TARGET = {
    "SCORN": "Newton-Schulz matrix products",
    "AdamW8bitKahan": "bitsandbytes quantisation",
    "Prodigy": "step size computed on the host",
}
#: A rank-16 SDXL UNet LoRA (kohya's default targets: every Linear of the transformer blocks,
#: proj_in and proj_out): per width, the transformer blocks and the attention modules holding them.
SDXL_RANK = 16
SDXL_CROSS_ATTENTION = 2048
SDXL_WIDTHS = ((640, 10, 5), (1280, 60, 6))
#: The large-tensor set.
LARGE_SHAPE, LARGE_COUNT = (4096, 4096), 4
#: Slow optimizers (the one-tensor-at-a-time path on a GPU) take fewer steps per timing round, down
#: to one, so that a round lasts about this many milliseconds.
ROUND_MS = 200.0
#: Tensor shapes of the syncs section (two alike, so the multi-tensor path stacks them).
SYNC_SHAPES = [(64, 32), (64, 32), (32,), (8, 4, 3, 3)]


# -- parameter sets ------------------------------------------------------------------------


def linear_lora(fan_in: int, fan_out: int, rank: int) -> list[tuple[int, int]]:
    """The two LoRA factors of a ``Linear(fan_in, fan_out)``: down ``(rank, fan_in)``, up ``(fan_out, rank)``."""
    return [(rank, fan_in), (fan_out, rank)]


def sdxl_lora_shapes(small: bool = False) -> list[tuple[int, int]]:
    """Parameter shapes of a rank-16 LoRA on SDXL's UNet (1,444 tensors, 42.6M elements).

    Per transformer block of width ``c``: self-attention q, k, v, out (``c -> c``), cross-attention
    q and out (``c -> c``), k and v (2048 -> ``c``), the GEGLU projection (``c -> 8c``) and the
    feed-forward output (``4c -> c``); per attention module proj_in and proj_out (``c -> c``).
    SDXL has 10 blocks in 5 modules at width 640 and 60 in 6 at 1280. ``small``: widths and the
    cross-attention width divided by 16, one block and one module per width.
    """
    divisor, shapes = (16 if small else 1), []
    cross = SDXL_CROSS_ATTENTION // divisor
    for width, blocks, modules in SDXL_WIDTHS:
        c = width // divisor
        block = [(c, c)] * 6 + [(cross, c)] * 2 + [(c, 8 * c), (4 * c, c)]
        for fan_in, fan_out in block * (1 if small else blocks) + [(c, c)] * 2 * (1 if small else modules):
            shapes += linear_lora(fan_in, fan_out, SDXL_RANK)
    return shapes


def parameter_sets(small: bool) -> dict[str, list[tuple[int, ...]]]:
    """The sets timed: ``lora``, ``sdxl`` and ``large`` (small versions for a CPU run)."""
    large = [(256, 256)] * 2 if small else [LARGE_SHAPE] * LARGE_COUNT
    return {"lora": speed.lora_shapes(quick=small), "sdxl": sdxl_lora_shapes(small), "large": large}


# -- running sections within a budget ----------------------------------------------------------


class Budget:
    """Seconds left for the whole run; what starts after they are spent is skipped."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def spent(self) -> bool:
        return time.monotonic() >= self.deadline

    @property
    def reason(self) -> str:
        return f"time budget of {self.seconds:g} s spent (--budget)"


@dataclass
class Section:
    """What one section found: rows for its table, notes, and why it (or part of it) was skipped."""

    name: str
    status: str = "ran"  #: ran, partial (the budget ran out midway), skipped, or failed (an exception)
    reason: str | None = None  #: why it was skipped, partial or failed
    seconds: float = 0.0
    passed: bool | None = None  #: parity checks: whether every row passed
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> Section:
        self.status, self.reason = "skipped", reason
        return self

    def out_of_time(self, budget: Budget) -> bool:
        """True (and the section marked partial) once the budget is spent."""
        if budget.spent():
            self.status, self.reason = "partial", budget.reason
            return True
        return False


@dataclass
class Context:
    """Everything a section needs: the device, the optimizers, sizes and the budget."""

    device: torch.device
    optimizers: list[tuple[str, type]]  #: those that could be built
    requested: set[str]  #: every name asked for (canonical)
    small: bool
    steps: int
    rounds: int
    budget: Budget

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def timer(self, optimizer: torch.optim.Optimizer, steps: int) -> float:
        """Milliseconds per ``step()``: CUDA events on a GPU, the wall clock on the CPU."""
        if not self.cuda:
            return speed.time_steps(optimizer, steps)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            optimizer.step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / steps


# -- measuring ---------------------------------------------------------------------------------


def against_adamw(ctx: Context, factory: speed.OptimizerFactory, shapes: Sequence[tuple[int, ...]]) -> dict[str, Any]:
    """``factory``'s optimizer timed against fused AdamW on the same parameters, interleaved
    (:func:`speed.interleaved_rounds`); returns the figures and the optimizer (key ``optimizer``)."""
    params = speed.make_parameters(shapes, device=ctx.device)
    baseline, candidate = speed.fused_adamw(params), factory(params)
    first_step_ms = ctx.timer(candidate, 1)
    ctx.timer(baseline, 1)
    warm = ctx.timer(candidate, 1), ctx.timer(baseline, 3)
    steps = max(1, min(ctx.steps, int(ROUND_MS / warm[0])))
    base_ms, cand_ms = speed.interleaved_rounds(
        baseline, candidate, steps, ctx.rounds, speed.baseline_steps(steps, *warm), ctx.timer
    )
    per_round = [c / b for c, b in zip(cand_ms, base_ms)]
    return {
        "ms_per_step": statistics.median(cand_ms),
        "adamw_ms_per_step": statistics.median(base_ms),
        "ratio": statistics.median(cand_ms) / statistics.median(base_ms),
        "ratio_low": min(per_round),
        "ratio_high": max(per_round),
        "first_step_ms": first_step_ms,
        "state_bytes_per_element": speed.state_bytes(candidate) / speed.element_count(params),
        "optimizer": candidate,
    }


class HostReads(TorchDispatchMode):
    """Counts Python-level reads of tensor values (``.item()``, ``bool()``, ...: each one a host sync on
    a GPU) and, when ``device`` is not the CPU, names the operators that create CPU tensors."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.reads = 0
        self.cpu_tensors: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += 1
        out = func(*args, **(kwargs or {}))
        if self.device.type != "cpu":
            outputs = out if isinstance(out, (tuple, list)) else [out]
            if any(isinstance(t, Tensor) and t.device.type == "cpu" for t in outputs):
                self.cpu_tensors[str(func)] += 1
        return out


@contextlib.contextmanager
def cuda_sync_warnings(enabled: bool) -> Iterator[list[str]]:
    """``torch.cuda.set_sync_debug_mode("warn")`` while active; yields the messages of the syncs."""
    messages: list[str] = []
    if not enabled:
        yield messages
        return
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield messages
        finally:
            torch.cuda.set_sync_debug_mode(0)
    messages += [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]


def step_syncs(optimizer: torch.optim.Optimizer, device: torch.device, count_reads: bool = True) -> dict[str, Any]:
    """Host syncs of one ``step()``: CUDA sync-debug warnings, Python-level reads and the operators
    that made CPU tensors on a GPU model (``count_reads=False``: only the first, for compiled steps,
    which must not run under a dispatch mode)."""
    reads = HostReads(device)
    with cuda_sync_warnings(device.type == "cuda") as messages:
        with reads if count_reads else contextlib.nullcontext():
            optimizer.step()
    return {
        "cuda_syncs": len(messages) if device.type == "cuda" else None,
        "host_reads": reads.reads if count_reads else None,
        "cpu_tensors": dict(reads.cpu_tensors),
        "first_sync": messages[0] if messages else None,
    }


def within_stochastic_tolerance(ours: Tensor, recorded: Tensor) -> Tensor:
    """Elementwise error as a share of the bf16 tolerance (1 or less passes)."""
    return (ours.float() - recorded.float()).abs() / (BF16_ATOL + BF16_RTOL * recorded.float().abs())


def compiled_graphs() -> int:
    """Graphs Dynamo compiled so far in this process."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def relative_difference(a: Sequence[Tensor], b: Sequence[Tensor], start: Sequence[Tensor]) -> float:
    """Largest ``|a - b|`` over the largest ``|b - start|`` (the update): how far two runs part."""
    moved = max((y - s).abs().max().item() for y, s in zip(b, start))
    return max((x - y).abs().max().item() for x, y in zip(a, b)) / max(moved, 1e-30)


def options_for(cls: type, **options: Any) -> dict[str, Any] | None:
    """``options`` if ``cls`` takes all of them, else None."""
    taken = speed.accepted(cls, options)
    return taken if len(taken) == len(options) else None


# -- the sections ------------------------------------------------------------------------------


def run_parity(ctx: Context, section: Section) -> None:
    """Replay the recordings of the selected optimizers that need only torch, on every path.

    A case counts where the defaults reproduce it on the CPU (the recordings of the originals'
    fixed defects do not: they are listed with the CPU's error and not replayed on the device).
    """
    try:
        import reference  # tests/reference.py: safetensors and torch; pytest only for the tests' records
    except ImportError as error:
        section.skip(f"tests/reference.py cannot be imported here ({error})")
        return
    names = [name for name, _ in ctx.optimizers if name in personalized.registry.OPTIMIZERS]
    cpu = torch.device("cpu")
    for case_name in reference.cases(names, status="ok"):
        case = reference.load(case_name)
        cls = personalized.get_optimizer(case.optimizer)
        if case.dtype == torch.float32:
            limit, unit, measure = FLOAT32_TOLERANCE, "abs", reference.absolute_error
            paths = {"default": {}, "foreach, 3 copies": dict(copies=3, foreach=True)}
            paths["foreach=False"] = dict(copies=2, foreach=False)
        else:
            limit, unit, measure = 1.0, "share of bf16 tolerance", within_stochastic_tolerance
            paths = {"default": {}}
        for path, kwargs in paths.items():
            if section.out_of_time(ctx.budget):
                return
            row = {"case": case_name, "path": path, "limit": limit, "unit": unit}
            row["cpu_error"] = max(reference.replay(case, cls, device=cpu, measure=measure, **kwargs))
            if row["cpu_error"] > limit:
                row |= {"error": None, "passed": None, "note": "not reproduced on the CPU either: a fixed defect"}
            else:
                errors = (
                    [row["cpu_error"]]
                    if not ctx.cuda
                    else reference.replay(case, cls, device=ctx.device, measure=measure, **kwargs)
                )
                row |= {"error": max(errors), "passed": max(errors) <= limit}
            section.rows.append(row)
    checked = [row["passed"] for row in section.rows if row["passed"] is not None]
    section.passed = bool(checked) and all(checked)


def run_syncs(ctx: Context, section: Section) -> None:
    for name, cls in ctx.optimizers:
        for dtype in (torch.float32, torch.bfloat16):
            for foreach in (True, False):
                if section.out_of_time(ctx.budget):
                    return
                options = options_for(cls, foreach=foreach)
                if options is None and not foreach:
                    continue  # one path only: recorded once
                params = [nn.Parameter(p.detach().to(dtype)) for p in speed.make_parameters(SYNC_SHAPES)]
                params = [nn.Parameter(p.detach().to(ctx.device)) for p in params]
                optimizer = speed.preset_factory(name, options)(params)
                for p in params:
                    p.grad = torch.randn_like(p)
                optimizer.step()  # creates the state; the second step is the one counted
                for p in params:
                    p.grad = torch.randn_like(p)
                syncs = step_syncs(optimizer, ctx.device)
                expected = name == "Prodigy"
                clean = not syncs["cpu_tensors"] and not syncs["host_reads"] and not syncs["cuda_syncs"]
                section.rows.append(
                    dict(
                        optimizer=name, dtype=str(dtype).removeprefix("torch."), foreach=options is not None and foreach
                    )
                    | syncs
                    | {"passed": clean or expected, "expected": "prodigyopt's host step size" if expected else None}
                )
    section.passed = all(row["passed"] for row in section.rows)


def run_memory(ctx: Context, section: Section) -> None:
    model = speed.QUICK_MEMORY if ctx.small else dict(width=speed.MEMORY_WIDTH, depth=speed.MEMORY_DEPTH)
    model = {**dict(batch=speed.MEMORY_BATCH), **model}

    def peak(factory: speed.OptimizerFactory, release: bool) -> int:
        if ctx.cuda:
            return speed.cuda_peak_bytes(factory, release, **model)
        return speed.measure_memory("", factory, release, **model).peak_bytes

    section.notes.append(
        f"{model['depth']} x (Linear({model['width']}, {model['width']}) + GELU), batch {model['batch']}; "
        + ("torch.cuda.max_memory_allocated()" if ctx.cuda else "parameters + state + CPU allocator high-water")
    )
    section.rows.append({"optimizer": "torch AdamW(fused)", "plain": peak(speed.fused_adamw, False)})
    for name, cls in ctx.optimizers:
        if section.out_of_time(ctx.budget):
            return
        row: dict[str, Any] = {"optimizer": name}
        bf16 = options_for(cls, bf16_state=True)
        for label, release, options in (
            ("plain", False, {}),
            ("release", True, {}),
            ("bf16_state", False, bf16),
            ("release, bf16_state", True, bf16),
        ):
            if options is None or (release and not getattr(cls, "per_parameter_update", True)):
                row[label] = None
                continue
            row[label] = peak(speed.preset_factory(name, options), release)
        section.rows.append(row)


def run_bnb(ctx: Context, section: Section) -> None:
    if "AdamW8bitKahan" not in ctx.requested:
        section.skip("AdamW8bitKahan is not in --optimizers")
        return
    try:
        import bitsandbytes as bnb
    except ImportError as error:
        section.skip(f"bitsandbytes is not installed here ({error}); see --vendor")
        return
    cls = personalized.get_optimizer("AdamW8bitKahan")
    section.notes.append(f"bitsandbytes {getattr(bnb, '__version__', '?')}")
    try:
        import reference
    except ImportError as error:
        section.notes.append(f"recordings not replayed: reading tests/refdata needs safetensors ({error})")
    else:
        for case_name in reference.cases(["AdamW8bitKahan"], status="ok"):
            case = reference.load(case_name)
            if case.dtype != torch.float32 or "state8bit" in case_name:
                continue  # bf16 and 8-bit recordings are checked by the CPU tests; here float32 math on the device
            worst = max(reference.replay(case, cls, device=ctx.device, weight_decay=0.0))
            section.rows.append(
                dict(check=f"recording {case_name}", figure=worst, limit=FLOAT32_TOLERANCE)
                | {"passed": worst <= FLOAT32_TOLERANCE}
            )
    # Next to bitsandbytes' own AdamW8bit (its fused kernel on CUDA), 10 steps on the LoRA set.
    shapes = speed.lora_shapes(quick=True)
    ours_params, their_params = (speed.make_parameters(shapes, device=ctx.device) for _ in range(2))
    start = [p.detach().clone() for p in ours_params]
    settings = dict(lr=1e-3, weight_decay=0.01)
    ours, theirs = cls(ours_params, stabilize=False, **settings), bnb.optim.AdamW8bit(their_params, **settings)
    for _ in range(10):
        ours.step()
        theirs.step()
    apart = relative_difference(ours_params, their_params, start)
    section.rows.append(
        {"check": "10 steps next to bnb.optim.AdamW8bit (share of the update)", "figure": apart, "limit": 0.05}
        | {"passed": apart <= 0.05}
    )
    if section.out_of_time(ctx.budget):
        return
    for label, factory in (
        ("AdamW8bitKahan", speed.preset_factory("AdamW8bitKahan")),
        ("bnb.optim.AdamW8bit", lambda params: bnb.optim.AdamW8bit(params, lr=1e-4)),
    ):
        figures = against_adamw(ctx, factory, parameter_sets(ctx.small)["lora"])
        syncs = step_syncs(figures.pop("optimizer"), ctx.device)
        section.rows.append({"check": f"{label} speed, LoRA set", **figures, **syncs})
    section.passed = all(row.get("passed", True) for row in section.rows)


def run_prodigy(ctx: Context, section: Section) -> None:
    if "Prodigy" not in ctx.requested:
        section.skip("Prodigy is not in --optimizers")
        return
    try:
        import prodigyopt
    except ImportError as error:
        section.skip(f"prodigyopt is not installed here ({error}); see --vendor")
        return
    shapes = speed.lora_shapes(quick=True)
    ours_params, their_params = (speed.make_parameters(shapes, device=ctx.device) for _ in range(2))
    start = [p.detach().clone() for p in ours_params]
    ours = personalized.get_optimizer("Prodigy")(ours_params, lr=1.0)
    theirs = prodigyopt.Prodigy(their_params, lr=1.0)
    for _ in range(10):
        ours.step()
        theirs.step()
    apart = relative_difference(ours_params, their_params, start)
    section.rows.append(
        {"check": "10 steps next to prodigyopt.Prodigy (share of the update)", "figure": apart, "limit": 1e-5}
        | {"passed": apart <= 1e-5}
    )
    if not section.out_of_time(ctx.budget):
        figures = against_adamw(ctx, speed.preset_factory("Prodigy"), parameter_sets(ctx.small)["lora"])
        syncs = step_syncs(figures.pop("optimizer"), ctx.device)
        section.rows.append({"check": "speed, LoRA set", **figures, **syncs, "expected": "2 host reads per tensor"})
    section.passed = all(row.get("passed", True) for row in section.rows)


def target_of(ctx: Context, name: str, mode: str, set_name: str) -> float | str | None:
    """The restated target ratio for this optimizer, mode and set on a GPU, why none applies, or None."""
    target = TARGETS.get((mode, set_name)) if ctx.cuda else None
    if target is None:
        return None
    return NO_TARGET.get(name, target)


def speed_row(ctx: Context, name: str, mode: str, set_name: str, figures: dict[str, Any]) -> dict[str, Any]:
    """A row of the speed or compile table, with the target that applies and whether it is met."""
    target = target_of(ctx, name, mode, set_name)
    met = figures["ratio"] <= target if isinstance(target, float) else None
    return {"optimizer": name, "mode": mode, "set": set_name, **figures, "target": target, "meets_target": met}


def run_eager(ctx: Context, section: Section, mode: str, options: dict[str, Any]) -> None:
    """Eager steps with ``options`` on every set, against fused AdamW (AdamW8bitKahan and Prodigy
    have sections of their own)."""
    sets = parameter_sets(ctx.small)
    for set_name in ("lora", "large", "sdxl"):
        for name, cls in ctx.optimizers:
            if section.out_of_time(ctx.budget):
                return
            taken = options_for(cls, **options)
            if taken is None or not getattr(cls, "item_batched", False):
                continue
            figures = against_adamw(ctx, speed.preset_factory(name, taken), sets[set_name])
            figures.pop("optimizer")
            section.rows.append(speed_row(ctx, name, mode, set_name, figures))


def run_speed(ctx: Context, section: Section) -> None:
    run_eager(ctx, section, "foreach", {})


def run_plain(ctx: Context, section: Section) -> None:
    run_eager(ctx, section, "foreach=False", {"foreach": False})


def run_compile(ctx: Context, section: Section) -> None:
    sets = parameter_sets(ctx.small)
    for set_name in ("lora", "large", "sdxl"):
        for name, cls in ctx.optimizers:
            if section.out_of_time(ctx.budget):
                return
            options = options_for(cls, compile=True)
            if options is None:
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                graphs_before = compiled_graphs()
                figures = against_adamw(ctx, speed.preset_factory(name, options), sets[set_name])
                compiled = figures.pop("optimizer")
                graphs = compiled_graphs() - graphs_before
                # A LambdaLR changes the lr at every step: nothing may compile again.
                scheduler = torch.optim.lr_scheduler.LambdaLR(compiled, lambda step: 1 / (1 + step))
                before = compiled_graphs()
                for _ in range(3):
                    compiled.step()
                    scheduler.step()
                recompiles = compiled_graphs() - before
                syncs = step_syncs(compiled, ctx.device, count_reads=False)
                agreement = compiled_against_eager(ctx, name, options, sets[set_name])
            fallbacks = [str(w.message).splitlines()[0] for w in caught if "compile=True" in str(w.message)]
            row = speed_row(ctx, name, "compile", set_name, figures)
            row |= {"graphs": graphs, "recompiles_under_lambdalr": recompiles, "compiled_vs_eager": agreement}
            row |= {"cuda_syncs": syncs["cuda_syncs"], "fallbacks": fallbacks}
            section.rows.append(row)


def compiled_against_eager(
    ctx: Context, name: str, options: dict[str, Any], shapes: Sequence[tuple[int, ...]]
) -> float:
    """How far two compiled steps part from two eager ones (share of the update)."""
    runs = []
    for taken in (options, {}):
        params = speed.make_parameters(shapes, device=ctx.device)
        start = [p.detach().clone() for p in params]
        optimizer = speed.preset_factory(name, taken)(params)
        for _ in range(2):
            optimizer.step()
        runs.append([p.detach() for p in params])
    return relative_difference(runs[0], runs[1], start)


RUNNERS: dict[str, Callable[[Context, Section], None]] = {
    "parity": run_parity,
    "syncs": run_syncs,
    "memory": run_memory,
    "bnb": run_bnb,
    "prodigy": run_prodigy,
    "speed": run_speed,
    "compile": run_compile,
    "plain": run_plain,
}


# -- output ------------------------------------------------------------------------------------


def cell(value: Any) -> str:
    """A table cell: ratios and errors in short form, bytes in MiB, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} x{v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return "; ".join(map(str, value)) or "-"
    return str(value)


#: Columns printed per section (the JSON has every field).
COLUMNS = {
    "parity": ["case", "path", "error", "cpu_error", "limit", "passed", "note"],
    "syncs": ["optimizer", "dtype", "foreach", "cuda_syncs", "host_reads", "cpu_tensors", "passed", "expected"],
    "memory": ["optimizer", "plain", "release", "bf16_state", "release, bf16_state"],
    "bnb": ["check", "figure", "limit", "passed", "ratio", "cuda_syncs", "host_reads"],
    "prodigy": ["check", "figure", "limit", "passed", "ratio", "cuda_syncs", "host_reads", "expected"],
    "plain": ["optimizer", "set", "ratio", "ratio_low", "ratio_high", "ms_per_step"],
    "speed": ["optimizer", "mode", "set", "ratio", "ratio_low", "ratio_high", "ms_per_step", "target", "meets_target"],
    "compile": [
        *("optimizer", "set", "ratio", "first_step_ms", "graphs", "recompiles_under_lambdalr", "compiled_vs_eager"),
        *("cuda_syncs", "target", "meets_target", "fallbacks"),
    ],
}


def section_text(section: Section) -> str:
    """The section's heading, notes and table."""
    head = f"== {section.name}: {section.status}" + (f" ({section.reason})" if section.reason else "")
    head += f", {section.seconds:.1f} s" + ("" if section.passed is None else f", passed: {cell(section.passed)}")
    lines = [head, *section.notes]
    if section.rows:
        columns = COLUMNS[section.name]
        if section.name == "memory":
            rows = [[row["optimizer"], *(speed.mib(row.get(c)) for c in columns[1:])] for row in section.rows]
        else:
            rows = [[cell(row.get(c)) for c in columns] for row in section.rows]
        lines.append(speed.format_table(columns, rows))
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------


def vendor_path(folder: Path) -> Path | None:
    """Unpack the wheels in ``folder`` (once) into ``folder/unpacked`` and return that, or None."""
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if not wheels:
        return None
    unpacked = folder / "unpacked"
    for wheel in wheels:
        marker = unpacked / f".{wheel.name}"
        if not marker.exists():
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(unpacked)
            marker.touch()
    return unpacked


def names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Device check: parity, host syncs, memory and speed of every optimizer on one device.",
        epilog="What each figure means: benchmarks/README.md and this script's docstring.",
    )
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (default: cuda when available)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of: {', '.join(SECTIONS)}")
    parser.add_argument("--optimizers", default="", help="comma-separated names (default: all available)")
    parser.add_argument(
        "--budget", type=float, default=DEFAULT_BUDGET_SECONDS, help="seconds for the whole run (default 280)"
    )
    parser.add_argument("--size", choices=("auto", "full", "small"), default="auto", help="auto: full on CUDA only")
    parser.add_argument("--steps", type=int, help="optimizer steps per timing round (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--rounds", type=int, help="interleaved timing rounds (default 5 on CUDA, 3 on CPU)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--vendor", type=Path, default=BENCHMARKS / "vendor", help="folder of wheels to import from")
    parser.add_argument("--json", type=Path, default=Path("gpu_check.json"), help="where to write every figure")
    args = parser.parse_args(argv)
    args.sections = names(args.sections)
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device not in ("cuda", "cpu"):
        parser.error(f"--device {args.device!r}: expected cuda, cpu or auto")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda: torch {torch.__version__} sees no CUDA device here")
    for option in ("steps", "rounds", "threads"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    if args.budget < 0:
        parser.error(f"--budget {args.budget:g}: expected 0 or more seconds")
    cuda = args.device == "cuda"
    args.steps = args.steps or (5 if cuda else 1)
    args.rounds = args.rounds or (5 if cuda else 3)
    args.small = args.size == "small" or (args.size == "auto" and not cuda)
    args.optimizers = names(args.optimizers) or personalized.available()
    for name in args.optimizers:
        try:
            personalized.registry.canonical_name(name)
        except ValueError as error:
            parser.error(str(error))
    return args


def run(args: argparse.Namespace, out: Any = sys.stdout) -> dict[str, Any]:
    """Run the sections ``args`` selects; print them, write and return the JSON figures."""
    torch.set_num_threads(args.threads)
    vendored = vendor_path(args.vendor)
    if vendored is not None and str(vendored) not in sys.path:
        sys.path.insert(0, str(vendored))
    machine = speed.describe_machine(args.threads)
    print(speed.machine_line(machine) + f"  device {args.device}" + (", small sizes" if args.small else ""), file=out)
    optimizers, notes = speed.resolve_optimizers(args.optimizers)
    for note in notes:
        print(note, file=out)
    budget = Budget(args.budget)
    requested = {personalized.registry.canonical_name(name) for name in args.optimizers}
    ctx = Context(torch.device(args.device), optimizers, requested, args.small, args.steps, args.rounds, budget)
    sections = {}
    for name in SECTIONS:
        section = Section(name)
        started = time.monotonic()
        if name not in args.sections:
            section.skip("not in --sections")
        elif budget.spent():
            section.skip(budget.reason)
        else:
            try:
                RUNNERS[name](ctx, section)
            except Exception as error:  # a broken section must not hide the others' figures
                section.status = "failed"
                section.reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:300]}"
                section.notes.append(traceback.format_exc(limit=4))
        section.seconds = time.monotonic() - started
        sections[name] = section
        print(f"\n{section_text(section)}", file=out, flush=True)
    figures = {
        "machine": machine,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "notes": notes,
        "sections": {name: vars(section) for name, section in sections.items()},
    }
    args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}", file=out)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())

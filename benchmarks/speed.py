"""Speed and memory benchmark: every optimizer against ``torch.optim.AdamW(fused=True)``.

Run from the repository root (the project must be installed, e.g. ``pip install -e .``)::

    python benchmarks/speed.py                        # everything: 8 to 25 minutes on a busy 2-CPU machine
    python benchmarks/speed.py --quick                # smoke run on a small parameter set
    python benchmarks/speed.py --optimizers FCompass,SCORN --rounds 7 --json figures.json

It prints figures and asserts nothing. Three parts:

Speed
    The parameter set is that of a LoRA: 800 tensors of shapes ``(16, d)`` and
    ``(d, 16)``, 100 pairs for each d in 320, 640, 1280 and 2048, 13,721,600 float32
    elements, on the CPU with ``--threads`` threads (2). Every tensor has a fixed
    random gradient. For each optimizer (built from its ``default/<Name>`` preset)
    a fused AdamW and the optimizer step the *same* parameters with the *same*
    gradients in alternating timing rounds (AdamW first in even rounds, second in
    odd ones), so a burst of load from other processes hits both; the reported
    ratio is median(optimizer ms/step) / median(AdamW ms/step). Quote speed as
    this ratio; the milliseconds depend on the machine and on its load. AdamW's
    rounds run enough steps to last about as long as the optimizer's (up to
    ``BASELINE_ROUND_SECONDS``), so both are sampled over similar windows. The
    ``load`` column is the machine's 1-minute load average after each optimizer.

    Interleaving cancels load that slows both sides alike, but not OpenMP's
    spin-waiting: when other processes keep the cores busy, a thread waiting at
    the end of a parallel region spins until its descheduled partner runs again.
    Fused AdamW enters such a region per tensor and can slow down 100-fold, the
    optimizers' small kernels hardly at all, and the ratios come out too low. The
    script warns when the load suggests this; run on a quiet machine, with
    ``--threads 1``, or with ``OMP_WAIT_POLICY=PASSIVE`` in the environment.

    ``--set KEY=VALUE`` (repeatable) builds every optimizer that accepts the
    keyword with it, e.g. ``--set foreach=False`` for the one-tensor-at-a-time
    path or ``--set bf16_state=True`` for bfloat16 state; the others are built
    as usual.

Optimizer state
    Bytes of optimizer state per parameter element: the sum of ``nbytes`` of every
    tensor in ``optimizer.state`` (each storage counted once) after the timed
    steps, divided by the number of parameter elements. Fused AdamW keeps 8
    (two float32 moments) plus a scalar step per tensor.

Memory with and without gradient release
    A small model, ``depth`` x (``Linear(width, width)`` + GELU) in float32 (12 x 512:
    3.15M parameters, 12.6 MB of gradients) takes three training steps (forward,
    backward, ``step()``, ``zero_grad()``; with ``personalized.GradientRelease`` the
    update happens inside backward and there is no ``step()``), with every optimizer
    and with torch's fused AdamW for reference. Two figures, of the third step:

    * ``peak``: parameters + optimizer state (counted exactly) + the high-water mark
      of the bytes the CPU allocator hands out during the step above what was live
      when it began. The latter is read from ``torch.profiler.profile(
      profile_memory=True)``: its allocation events, summed in time order. It covers
      every tensor the step creates (activations, gradients, the optimizer's
      temporaries) but not the allocator's own overhead, nor memory that oneDNN
      allocates outside torch's allocator.
    * ``grad high-water``: the largest total of ``.grad`` bytes alive at any one
      time, read by post-accumulate-grad hooks that run just before gradient
      release's own. It shows the gradient memory that release removes.

    With CUDA available the step is repeated on the GPU and
    ``torch.cuda.max_memory_allocated()`` (everything: model, state, step) is shown too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

import personalized
from personalized.bench.options import add_set_option

#: LoRA parameter set of the speed benchmark: rank and the model dimensions d.
LORA_RANK = 16
LORA_DIMS = (320, 640, 1280, 2048)
PAIRS_PER_DIM = 100
#: The host-bound set: the same 800 tensors shrunk to ``(2, d // 64)`` and ``(d // 64, 2)``.
TINY_RANK, TINY_DIVISOR = 2, 64
#: Upper bound of the duration of one AdamW timing round.
BASELINE_ROUND_SECONDS = 1.0
#: The small model of the memory benchmark, full size and with --quick.
MEMORY_WIDTH, MEMORY_DEPTH, MEMORY_BATCH = 512, 12, 16
QUICK_MEMORY = dict(width=64, depth=4, batch=4)
#: Name of the profiler range around the measured training step.
MEASURED = "benchmarks.speed: measured step"

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


# -- parameter sets ---------------------------------------------------------------------


def lora_shapes(quick: bool = False) -> list[tuple[int, int]]:
    """Shapes of the LoRA parameter set: ``(16, d)`` and ``(d, 16)`` pairs, 100 per d (1 with ``quick``)."""
    pairs = 1 if quick else PAIRS_PER_DIM
    return [shape for d in LORA_DIMS for _ in range(pairs) for shape in ((LORA_RANK, d), (d, LORA_RANK))]


def tiny_lora_shapes(quick: bool = False) -> list[tuple[int, int]]:
    """The LoRA set's structure with tiny tensors: a step's cost is then host work and kernel calls."""
    pairs = 1 if quick else PAIRS_PER_DIM
    dims = [d // TINY_DIVISOR for d in LORA_DIMS]
    return [shape for d in dims for _ in range(pairs) for shape in ((TINY_RANK, d), (d, TINY_RANK))]


def make_parameters(
    shapes: Sequence[tuple[int, ...]], seed: int = 0, device: torch.device | str = "cpu"
) -> list[nn.Parameter]:
    """Float32 parameters of the given shapes on ``device``, each with a fixed random gradient
    (drawn on the CPU, so every device gets the same values)."""
    generator = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = nn.Parameter((torch.randn(shape, generator=generator) * 0.02).to(device))
        p.grad = (torch.randn(shape, generator=generator) * 1e-3).to(device)
        params.append(p)
    return params


def element_count(params: Iterable[Tensor]) -> int:
    """Number of elements of all ``params``."""
    return sum(p.numel() for p in params)


def shape_elements(shapes: Iterable[Sequence[int]]) -> int:
    """Number of elements of tensors of these shapes."""
    return sum(math.prod(shape) for shape in shapes)


# -- building optimizers ----------------------------------------------------------------


def fused_adamw(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The baseline: ``torch.optim.AdamW(fused=True)``, lr 1e-4."""
    return torch.optim.AdamW(params, lr=1e-4, fused=True)


def accepted(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The ``options`` that ``cls`` takes as constructor keywords."""
    defaults = getattr(cls, "hyperparameter_defaults", None)
    known = defaults() if callable(defaults) else {}
    return {key: value for key, value in options.items() if key in known}


def preset_factory(name: str, extra: dict[str, Any] | None = None) -> OptimizerFactory:
    """Builds ``name`` from its default preset (its constructor defaults without pyyaml), with ``extra`` keywords."""
    extra = extra or {}

    def build(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return personalized.create_optimizer(params, name, **extra)

    return build


def resolve_optimizers(names: Sequence[str]) -> tuple[list[tuple[str, type]], list[str]]:
    """The ``(name, class)`` pairs that can be built, and a note for each one that cannot."""
    found, notes = [], []
    for name in names:
        try:
            found.append((personalized.registry.canonical_name(name), personalized.get_optimizer(name)))
        except ImportError as error:
            notes.append(f"skipped {name}: {error}")
    return found, notes


# -- measuring ---------------------------------------------------------------------------


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in ``optimizer.state``, each storage counted once."""
    storages: dict[int, int] = {}

    def visit(value: Any) -> None:
        if isinstance(value, Tensor):
            storage = value.untyped_storage()
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(list(optimizer.state.values()))
    return sum(storages.values())


class CountCalls(TorchDispatchMode):
    """Counts the ATen operator calls made while it is active (each is a kernel launch on a GPU,
    views aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def calls_per_step(optimizer: torch.optim.Optimizer) -> int:
    """ATen operator calls of one ``step()``."""
    with CountCalls() as counter:
        optimizer.step()
    return counter.count


def time_steps(optimizer: torch.optim.Optimizer, steps: int) -> float:
    """Milliseconds per ``step()``, averaged over ``steps`` consecutive steps."""
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) * 1000.0 / steps


def baseline_steps(steps: int, candidate_ms: float, baseline_ms: float) -> int:
    """AdamW steps per round: as long as one round of the candidate, at most ``BASELINE_ROUND_SECONDS``."""
    matched = math.ceil(steps * candidate_ms / max(baseline_ms, 1e-6))
    ceiling = math.ceil(BASELINE_ROUND_SECONDS * 1000.0 / max(baseline_ms, 1e-6))
    return max(steps, min(matched, ceiling))


def interleaved_rounds(
    baseline: torch.optim.Optimizer,
    candidate: torch.optim.Optimizer,
    steps: int,
    rounds: int,
    base_steps: int,
    timer: Callable[[torch.optim.Optimizer, int], float] = time_steps,
) -> tuple[list[float], list[float]]:
    """Per-round ms/step of the baseline and the candidate, alternating which one goes first
    (``timer(optimizer, steps)``: ms per step, :func:`time_steps` by default)."""
    base_ms: list[float] = []
    cand_ms: list[float] = []
    for index in range(rounds):
        order = [(baseline, base_steps, base_ms), (candidate, steps, cand_ms)]
        for optimizer, count, out in order if index % 2 == 0 else reversed(order):
            out.append(timer(optimizer, count))
    return base_ms, cand_ms


@dataclass
class SpeedResult:
    """Speed and state size of one optimizer against fused AdamW in the same run."""

    optimizer: str
    ms_per_step: float  #: median over rounds
    adamw_ms_per_step: float  #: median over the interleaved AdamW rounds
    ratio: float  #: ms_per_step / adamw_ms_per_step
    ratio_low: float  #: smallest per-round ratio
    ratio_high: float  #: largest per-round ratio
    state_bytes_per_element: float
    adamw_state_bytes_per_element: float
    first_step_ms: float  #: the first step alone (it allocates the state)
    calls_per_step: int  #: ATen operator calls of one step
    adamw_calls_per_step: int
    tiny_ratio: float  #: ms/step over fused AdamW's on the tiny set (host-bound)
    options: dict[str, Any] = field(default_factory=dict)  #: keywords from --set that the optimizer took
    load_average: float | None = None  #: 1-minute load average of the machine after the rounds
    round_ms: list[float] = field(default_factory=list)
    adamw_round_ms: list[float] = field(default_factory=list)


def benchmark_optimizer(
    name: str,
    factory: OptimizerFactory,
    shapes: Sequence[tuple[int, ...]],
    steps: int = 2,
    rounds: int = 7,
    warmup: int = 1,
    options: dict[str, Any] | None = None,
    tiny_shapes: Sequence[tuple[int, ...]] = (),
) -> SpeedResult:
    """Time ``factory``'s optimizer against fused AdamW on the same parameters and gradients,
    then on ``tiny_shapes`` (one tiny tensor when empty), where host work dominates."""
    params = make_parameters(shapes)
    elements = element_count(params)
    baseline, candidate = fused_adamw(params), factory(params)
    first_step_ms = time_steps(candidate, 1)
    time_steps(baseline, 1)
    warm_cand = time_steps(candidate, warmup) if warmup else first_step_ms
    warm_base = time_steps(baseline, max(warmup, 3))
    base_ms, cand_ms = interleaved_rounds(
        baseline, candidate, steps, rounds, baseline_steps(steps, warm_cand, warm_base)
    )
    per_round = [c / b for c, b in zip(cand_ms, base_ms)]
    tiny_params = make_parameters(tiny_shapes or [(TINY_RANK, 1)])
    tiny_base, tiny_cand = fused_adamw(tiny_params), factory(tiny_params)
    tiny_warm = [time_steps(optimizer, 3) for optimizer in (tiny_cand, tiny_base)]
    tiny_base_ms, tiny_cand_ms = interleaved_rounds(
        tiny_base, tiny_cand, steps, rounds, baseline_steps(steps, *tiny_warm)
    )
    return SpeedResult(
        optimizer=name,
        ms_per_step=statistics.median(cand_ms),
        adamw_ms_per_step=statistics.median(base_ms),
        ratio=statistics.median(cand_ms) / statistics.median(base_ms),
        ratio_low=min(per_round),
        ratio_high=max(per_round),
        state_bytes_per_element=state_bytes(candidate) / elements,
        adamw_state_bytes_per_element=state_bytes(baseline) / elements,
        first_step_ms=first_step_ms,
        calls_per_step=calls_per_step(candidate),
        adamw_calls_per_step=calls_per_step(baseline),
        tiny_ratio=statistics.median(tiny_cand_ms) / statistics.median(tiny_base_ms),
        options=options or {},
        load_average=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        round_ms=cand_ms,
        adamw_round_ms=base_ms,
    )


# -- memory with and without gradient release ----------------------------------------------


def make_mlp(width: int = MEMORY_WIDTH, depth: int = MEMORY_DEPTH, seed: int = 0) -> nn.Sequential:
    """``depth`` x (Linear(width, width) + GELU), float32."""
    torch.manual_seed(seed)
    return nn.Sequential(*[layer for _ in range(depth) for layer in (nn.Linear(width, width), nn.GELU())])


class GradHighWater:
    """Largest total of ``.grad`` bytes alive at once, read by post-accumulate-grad hooks.

    Install it before :class:`personalized.GradientRelease`: hooks run in the order
    they were registered, so each reading still sees the gradient that release is
    about to free.
    """

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        self.params = list(params)
        self.peak = 0
        self._handles = [p.register_post_accumulate_grad_hook(self._read) for p in self.params]

    def _read(self, _: Tensor) -> None:
        self.peak = max(self.peak, sum(p.grad.nbytes for p in self.params if p.grad is not None))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def train_step(model: nn.Module, inputs: Tensor, optimizer: torch.optim.Optimizer, release: bool) -> None:
    """Forward, backward, and (without gradient release) ``step()`` and ``zero_grad()``."""
    model(inputs).square().mean().backward()
    if not release:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def allocator_peak_bytes(step: Callable[[], None], warmup: int = 2) -> int:
    """High-water mark of CPU allocator bytes during a call of ``step``, above what was live before it.

    ``step`` runs ``warmup`` times and then once more, all under
    ``torch.profiler.profile(profile_memory=True)`` so that the profiler knows the
    size of every block the last call frees (optimizer state that is replaced
    rather than updated in place, say). The allocation and free events of the
    last call are summed in time order.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(warmup):
            step()
        with record_function(MEASURED):
            step()
    events = prof.profiler.kineto_results.events()
    window = next(e for e in events if e.name() == MEASURED)
    cpu = {DeviceType.CPU, DeviceType.MKLDNN, DeviceType.IDEEP}
    memory = [e for e in events if e.name() == "[memory]" and e.device_type() in cpu]
    live = start = peak = 0
    for event in sorted(memory, key=lambda e: e.start_ns()):
        if event.start_ns() > window.end_ns():
            break
        live += event.nbytes()
        if event.start_ns() < window.start_ns():
            start = peak = live
        peak = max(peak, live)
    return peak - start


def cuda_peak_bytes(factory: OptimizerFactory, release: bool, width: int, depth: int, batch: int) -> int:
    """``torch.cuda.max_memory_allocated()`` over one training step on the GPU (model, state, step)."""
    model = make_mlp(width, depth).cuda()
    inputs = torch.randn(batch, width, device="cuda")
    optimizer = factory(list(model.parameters()))
    hooks = personalized.GradientRelease(optimizer) if release else None
    try:
        for _ in range(2):
            train_step(model, inputs, optimizer, release)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        train_step(model, inputs, optimizer, release)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    finally:
        if hooks is not None:
            hooks.remove()


@dataclass
class MemoryResult:
    """Memory of one training step of the small model, with or without gradient release."""

    optimizer: str
    release: bool
    parameter_bytes: int
    state_bytes: int
    step_peak_bytes: int  #: allocator high-water during the step, above its start
    peak_bytes: int  #: parameter_bytes + state_bytes + step_peak_bytes
    grad_high_water_bytes: int
    cuda_peak_bytes: int | None = None


def measure_memory(
    name: str,
    factory: OptimizerFactory,
    release: bool,
    width: int = MEMORY_WIDTH,
    depth: int = MEMORY_DEPTH,
    batch: int = MEMORY_BATCH,
) -> MemoryResult:
    """Peak memory of a training step of :func:`make_mlp`, the third of three (see :func:`allocator_peak_bytes`)."""
    model = make_mlp(width, depth)
    params = list(model.parameters())
    inputs = torch.randn(batch, width, generator=torch.Generator().manual_seed(1))
    optimizer = factory(params)
    grads = GradHighWater(params)
    hooks = None
    try:
        hooks = personalized.GradientRelease(optimizer) if release else None
        step_peak = allocator_peak_bytes(lambda: train_step(model, inputs, optimizer, release))
    finally:
        grads.remove()
        if hooks is not None:
            hooks.remove()
    parameter_bytes = sum(p.nbytes for p in params)
    state = state_bytes(optimizer)
    cuda = cuda_peak_bytes(factory, release, width, depth, batch) if torch.cuda.is_available() else None
    return MemoryResult(
        optimizer=name,
        release=release,
        parameter_bytes=parameter_bytes,
        state_bytes=state,
        step_peak_bytes=step_peak,
        peak_bytes=parameter_bytes + state + step_peak,
        grad_high_water_bytes=grads.peak,
        cuda_peak_bytes=cuda,
    )


def memory_pair(name: str, factory: OptimizerFactory, **model: int) -> list[MemoryResult]:
    """:func:`measure_memory` without and with gradient release (without only, if release is impossible)."""
    results = [measure_memory(name, factory, release=False, **model)]
    try:
        results.append(measure_memory(name, factory, release=True, **model))
    except TypeError:  # the optimizer cannot update one parameter at a time (Prodigy, torch's AdamW)
        pass
    return results


# -- output ------------------------------------------------------------------------------


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, columns padded to their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "| " + " | ".join("-" * w for w in widths) + " |", *map(line, rows)])


def format_ms(ms: float) -> str:
    """Milliseconds with one decimal, or three below 1 ms."""
    return f"{ms:.1f}" if ms >= 1 else f"{ms:.3f}"


def speed_table(results: Sequence[SpeedResult]) -> str:
    """The speed table; an ``options`` column when some optimizer was built with ``--set`` keywords,
    and the first step's time (which includes compilation) with ``--set compile=True``."""
    show_options = any(r.options for r in results)
    show_first = any(r.options.get("compile") for r in results)
    header = ["optimizer", "ms/step", "AdamW ms/step", "ratio", "ratio range", "tiny ratio", "calls/step"]
    header += ["state B/elem", "load"]
    header += ["options"] if show_options else []
    header += ["1st step s"] if show_first else []
    rows = []
    for r in results:
        row = [
            r.optimizer,
            format_ms(r.ms_per_step),
            format_ms(r.adamw_ms_per_step),
            f"{r.ratio:.1f}x",
            f"{r.ratio_low:.1f}-{r.ratio_high:.1f}",
            f"{r.tiny_ratio:.1f}x",
            f"{r.calls_per_step:,}",
            f"{r.state_bytes_per_element:.2f}",
            "n/a" if r.load_average is None else f"{r.load_average:.1f}",
        ]
        row += [", ".join(f"{k}={v!r}" for k, v in r.options.items()) or "-"] if show_options else []
        row += [f"{r.first_step_ms / 1000:.1f}"] if show_first else []
        rows.append(row)
    return format_table(header, rows)


def mib(nbytes: int | None) -> str:
    """Bytes as MiB with two decimals; ``n/a`` for None."""
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.2f} MiB"


def memory_table(results: Sequence[MemoryResult]) -> str:
    """One row per optimizer: peaks and gradient high-water without and with release, and the saving."""
    by_name: dict[str, dict[bool, MemoryResult]] = {}
    for r in results:
        by_name.setdefault(r.optimizer, {})[r.release] = r
    show_cuda = any(r.cuda_peak_bytes is not None for r in results)
    header = ["optimizer", "peak", "peak, release", "saving", "grad high-water", "grad high-water, release"]
    header += ["CUDA peak", "CUDA peak, release"] if show_cuda else []
    rows = []
    for name, pair in by_name.items():
        plain, released = pair[False], pair.get(True)
        saving = "n/a"
        if released is not None:
            saved = plain.peak_bytes - released.peak_bytes
            saving = f"{mib(saved)} ({100 * saved / plain.peak_bytes:.0f}%)"
        row = [
            name,
            mib(plain.peak_bytes),
            mib(released.peak_bytes) if released else "n/a",
            saving,
            mib(plain.grad_high_water_bytes),
            mib(released.grad_high_water_bytes) if released else "n/a",
        ]
        if show_cuda:
            row += [mib(plain.cuda_peak_bytes), mib(released.cuda_peak_bytes) if released else "n/a"]
        rows.append(row)
    return format_table(header, rows)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(threads: int) -> dict[str, Any]:
    """Date, versions, CPU and threads, printed first and stored in the JSON."""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_name(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def machine_line(machine: dict[str, Any]) -> str:
    """The first line printed: date, torch, CPU, threads and load average."""
    line = f"{machine['date']}  torch {machine['torch']}  {machine['processor']} ({machine['cpu_count']} CPUs), "
    line += f"{machine['threads']} threads"
    if machine["load_average"]:
        line += ", load average " + " ".join(f"{load:.1f}" for load in machine["load_average"])
    if machine["omp_wait_policy"]:
        line += f", OMP_WAIT_POLICY={machine['omp_wait_policy']}"
    return line


def contention_warning(machine: dict[str, Any]) -> str | None:
    """A warning when other processes keep the cores busy and OpenMP threads spin while they wait.

    With more than one thread, a thread that reaches the end of a parallel region
    spins until its partner, which another process may have descheduled, arrives.
    Fused AdamW enters a parallel region per tensor and then slows down by up to
    100x; the optimizers' many small kernels mostly run on one thread and barely do.
    """
    load, cpus, threads = machine["load_average"], machine["cpu_count"], machine["threads"]
    if threads < 2 or not load or not cpus or (machine["omp_wait_policy"] or "").upper() == "PASSIVE":
        return None
    if load[0] + threads <= cpus + 0.5:
        return None
    return (
        f"warning: load average {load[0]:.1f} on {cpus} CPUs. With {threads} threads, OpenMP threads spin while "
        "they wait for descheduled partners, fused AdamW slows down far more than the optimizers and the ratios "
        "come out too low. Use a quiet machine, --threads 1, or OMP_WAIT_POLICY=PASSIVE."
    )


# -- command line ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``optimizers`` becomes a list of names, checked against the registry."""
    parser = argparse.ArgumentParser(
        description="Speed and memory benchmark: every optimizer against torch.optim.AdamW(fused=True).",
        epilog="What each figure means: benchmarks/README.md and this script's docstring.",
    )
    parser.add_argument("--optimizers", default="", help="comma-separated names (default: all available)")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per timing round (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="small parameter set and model, for a smoke run")
    add_set_option(
        parser, help="constructor keyword for every optimizer that accepts it, e.g. foreach=False (repeatable)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the gradient-release memory figures")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    for option in ("steps", "rounds", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    args.options = dict(args.options)
    args.optimizers = [n.strip() for n in args.optimizers.split(",") if n.strip()] or personalized.available()
    for name in args.optimizers:
        try:
            personalized.registry.canonical_name(name)
        except ValueError as error:
            parser.error(str(error))
    return args


def run_speed(args: argparse.Namespace, optimizers: Sequence[tuple[str, type]], out: Any) -> list[SpeedResult]:
    """Time every optimizer on the LoRA set, printing a line each and then the table."""
    shapes = lora_shapes(args.quick)
    print(
        f"LoRA set: {len(shapes)} tensors, {shape_elements(shapes):,} float32 elements; "
        f"{args.rounds} rounds of {args.steps} steps, interleaved with torch.optim.AdamW(fused=True)",
        file=out,
    )
    results = []
    for name, cls in optimizers:
        options = accepted(cls, args.options)
        factory = preset_factory(name, options)
        result = benchmark_optimizer(
            name, factory, shapes, args.steps, args.rounds, args.warmup, options, tiny_lora_shapes(args.quick)
        )
        results.append(result)
        print(f"  {name}: {result.ms_per_step:.1f} ms/step, {result.ratio:.1f}x AdamW", file=out, flush=True)
    print(f"\n{speed_table(results)}", file=out)
    if results:
        print(
            f"\nfused AdamW: state {results[0].adamw_state_bytes_per_element:.2f} B/elem, "
            f"{results[0].adamw_calls_per_step:,} calls/step",
            file=out,
        )
    return results


def run_memory(args: argparse.Namespace, optimizers: Sequence[tuple[str, type]], out: Any) -> list[MemoryResult]:
    """Peak memory of a training step of the small model, without and with gradient release."""
    model = QUICK_MEMORY if args.quick else dict(width=MEMORY_WIDTH, depth=MEMORY_DEPTH, batch=MEMORY_BATCH)
    results = memory_pair("torch AdamW(fused)", fused_adamw, **model)
    for name, cls in optimizers:
        results += memory_pair(name, preset_factory(name, accepted(cls, args.options)), **model)
    params = element_count(make_mlp(model["width"], model["depth"]).parameters())
    print(
        f"\nMemory of a training step: {model['depth']} x (Linear({model['width']}, {model['width']}) + GELU), "
        f"{params:,} float32 parameters ({mib(4 * params)}; gradients the same), batch {model['batch']}.\n"
        "peak = parameters + optimizer state + allocator high-water during the step (torch.profiler); "
        "grad high-water = most .grad bytes alive at once; n/a = cannot update one parameter at a time.\n",
        file=out,
    )
    print(memory_table(results), file=out)
    return results


def run(args: argparse.Namespace, out: Any = sys.stdout) -> dict[str, Any]:
    """Run the benchmark that ``args`` (from :func:`parse_args`) describes; print tables, return every figure."""
    torch.set_num_threads(args.threads)
    machine = describe_machine(args.threads)
    print(machine_line(machine), file=out)
    warning = contention_warning(machine)
    if warning:
        print(warning, file=out)
    optimizers, notes = resolve_optimizers(args.optimizers)
    for note in notes:
        print(note, file=out)
    speed = run_speed(args, optimizers, out)
    memory = [] if args.no_memory else run_memory(args, optimizers, out)
    shapes = lora_shapes(args.quick)
    figures = {
        "machine": machine,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "parameter_set": {"tensors": len(shapes), "elements": shape_elements(shapes)},
        "notes": [*notes, *([warning] if warning else [])],
        "speed": [asdict(r) for r in speed],
        "memory": [asdict(r) for r in memory],
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())

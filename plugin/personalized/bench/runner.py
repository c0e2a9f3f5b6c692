"""Run contenders on tasks: seeded training loops that stop at the first non-finite loss.

Nothing is guarded: a run whose training or evaluation loss goes NaN or
infinite stops there and is reported as NaN at that step. An optimizer that
raises is reported as an error, and the suite goes on.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .contenders import ADAMW, Contender, Skipped
from .tasks import Task

#: About this many points of the evaluation curve are recorded per run.
CURVE_POINTS = 60

#: ``progress(work_done, text)``: called as training advances; work is steps times the task's cost.
Progress = Callable[[float, str], None]


@dataclass
class SeedRun:
    """One contender on one task with one seed."""

    seed: int
    #: The steps at which the evaluation loss was measured (0 is before training).
    steps: list[int]
    losses: list[float]
    #: The last evaluation loss; None if the run went NaN or failed.
    final: float | None
    #: The lowest evaluation loss seen before any NaN.
    best: float | None
    #: The step whose loss was first non-finite; None if the run stayed finite.
    nan_step: int | None
    #: ``"TypeName: message"`` if the optimizer raised; None otherwise.
    error: str | None
    #: Seconds spent in training steps (forward, backward, optimizer step), evaluation excluded.
    wall_time_s: float
    #: Bytes of every tensor in the optimizer's state after the run.
    state_bytes: int
    #: Task-specific end-of-run numbers (accuracy).
    metrics: dict[str, float] = field(default_factory=dict)
    #: The first recorded step whose loss reached the final loss of AdamW with the same seed; None if never.
    steps_to_target: int | None = None


@dataclass
class ContenderResult:
    """Every seed of one contender on one task, and the settings it ran with."""

    contender: Contender
    settings: dict[str, Any]
    runs: list[SeedRun]


@dataclass
class TaskResult:
    """One task: its settings, AdamW's mean final loss (``target``) and every contender's runs."""

    task: Task
    steps: int
    eval_every: int
    target: float | None
    results: list[ContenderResult]


@dataclass
class SuiteResult:
    """A whole bench run."""

    tasks: list[TaskResult]
    contenders: list[Contender]
    skipped: list[Skipped]
    seeds: list[int]
    wall_time_s: float


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """The summed ``nbytes`` of every tensor in the optimizer's per-parameter state."""

    def size(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return value.nbytes
        if isinstance(value, dict):
            return sum(size(item) for item in value.values())
        if isinstance(value, (list, tuple)):
            return sum(size(item) for item in value)
        return 0

    return sum(size(state) for state in optimizer.state.values())


def settings_of(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The first param group's hyperparameters, as JSON-friendly values."""

    def plain(value: Any) -> Any:
        if isinstance(value, bool | int | str) or value is None:
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else repr(value)
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            return plain(value.item())
        return repr(value)

    group = optimizer.param_groups[0]
    return {key: plain(value) for key, value in group.items() if key != "params"}


def eval_interval(steps: int) -> int:
    """Evaluate every this many steps, for about :data:`CURVE_POINTS` points."""
    return max(1, math.ceil(steps / CURVE_POINTS))


def run_one(
    task: Task,
    contender: Contender,
    seed: int,
    steps: int,
    progress: Progress | None = None,
) -> tuple[SeedRun, dict[str, Any]]:
    """Train ``task`` with ``contender`` for ``steps`` steps from ``seed``; the run and the settings used."""
    every = eval_interval(steps)
    problem = task.build(seed)
    torch.manual_seed(seed)
    run = SeedRun(seed, [0], [problem.eval_loss()], None, None, None, None, 0.0, 0)
    settings: dict[str, Any] = {}
    done = 0
    try:
        optimizer = contender.build(problem.params, task)
        settings = settings_of(optimizer)
        for step in range(1, steps + 1):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = problem.train_loss(step)
            if not math.isfinite(loss.item()):
                run.nan_step = step
                break
            loss.backward()
            optimizer.step()
            run.wall_time_s += time.perf_counter() - start
            if step % every == 0 or step == steps:
                value = problem.eval_loss()
                if not math.isfinite(value):
                    run.nan_step = step
                    break
                run.steps.append(step)
                run.losses.append(value)
            if progress is not None:
                progress(task.cost, "")
            done = step
        run.state_bytes = state_bytes(optimizer)
    except Exception as error:  # one broken optimizer must not end a long suite
        run.error = f"{type(error).__name__}: {error}"
    finally:
        if progress is not None and done < steps:
            progress((steps - done) * task.cost, "")
    finite = [value for value in run.losses if math.isfinite(value)]
    run.best = min(finite) if finite else None
    if run.nan_step is None and run.error is None:
        run.final = run.losses[-1]
        run.metrics = problem.metrics()
    return run, settings


def first_reaching(run: SeedRun, target: float) -> int | None:
    """The first recorded step whose loss is at or below ``target``."""
    return next((step for step, value in zip(run.steps, run.losses) if value <= target), None)


def adamw_finals(results: Sequence[ContenderResult]) -> dict[int, float]:
    """AdamW's final loss for each seed on which it finished."""
    return {
        run.seed: run.final
        for result in results
        if result.contender.label == ADAMW
        for run in result.runs
        if run.final is not None
    }


def run_task(
    task: Task,
    contenders: Sequence[Contender],
    seeds: Sequence[int],
    steps: int | None = None,
    progress: Progress | None = None,
) -> TaskResult:
    """Every contender on ``task`` for every seed, then each run's steps to AdamW's final loss on its seed."""
    steps = steps or task.steps
    results = []
    for contender in contenders:
        runs, settings = [], {}
        for seed in seeds:
            if progress is not None:
                progress(0, f"{task.name}: {contender.label}, seed {seed}")
            run, settings = run_one(task, contender, seed, steps, progress)
            runs.append(run)
        results.append(ContenderResult(contender, settings, runs))
    targets = adamw_finals(results)
    for result in results:
        for run in result.runs:
            if run.seed in targets:
                run.steps_to_target = first_reaching(run, targets[run.seed])
    target = statistics.fmean(targets.values()) if targets else None
    return TaskResult(task, steps, eval_interval(steps), target, results)


def run_suite(
    tasks: Sequence[Task],
    contenders: Sequence[Contender],
    seeds: Sequence[int],
    steps: int | None = None,
    skipped: Sequence[Skipped] = (),
    progress: Progress | None = None,
) -> SuiteResult:
    """Every task in turn; see :func:`run_task`."""
    start = time.perf_counter()
    results = [run_task(task, contenders, seeds, steps, progress) for task in tasks]
    return SuiteResult(results, list(contenders), list(skipped), list(seeds), time.perf_counter() - start)


def total_work(
    tasks: Sequence[Task], contenders: Sequence[Contender], seeds: Sequence[int], steps: int | None
) -> float:
    """The work :func:`run_suite` will report to its progress callback: steps times each task's cost."""
    return sum((steps or task.steps) * task.cost for task in tasks) * len(contenders) * len(seeds)

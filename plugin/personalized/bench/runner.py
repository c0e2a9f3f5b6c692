"""Run the sweep: seeded training loops that stop at the first non-finite loss, in worker processes.

Nothing is guarded: a run whose training or evaluation loss goes NaN or
infinite stops there and is reported as NaN at that step. An optimizer that
raises is reported as an error, and the suite goes on.

Runs are spread over worker processes (one torch thread each); what a task
shares between its runs (a pretrained base model) is made once, here, and
handed to the workers. Tasks are worked through in order, so they finish one
after another. Whatever interrupts the suite (Ctrl-C, a crash), the runs that
finished are returned, marked partial, for the report.
"""

from __future__ import annotations

import heapq
import math
import multiprocessing
import queue
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .contenders import Contender, Skipped
from .sweep import Protocol
from .tasks import Task

#: About this many points of the evaluation curve are recorded per run.
CURVE_POINTS = 60


@dataclass
class SeedRun:
    """One contender on one task at one learning rate with one seed."""

    seed: int
    #: The learning rate it ran with; None for an adaptive contender (its preset's lr).
    lr: float | None
    #: The steps at which the evaluation loss was measured (0 is before training).
    steps: list[int]
    losses: list[float]
    #: The last evaluation loss; None if the run went NaN or failed.
    final: float | None = None
    #: The lowest evaluation loss seen before any NaN.
    best: float | None = None
    #: The step whose loss was first non-finite; None if the run stayed finite.
    nan_step: int | None = None
    #: ``"TypeName: message"`` if the optimizer raised; None otherwise.
    error: str | None = None
    #: Seconds spent in training steps (forward, backward, optimizer step), evaluation excluded.
    wall_time_s: float = 0.0
    #: Bytes of every tensor in the optimizer's state after the run.
    state_bytes: int = 0
    #: Task-specific end-of-run numbers (accuracy).
    metrics: dict[str, float] = field(default_factory=dict)
    #: The param group's hyperparameters as run.
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ContenderResult:
    """Every run of one contender on one task."""

    contender: Contender
    runs: list[SeedRun]


@dataclass
class TaskResult:
    """One task and every contender's runs on it."""

    task: Task
    steps: int
    eval_every: int
    results: list[ContenderResult]


@dataclass
class SuiteResult:
    """A whole bench run; ``partial`` when it was interrupted before every run finished."""

    tasks: list[TaskResult]
    contenders: list[Contender]
    skipped: list[Skipped]
    protocol: Protocol
    wall_time_s: float
    workers: int = 1
    partial: bool = False
    #: Why it stopped early, e.g. "interrupted" or the crash's message.
    stopped: str | None = None


class Progress:
    """What the runner reports while it works; the default reports nothing.

    ``advance(work, text)`` after each run (work is steps times the task's
    cost), ``task_done(result, done, total)`` when every run of a task has finished.
    """

    def advance(self, work: float, text: str) -> None:
        """``work`` more units are done; ``text`` names what ran."""

    def task_done(self, result: TaskResult, done: int, total: int) -> None:
        """``result``'s task is complete: the ``done``-th of ``total``."""


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


def run_one(task: Task, contender: Contender, lr: float | None, seed: int, steps: int) -> SeedRun:
    """Train ``task`` with ``contender`` at ``lr`` for ``steps`` steps from ``seed``."""
    every = eval_interval(steps)
    problem = task.build(seed)
    torch.manual_seed(seed)
    run = SeedRun(seed, lr, [0], [problem.eval_loss()])
    try:
        optimizer = contender.build(problem.params, lr)
        run.settings = settings_of(optimizer)
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
        run.state_bytes = state_bytes(optimizer)
    except Exception as error:  # one broken optimizer must not end a long suite
        run.error = f"{type(error).__name__}: {error}"
    finite = [value for value in run.losses if math.isfinite(value)]
    run.best = min(finite) if finite else None
    if run.nan_step is None and run.error is None:
        run.final = run.losses[-1]
        run.metrics = problem.metrics()
    return run


@dataclass(frozen=True, order=True)
class _Job:
    """One run to do; jobs of earlier tasks go first."""

    task: int
    order: int
    contender: int = field(compare=False)
    lr: float | None = field(compare=False)
    seed: int = field(compare=False)


def _init_worker(shared: Sequence[tuple[Task, object]]) -> None:
    """A worker process: one torch thread, Ctrl-C left to the parent, the tasks' shared data adopted."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    for task, data in shared:
        if task.adopt is not None:
            task.adopt(data)


class _Suite:
    """The bookkeeping of one suite: which runs are done, pending and next."""

    def __init__(
        self, tasks: Sequence[Task], contenders: Sequence[Contender], protocol: Protocol, steps: int | None
    ) -> None:
        self.tasks, self.contenders, self.protocol = list(tasks), list(contenders), protocol
        self.steps = [steps or protocol.steps(task.steps) for task in self.tasks]
        self.runs: dict[tuple[int, int], list[SeedRun]] = {
            (t, c): [] for t in range(len(self.tasks)) for c in range(len(self.contenders))
        }
        self.open: dict[tuple[int, int], int] = dict.fromkeys(self.runs, 0)  # jobs queued or running
        self.queue: list[_Job] = []
        self.count = 0
        self.finished_tasks: list[int] = []
        for t, c in self.runs:
            self._push(t, c, protocol.first_runs(self.contenders[c].adaptive))

    def _push(self, t: int, c: int, runs: Sequence[tuple[float | None, int]]) -> None:
        for lr, seed in runs:
            self.count += 1
            heapq.heappush(self.queue, _Job(t, self.count, c, lr, seed))
            self.open[t, c] += 1

    def args(self, job: _Job) -> tuple[Task, Contender, float | None, int, int]:
        return self.tasks[job.task], self.contenders[job.contender], job.lr, job.seed, self.steps[job.task]

    def record(self, job: _Job, run: SeedRun) -> int | None:
        """Store a finished run, queue what follows it; the task's index when that task is now complete."""
        key = (job.task, job.contender)
        self.runs[key].append(run)
        self.open[key] -= 1
        if self.open[key] == 0:
            finals = {(r.lr, r.seed): r.final for r in self.runs[key]}
            self._push(*key, self.protocol.next_runs(finals))
        if any(self.open[job.task, c] for c in range(len(self.contenders))):
            return None
        self.finished_tasks.append(job.task)
        return job.task

    def task_result(self, t: int) -> TaskResult:
        steps = self.steps[t]
        results = [
            ContenderResult(contender, sorted(self.runs[t, c], key=lambda r: (r.lr or 0.0, r.seed)))
            for c, contender in enumerate(self.contenders)
        ]
        return TaskResult(self.tasks[t], steps, eval_interval(steps), results)

    def results(self) -> list[TaskResult]:
        """Every task with at least one finished run, in the suite's order."""
        started = [t for t in range(len(self.tasks)) if any(self.runs[t, c] for c in range(len(self.contenders)))]
        return [self.task_result(t) for t in started]


def _run_inline(suite: _Suite, done: Callable[[_Job, SeedRun], None]) -> None:
    while suite.queue:
        job = heapq.heappop(suite.queue)
        done(job, run_one(*suite.args(job)))


def _run_pool(suite: _Suite, workers: int, done: Callable[[_Job, SeedRun], None]) -> None:
    shared = [(task, task.prepare(suite.protocol.seeds)) for task in suite.tasks if task.prepare is not None]
    finished: queue.SimpleQueue[tuple[_Job, SeedRun | BaseException]] = queue.SimpleQueue()
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers, initializer=_init_worker, initargs=(shared,))
    running = 0
    try:
        while suite.queue or running:
            while suite.queue and running < 2 * workers:
                job = heapq.heappop(suite.queue)
                pool.apply_async(
                    run_one,
                    suite.args(job),
                    callback=lambda run, job=job: finished.put((job, run)),
                    error_callback=lambda error, job=job: finished.put((job, error)),
                )
                running += 1
            try:
                job, outcome = finished.get(timeout=0.2)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            running -= 1
            if isinstance(outcome, BaseException):
                raise outcome
            done(job, outcome)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def run_suite(
    tasks: Sequence[Task],
    contenders: Sequence[Contender],
    protocol: Protocol,
    steps: int | None = None,
    skipped: Sequence[Skipped] = (),
    workers: int = 1,
    progress: Progress | None = None,
) -> SuiteResult:
    """Every contender on every task by ``protocol``; with ``workers`` > 1 in that many processes.

    Ctrl-C or an error that is not an optimizer's returns what finished, with
    ``partial`` set and ``stopped`` saying why.
    """
    progress = progress or Progress()
    start = time.perf_counter()
    suite = _Suite(tasks, contenders, protocol, steps)

    def done(job: _Job, run: SeedRun) -> None:
        task, contender = suite.tasks[job.task], suite.contenders[job.contender]
        lr = "preset lr" if run.lr is None else f"lr {run.lr:g}"
        progress.advance(suite.steps[job.task] * task.cost, f"{task.name}: {contender.label}, {lr}, seed {run.seed}")
        finished = suite.record(job, run)
        if finished is not None:
            progress.task_done(suite.task_result(finished), len(suite.finished_tasks), len(suite.tasks))

    stopped = None
    try:
        if workers > 1:
            _run_pool(suite, workers, done)
        else:
            _run_inline(suite, done)
    except KeyboardInterrupt:
        stopped = "interrupted"
    except Exception as error:  # a crash keeps what finished
        stopped = f"{type(error).__name__}: {error}"
    return SuiteResult(
        suite.results(),
        list(contenders),
        list(skipped),
        protocol,
        time.perf_counter() - start,
        workers,
        partial=stopped is not None,
        stopped=stopped,
    )


def most_work(tasks: Sequence[Task], contenders: Sequence[Contender], protocol: Protocol, steps: int | None) -> float:
    """The most work :func:`run_suite` can report to its progress (runs can only be fewer)."""
    runs = sum(protocol.most_runs(contender.adaptive) for contender in contenders)
    return sum((steps or protocol.steps(task.steps)) * task.cost for task in tasks) * runs

"""What the sweep means: best lr, loss there, how forgiving the lr is, and the comparison with AdamW.

Per task and contender (:func:`summarize`):

best lr
    the lr with the lowest mean final loss (:meth:`.sweep.Protocol.best`);
    ``None`` for an adaptive contender, which runs at its preset's lr.
loss at the best lr
    mean, standard deviation, min and max over the seeds run there.
tolerance
    the span of the tried lrs around the best whose mean loss is within
    :data:`TOLERANCE` (10%) of the best, in decades (``log10(high / low)``): 0
    means only the best lr of those tried was that good, 1 a whole decade was.
    Its resolution is the grid's spacing (half a decade); in the quick sweep it
    compares the first seed's losses, as the choice of the best lr does.
lr multiplier
    the best lr divided by AdamW's best lr on the same task: the factor to
    apply to an AdamW learning rate that is known to work.
verdict
    ``win``, ``tie`` or ``loss`` against AdamW at both best lrs. A difference
    counts only when it is larger than both :data:`TIE` (1%) of AdamW's loss and
    :data:`STANDARD_ERRORS` (2) standard errors of the difference over the seeds
    (``sqrt(sd1**2 / n1 + sd2**2 / n2)``); otherwise it is a tie. So a tiny
    gain on a task where every seed agrees is still a tie, and so is a larger
    one that the seeds' spread cannot tell from noise.

Across tasks (:func:`overall`): wins, ties and losses against AdamW, and the lr
multiplier's median, min and max.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .contenders import ADAMW
from .runner import ContenderResult, SeedRun, SuiteResult, TaskResult
from .sweep import Protocol, mean_by_lr

#: An lr is "within tolerance" when its mean loss is at most this much (relative) above the best.
TOLERANCE = 0.10
#: Two mean losses closer than this (relative to AdamW's) are a tie.
TIE = 0.01
#: ... and so are two whose difference is within this many standard errors of it.
STANDARD_ERRORS = 2.0


@dataclass
class Summary:
    """One contender on one task, judged at its best lr."""

    label: str
    adaptive: bool
    #: The lrs it ran at, ascending (empty for an adaptive contender).
    lr_grid: list[float]
    #: Mean final loss per lr (None where a run went NaN or failed); key None for an adaptive contender.
    loss_by_lr: dict[float | None, float | None]
    nan_by_lr: dict[float | None, int]
    errors_by_lr: dict[float | None, int]
    seeds_by_lr: dict[float | None, int]
    best_lr: float | None
    #: The runs at the best lr (every seed); empty if every lr failed.
    best_runs: list[SeedRun]
    #: mean, std, min, max and seeds of the final loss at the best lr; None if every lr failed.
    loss: dict[str, float] | None
    tolerance_decades: float | None = None
    lr_multiplier: float | None = None
    #: True when the best lr is the smallest or the largest of the grid (the optimum may lie beyond).
    at_edge: bool = False
    verdict: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    state_bytes: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": math.fsum(values) / len(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "seeds": len(values),
    }


def tolerance_decades(loss_by_lr: dict[float | None, float | None], best: float) -> float:
    """The decades spanned by the contiguous tried lrs around ``best`` whose loss is within :data:`TOLERANCE`."""
    lrs = sorted(lr for lr in loss_by_lr if lr is not None)
    limit = loss_by_lr[best]
    assert limit is not None
    limit += TOLERANCE * abs(limit)

    def good(lr: float) -> bool:
        value = loss_by_lr[lr]
        return value is not None and value <= limit

    low = high = lrs.index(best)
    while low > 0 and good(lrs[low - 1]):
        low -= 1
    while high < len(lrs) - 1 and good(lrs[high + 1]):
        high += 1
    return math.log10(lrs[high] / lrs[low])


def summarize(result: ContenderResult, protocol: Protocol) -> Summary:
    """One contender's sweep on one task (multiplier and verdict are set by :func:`summarize_task`)."""
    runs = result.runs
    finals = {(run.lr, run.seed): run.final for run in runs}
    losses = mean_by_lr(finals)
    adaptive = result.contender.adaptive
    best = None if adaptive else protocol.best(finals)
    best_runs = [run for run in runs if run.lr == best] if adaptive or best is not None else []
    finished = [run.final for run in best_runs if run.final is not None]
    complete = bool(best_runs) and len(finished) == len(best_runs)
    names = sorted({name for run in best_runs for name in run.metrics})
    summary = Summary(
        label=result.contender.label,
        adaptive=adaptive,
        lr_grid=sorted(lr for lr in losses if lr is not None),
        loss_by_lr=losses,
        nan_by_lr={lr: sum(r.nan_step is not None for r in runs if r.lr == lr) for lr in losses},
        errors_by_lr={lr: sum(r.error is not None for r in runs if r.lr == lr) for lr in losses},
        seeds_by_lr={lr: sum(r.lr == lr for r in runs) for lr in losses},
        best_lr=best,
        best_runs=best_runs if complete else [],
        loss=_spread(finished) if complete else None,
        metrics={name: statistics.fmean(r.metrics[name] for r in best_runs if name in r.metrics) for name in names},
        wall_time_s=statistics.fmean(r.wall_time_s for r in runs) if runs else 0.0,
        state_bytes=max((r.state_bytes for r in runs), default=0),
        settings=best_runs[0].settings if best_runs else {},
    )
    if best is not None:
        summary.tolerance_decades = tolerance_decades(mean_by_lr(protocol.selection(finals)), best)
        summary.at_edge = best in (protocol.grid[0], protocol.grid[-1])
    return summary


def verdict(loss: dict[str, float], reference: dict[str, float]) -> str:
    """``win``, ``tie`` or ``loss`` of a loss spread (:class:`Summary`'s ``loss``) against AdamW's."""
    error = math.sqrt(loss["std"] ** 2 / loss["seeds"] + reference["std"] ** 2 / reference["seeds"])
    if abs(loss["mean"] - reference["mean"]) <= max(TIE * abs(reference["mean"]), STANDARD_ERRORS * error):
        return "tie"
    return "win" if loss["mean"] < reference["mean"] else "loss"


def summarize_task(task_result: TaskResult, protocol: Protocol) -> list[Summary]:
    """Every contender on the task, with lr multipliers and verdicts against AdamW."""
    summaries = [summarize(result, protocol) for result in task_result.results]
    adamw = next((s for s in summaries if s.label == ADAMW and s.loss is not None), None)
    for summary in summaries:
        if adamw is None or summary is adamw:
            continue
        if summary.best_lr is not None and adamw.best_lr is not None:
            summary.lr_multiplier = summary.best_lr / adamw.best_lr
        if summary.loss is not None:
            summary.verdict = verdict(summary.loss, adamw.loss)  # type: ignore[arg-type]
        else:
            summary.verdict = "loss"  # every lr went NaN or failed
    return summaries


@dataclass
class Overall:
    """One contender across the tasks."""

    label: str
    wins: int
    ties: int
    losses: int
    #: The lr multiplier per task where both best lrs exist.
    multipliers: dict[str, float]

    @property
    def multiplier_median(self) -> float | None:
        values = list(self.multipliers.values())
        return math.exp(statistics.median(math.log(v) for v in values)) if values else None

    @property
    def multiplier_range(self) -> tuple[float, float] | None:
        values = list(self.multipliers.values())
        return (min(values), max(values)) if values else None


def overall(suite: SuiteResult) -> list[Overall]:
    """Every contender (but AdamW) across the suite's tasks, in the contenders' order."""
    per_task = {task.task.name: summarize_task(task, suite.protocol) for task in suite.tasks}
    result = []
    for contender in suite.contenders:
        if contender.label == ADAMW:
            continue
        found = [(name, s) for name, summaries in per_task.items() for s in summaries if s.label == contender.label]
        verdicts = [s.verdict for _, s in found]
        multipliers = {name: s.lr_multiplier for name, s in found if s.lr_multiplier is not None}
        result.append(
            Overall(contender.label, verdicts.count("win"), verdicts.count("tie"), verdicts.count("loss"), multipliers)
        )
    return result

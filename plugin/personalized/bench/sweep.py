"""The learning-rate protocol: which (lr, seed) runs every contender gets, the same for all.

Every contender that takes a step size (AdamW included) is trained at the
learning rates of one log-spaced grid, with the same seeds and steps, and is
judged at its best lr. Adaptive contenders (see :mod:`.contenders`) run at
their preset's values with every seed.

``full`` (``personalized bench --full``)
    Every lr of :data:`FULL_GRID` (1e-5 to 0.3, half a decade apart) with every seed.
``quick`` (the default)
    The whole decades of the grid from 1e-4 (:data:`COARSE_GRID`) with the
    first seed; then the two half-decade neighbours of the best of those, with
    the first seed; then the remaining seeds at the best lr found so far; each
    run 3/4 of the task's steps. Eight runs per contender and task instead of
    30, so that the suite takes minutes; its losses are not comparable with a
    full sweep's.
``fixed`` (``--lr``)
    The given learning rates with every seed.

The best lr is the one with the lowest mean final loss over its seeds (in the
quick sweep: the first seed's); an lr at which any seed went NaN or failed
cannot be the best.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Every lr the full sweep tries: 1e-5 to 0.3, half a decade (x3.16) apart, rounded to 1 or 3.
FULL_GRID: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
#: The first pass of the quick sweep: the whole decades of :data:`FULL_GRID` from 1e-4 (the
#: refinement still reaches 3e-5 and 0.3 around a best lr at either end).
COARSE_GRID: tuple[float, ...] = FULL_GRID[2::2]
#: The quick sweep trains this fraction of each task's steps (300 of 400).
QUICK_STEPS = 0.75

#: A run's final loss, or None when it went NaN or failed; keyed by ``(lr, seed)``.
Finals = Mapping[tuple[float | None, int], float | None]


@dataclass(frozen=True)
class Protocol:
    """How every contender is swept: the mode, its grid and the seeds."""

    mode: str
    grid: tuple[float, ...]
    seeds: tuple[int, ...]
    #: The fraction of each task's steps every run trains.
    step_fraction: float = 1.0

    @classmethod
    def quick(cls, seeds: Sequence[int]) -> Protocol:
        return cls("quick", FULL_GRID, tuple(seeds), QUICK_STEPS)

    @classmethod
    def full(cls, seeds: Sequence[int]) -> Protocol:
        return cls("full", FULL_GRID, tuple(seeds))

    @classmethod
    def fixed(cls, lrs: Sequence[float], seeds: Sequence[int]) -> Protocol:
        return cls("fixed", tuple(sorted(set(lrs))), tuple(seeds))

    def describe(self) -> str:
        """The protocol in one sentence, for results.md and the console."""
        grid = ", ".join(f"{lr:g}" for lr in self.grid)
        seeds = len(self.seeds)
        if self.mode == "quick":
            return (
                f"quick sweep: lr {', '.join(f'{lr:g}' for lr in COARSE_GRID)} with seed {self.seeds[0]}, then the "
                f"half-decade neighbours of the best ({grid}), then {seeds} seed(s) at the best lr; "
                f"{self.step_fraction:.0%} of each task's steps"
            )
        return f"{self.mode} sweep: every lr of {grid} with {seeds} seed(s)"

    def steps(self, task_steps: int) -> int:
        """The steps of every run on a task of ``task_steps`` steps."""
        return max(1, round(task_steps * self.step_fraction))

    def first_runs(self, adaptive: bool) -> list[tuple[float | None, int]]:
        """The ``(lr, seed)`` runs a contender starts with (lr None: the preset's, for adaptive ones)."""
        if adaptive:
            return [(None, seed) for seed in self.seeds]
        if self.mode == "quick":
            return [(lr, self.seeds[0]) for lr in COARSE_GRID]
        return [(lr, seed) for lr in self.grid for seed in self.seeds]

    def next_runs(self, finals: Finals) -> list[tuple[float | None, int]]:
        """The runs that follow once every run in ``finals`` is done; [] when the contender is finished."""
        if self.mode != "quick" or None in {lr for lr, _ in finals}:
            return []
        done = {lr for lr, _ in finals}
        best = self.best(finals)
        if best is None:
            return []
        index = self.grid.index(best)
        neighbours = [self.grid[i] for i in (index - 1, index + 1) if 0 <= i < len(self.grid)]
        refine = [(lr, self.seeds[0]) for lr in neighbours if lr not in done]
        if refine:
            return refine
        return [(best, seed) for seed in self.seeds if (best, seed) not in finals]

    def best(self, finals: Finals) -> float | None:
        """The contender's best lr, by :func:`best_lr` over :meth:`selection`.

        In the quick sweep the other seeds run at that lr only, so they confirm
        the choice and give its spread without changing it.
        """
        return best_lr(self.selection(finals))

    def selection(self, finals: Finals) -> Finals:
        """The runs that choose the best lr: all of them, or in the quick sweep the first seed's."""
        if self.mode == "quick":
            return {key: value for key, value in finals.items() if key[1] == self.seeds[0]}
        return finals

    def most_runs(self, adaptive: bool) -> int:
        """The most runs a contender can take (for the progress estimate)."""
        if adaptive:
            return len(self.seeds)
        if self.mode == "quick":
            return len(COARSE_GRID) + 2 + len(self.seeds) - 1
        return len(self.grid) * len(self.seeds)


def mean_by_lr(finals: Finals) -> dict[float | None, float | None]:
    """The mean final loss at each lr over its seeds; None where any seed went NaN or failed."""
    by_lr: dict[float | None, list[float | None]] = {}
    for (lr, _), final in finals.items():
        by_lr.setdefault(lr, []).append(final)
    return {
        lr: None if any(value is None for value in values) else math.fsum(values) / len(values)  # type: ignore[arg-type]
        for lr, values in sorted(by_lr.items(), key=lambda item: -1.0 if item[0] is None else item[0])
    }


def best_lr(finals: Finals) -> float | None:
    """The lr with the lowest mean final loss (the smaller lr of two equal ones); None if every lr failed."""
    means = {lr: value for lr, value in mean_by_lr(finals).items() if value is not None and lr is not None}
    return min(means, key=lambda lr: (means[lr], lr)) if means else None

"""The bench's tasks, one module per family: landscapes, classifier, diffusion, lora, denoiser.

Each task is small, seeded and deterministic on the CPU; the ones on
digits use scikit-learn's bundled images (nothing is downloaded).
"""

from __future__ import annotations

import difflib

from . import classifier, denoiser, diffusion, landscapes, lora
from .base import Problem, Task

__all__ = ["QUICK", "TASKS", "Problem", "Task", "get_task"]

#: Every task, by name, in the order the suite runs and reports them.
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        landscapes.QUADRATIC,
        landscapes.ROSENBROCK,
        classifier.TASK,
        diffusion.TASK,
        lora.TASK,
        denoiser.TASK,
    )
}

#: The tasks ``personalized bench`` runs by default.
QUICK: tuple[str, ...] = tuple(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; ValueError with close matches for an unknown one."""
    key = name.strip().lower()
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(key, TASKS, n=2)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown task {name!r}.{hint} Tasks: {', '.join(TASKS)}.")

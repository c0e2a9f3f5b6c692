"""``personalized bench``: compare optimizers on small, real, seeded training tasks on the CPU.

Tasks (one module per family in :mod:`personalized.bench.tasks`): noisy
landscapes, a digits classifier, a flow-matching model on the digits and a
LoRA adaptation. :mod:`.runner` trains them without hiding NaNs,
:mod:`.report` writes results.json and the tables, :mod:`.plots` the PNGs,
and :mod:`.command` is the command line. scikit-learn and matplotlib (the
``bench`` extra) are imported only when a run needs them.
"""

from __future__ import annotations

from .command import register
from .contenders import ADAMW, Contender, select
from .runner import run_one, run_suite, run_task
from .tasks import TASKS, Task, get_task

__all__ = ["ADAMW", "TASKS", "Contender", "Task", "get_task", "register", "run_one", "run_suite", "run_task", "select"]

"""``personalized bench``: compare optimizers on small, real, seeded training tasks on the CPU.

Tasks (one module per family in :mod:`personalized.bench.tasks`): noisy
landscapes, a digits classifier, a flow-matching model on the digits, a LoRA
of a classifier and a LoRA of a pretrained denoiser. :mod:`.sweep` is the
learning-rate protocol every contender shares, :mod:`.runner` trains them
(in worker processes, without hiding NaNs), :mod:`.analysis` finds each one's
best lr, tolerance and lr multiplier, :mod:`.report` writes results.json and
the tables, :mod:`.plots` the PNGs, and :mod:`.command` is the command line.
scikit-learn and matplotlib (the ``bench`` extra) are imported only when a
run needs them.
"""

from __future__ import annotations

from .command import register
from .contenders import ADAMW, Contender, select
from .runner import run_one, run_suite
from .sweep import Protocol
from .tasks import TASKS, Task, get_task

__all__ = ["ADAMW", "TASKS", "Contender", "Protocol", "Task", "get_task", "register", "run_one", "run_suite", "select"]

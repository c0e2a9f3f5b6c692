"""Who runs in the bench: the chosen optimizers' presets and the two baselines.

A contender is one line of the table: a preset of ours (``default/FCompass``,
``rvc/FCompass``) or the ``torch.optim.AdamW`` baseline, whose learning rate
is chosen per task. ``Prodigy`` (``default/Prodigy``) is the other baseline.
Optimizers whose optional package is missing are skipped with a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import presets
from ..factory import create_optimizer
from ..registry import available, canonical_name, get_optimizer
from .deps import require
from .tasks import Task

#: The label of the AdamW baseline, whose final loss is every task's target.
ADAMW = "torch.optim.AdamW"
#: The preset of the Prodigy baseline.
PRODIGY = "default/Prodigy"
#: What ``--optimizers`` accepts for the AdamW baseline (it always runs anyway).
ADAMW_NAMES = frozenset({"adamw", "torch.optim.adamw", "torchoptimadamw"})


@dataclass(frozen=True)
class Contender:
    """One optimizer setting to run on every task and seed."""

    label: str
    optimizer: str
    #: The preset it is built from; None for the AdamW baseline.
    preset: str | None
    baseline: bool = False
    #: Keywords that replace the preset's (or AdamW's) values, e.g. ``{"lr": 1e-3}``.
    overrides: dict[str, Any] = field(default_factory=dict)

    def build(self, params: Iterable[torch.nn.Parameter], task: Task) -> torch.optim.Optimizer:
        """The optimizer for ``params``; AdamW takes ``task.adamw_lr``."""
        if self.preset is None:
            return torch.optim.AdamW(params, **{"lr": task.adamw_lr, **self.overrides})
        return create_optimizer(params, self.preset, **self.overrides)


@dataclass(frozen=True)
class Skipped:
    """A contender that could not run here, and why."""

    name: str
    reason: str


def adamw() -> Contender:
    """The torch.optim.AdamW baseline."""
    return Contender(ADAMW, "AdamW", None, baseline=True)


def from_preset(name: str, baseline: bool = False) -> Contender:
    """The contender for preset ``name``; ValueError if unknown, ImportError if its optimizer's package is missing."""
    preset = presets.load(name)
    return Contender(preset.name, preset.optimizer, preset.name, baseline=baseline)


def select(
    optimizers: Sequence[str] | None = None, preset_names: Sequence[str] | None = None
) -> tuple[list[Contender], list[Skipped]]:
    """The contenders for ``--optimizers`` and ``--presets``, baselines first, and the skipped ones.

    With neither, every optimizer runs with its ``default/<Name>`` preset.
    Unknown names raise ValueError (with close matches); a missing PyYAML
    raises MissingDependency.
    """
    require("yaml", "PyYAML")
    wanted = [PRODIGY]
    names = list(optimizers or [])
    if not names and not preset_names:
        names = available()
    for name in names:
        if "".join(name.lower().split()) not in ADAMW_NAMES:
            wanted.append(f"default/{canonical_name(name)}")
    for name in preset_names or []:
        if "/" not in name:
            raise ValueError(f"{name!r} is not a preset name; presets look like default/FCompass or rvc/FCompass")
        wanted.append(name)
    chosen: dict[str, Contender] = {ADAMW: adamw()}
    skipped: dict[str, Skipped] = {}
    for name in wanted:
        try:
            contender = from_preset(name, baseline=name == PRODIGY)
            get_optimizer(contender.optimizer)
        except ImportError as error:  # the optimizer's optional package is missing
            skipped.setdefault(name, Skipped(name, str(error)))
            continue
        chosen.setdefault(contender.label, contender)
    return list(chosen.values()), list(skipped.values())

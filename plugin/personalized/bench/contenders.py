"""Who runs in the bench: the chosen optimizers' presets, the baselines and, on request, their peers.

A contender is one line of the table: a preset of ours (``default/FCompass``,
``rvc/FCompass``), the ``torch.optim.AdamW`` baseline, or a peer from
pytorch_optimizer (``--peers``). Every contender is built with a learning rate
from the sweep (see :mod:`.sweep`) and its other hyperparameters from its
preset (AdamW and the peers: their library defaults).

*Adaptive* contenders find their own step size, so sweeping ``lr`` would not
mean the same thing for them: Prodigy (``lr`` multiplies the step size ``d`` it
estimates; 1.0 is the recommended value), Automagic (``lr`` is only where every
weight's own lr starts) and any preset without an lr (EnhancedAdafactor's
relative step). They run once per seed at their preset's values, labelled
"adaptive" in the tables. EnhancedAdafactor also runs with a fixed lr
(``chroma/adafactor``), swept like the others.

Optimizers whose optional package is missing are skipped with a note.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .. import presets
from ..factory import create_optimizer
from ..registry import available, canonical_name, get_optimizer
from .deps import require

#: The label of the AdamW baseline; every contender's lr multiplier is relative to its best lr.
ADAMW = "torch.optim.AdamW"
#: The preset of the Prodigy baseline.
PRODIGY = "default/Prodigy"
#: What ``--optimizers`` accepts for the AdamW baseline (it always runs anyway).
ADAMW_NAMES = frozenset({"adamw", "torch.optim.adamw", "torchoptimadamw"})
#: Optimizers whose ``lr`` is not a step size to sweep (see the module docstring).
ADAPTIVE = frozenset({"Prodigy", "Automagic"})
#: Extra presets that run beside an optimizer's adaptive default: its fixed-lr mode, swept.
FIXED_LR_MODES = {"EnhancedAdafactor": "chroma/adafactor"}


@dataclass(frozen=True)
class Peer:
    """An optimizer from pytorch_optimizer that users would pick instead of one of ours."""

    #: The class name in pytorch_optimizer.
    name: str
    #: The optimizer of ours it stands beside.
    relative: str
    #: Further keywords that take the swept lr too (MARS steps 1-D weights with ``lr_1d``).
    lr_keys: tuple[str, ...] = ()


#: The nearest relatives ``--peers`` adds, when pytorch_optimizer is installed.
PEERS = (
    Peer("FAdam", "FCompass"),
    Peer("MARS", "FMARSCrop", lr_keys=("lr_1d",)),
    Peer("ADOPT", "REMASTER"),
    Peer("SCION", "SCORN"),
)


@dataclass(frozen=True)
class Contender:
    """One optimizer setting to run on every task, learning rate and seed."""

    label: str
    #: The optimizer's class name.
    optimizer: str
    #: The preset it is built from; None for AdamW and the peers.
    preset: str | None
    baseline: bool = False
    #: True where lr is not swept (see the module docstring); the preset's lr is used.
    adaptive: bool = False
    #: Keywords that replace the preset's (or the library's) values, e.g. from ``--set``.
    overrides: dict[str, Any] = field(default_factory=dict)
    #: For a pytorch_optimizer peer: which one.
    peer: Peer | None = None

    def build(self, params: Iterable[torch.nn.Parameter], lr: float | None) -> torch.optim.Optimizer:
        """The optimizer for ``params`` at learning rate ``lr`` (None: the preset's, for adaptive ones)."""
        chosen = {} if lr is None else {"lr": lr}
        if self.peer is not None:
            module = importlib.import_module("pytorch_optimizer")
            chosen.update(dict.fromkeys(self.peer.lr_keys, lr) if lr is not None else {})
            return getattr(module, self.peer.name)(params, **{**chosen, **self.overrides})
        if self.preset is None:
            return torch.optim.AdamW(params, **{**chosen, **self.overrides})
        return create_optimizer(params, self.preset, **{**chosen, **self.overrides})

    def accepts(self, key: str) -> bool:
        """Whether the optimizer takes ``key`` as a constructor keyword."""
        if self.peer is None and self.preset is not None:
            defaults = get_optimizer(self.optimizer).hyperparameter_defaults()
            return key in defaults
        cls = (
            torch.optim.AdamW
            if self.peer is None
            else getattr(importlib.import_module("pytorch_optimizer"), self.optimizer)
        )
        return key in inspect.signature(cls).parameters and key != "params"


@dataclass(frozen=True)
class Skipped:
    """A contender that could not run here, and why."""

    name: str
    reason: str


def adamw() -> Contender:
    """The torch.optim.AdamW baseline (torch's defaults but the lr)."""
    return Contender(ADAMW, "AdamW", None, baseline=True)


def from_preset(name: str, baseline: bool = False) -> Contender:
    """The contender for preset ``name``; ValueError if unknown, ImportError if its optimizer's package is missing."""
    preset = presets.load(name)
    adaptive = preset.lr is None or canonical_name(preset.optimizer) in ADAPTIVE
    return Contender(preset.name, canonical_name(preset.optimizer), preset.name, baseline=baseline, adaptive=adaptive)


def peers() -> tuple[list[Contender], list[Skipped]]:
    """pytorch_optimizer's nearest relatives of ours, or one note if it is not installed."""
    try:
        module = importlib.import_module("pytorch_optimizer")
    except ImportError:
        return [], [Skipped("--peers", "needs pytorch_optimizer: pip install pytorch-optimizer")]
    found = [peer for peer in PEERS if hasattr(module, peer.name)]
    missing = [Skipped(f"pytorch_optimizer.{peer.name}", "not in this version") for peer in PEERS if peer not in found]
    return [Contender(f"pytorch_optimizer.{peer.name}", peer.name, None, peer=peer) for peer in found], missing


def with_overrides(
    contenders: Sequence[Contender], overrides: Mapping[str, Any]
) -> tuple[list[Contender], dict[str, list[str]]]:
    """``overrides`` given to every contender (but the AdamW baseline) whose optimizer accepts them.

    Returns the contenders and, per key, the labels that took it. A key that
    no contender accepts raises ValueError.
    """
    taken: dict[str, list[str]] = {key: [] for key in overrides}
    result = []
    for contender in contenders:
        own = {}
        if contender.label != ADAMW:
            own = {key: value for key, value in overrides.items() if contender.accepts(key)}
        for key in own:
            taken[key].append(contender.label)
        result.append(replace(contender, overrides={**contender.overrides, **own}) if own else contender)
    unused = [key for key, labels in taken.items() if not labels]
    if unused:
        raise ValueError(f"--set {', '.join(unused)}: no chosen optimizer takes this keyword")
    return result, taken


def select(
    optimizers: Sequence[str] | None = None,
    preset_names: Sequence[str] | None = None,
    with_peers: bool = False,
) -> tuple[list[Contender], list[Skipped]]:
    """The contenders for ``--optimizers``, ``--presets`` and ``--peers``, baselines first, and the skipped ones.

    With neither names nor presets, every optimizer runs with its
    ``default/<Name>`` preset (and the fixed-lr mode of an adaptive one, see
    :data:`FIXED_LR_MODES`). Unknown names raise ValueError (with close
    matches); a missing PyYAML raises MissingDependency.
    """
    require("yaml", "PyYAML")
    wanted = [PRODIGY]
    names = list(optimizers or [])
    if not names and not preset_names:
        names = available()
    for name in names:
        if "".join(name.lower().split()) not in ADAMW_NAMES:
            canonical = canonical_name(name)
            wanted.append(f"default/{canonical}")
            if canonical in FIXED_LR_MODES:
                wanted.append(FIXED_LR_MODES[canonical])
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
    if with_peers:
        found, missing = peers()
        chosen.update((contender.label, contender) for contender in found)
        skipped.update((skip.name, skip) for skip in missing)
    return list(chosen.values()), list(skipped.values())

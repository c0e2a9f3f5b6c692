"""RVC WebUI (Retrieval-based-Voice-Conversion-WebUI): train voice models with a personalized optimizer.

RVC has no optimizer option: its ``train/train.py`` (``infer/modules/train/train.py``
in older releases) builds ``torch.optim.AdamW(net.parameters(), learning_rate,
betas=..., eps=...)`` for the generator and the discriminator, in worker
processes started with ``torch.multiprocessing`` spawn. This integration swaps
those two calls, and only those, for the optimizer you choose.

Switch it on (once per RVC environment)::

    <RVC's python> -m pip install "/path/to/personalized-optimizers[presets]"
    personalized install rvc --python <RVC's python>

(``/path/to/personalized-optimizers`` is a clone of the repository.)
For the Windows portable build that is ``runtime\\python.exe -m pip install ...``
and ``runtime\\python.exe -m personalized install rvc`` in RVC's folder. This
writes ``personalized-rvc.pth`` into that Python's site-packages; it imports the
torch-free hook :mod:`personalized_hooks.rvc` at every start and does nothing
until you choose an optimizer.

Choose the optimizer
--------------------
* per experiment, in ``logs/<experiment>/config.json``, inside ``"train"``:
  ``"optimizer": "rvc/FCompass"`` and optionally
  ``"optimizer_args": {"weight_decay": 0.05}``;
* for every experiment that names none: the environment variables
  ``PERSONALIZED_RVC_OPTIMIZER=rvc/FCompass`` and
  ``PERSONALIZED_RVC_OPTIMIZER_ARGS={"weight_decay": 0.05}`` (a JSON object),
  set before starting the web UI (the web UI passes its environment on).

The experiment's config.json wins over the environment, and the optimizer
arguments always come from the same place as the optimizer.

What the value may name:

* a preset, anything with a ``/`` (``rvc/FCompass``, ``rvc/FishMonger``): the
  optimizer is built exactly as ``personalized.create_optimizer(params,
  "rvc/FCompass", **optimizer_args)``: the preset's lr and hyperparameters (see
  ``personalized presets show rvc/FCompass``), then ``optimizer_args``. RVC's
  ``learning_rate``, ``betas`` and ``eps`` are not used: the RVC presets'
  betas (0.9, 0.99) are the point of naming them. To change the lr, put
  ``"lr"`` into ``optimizer_args``. Presets need PyYAML (the ``[presets]`` extra).
* an optimizer (``FCompass``, ``personalized.FCompass``, any case): its own
  defaults, overridden by RVC's values where they mean the same thing, then by
  ``optimizer_args``. RVC's values are ``learning_rate`` (not for
  learning-rate-free optimizers, whose own default lr is None or >= 1, such as
  Prodigy and EnhancedAdafactor's relative step), ``betas`` (0.8, 0.99) for
  optimizers with betas (an optimizer with three, such as FishMonger, keeps its
  own third beta) and ``eps`` 1e-9 for optimizers with a single float eps.
* ``AdamW`` (or ``torch.optim.AdamW``): torch's AdamW with RVC's values and
  ``optimizer_args``, which also survives a checkpoint written by another
  optimizer. Use it to switch an experiment back (see below).

Every swapped call prints one line to the console saying what was built and why.

The NaN guard
-------------
RVC trains on through NaN losses and saves NaN checkpoints without a word.
``"nan_guard": "stop"`` in the same ``train`` section (or the environment
variable ``PERSONALIZED_RVC_NAN_GUARD=stop``; config.json's ``nan_guard*``
keys win) skips every step that would put NaN/inf into G or D, applies the
preset's fallbacks one by one (one console line each), and once they are used
up stops training with ``NonFiniteTraining`` before a NaN checkpoint is
written. ``"fallbacks"`` (or ``true``) skips and applies the fallbacks but
never stops. The fallbacks are the chosen preset's (``rvc/FCompass``), or
``default/<Optimizer>`` for an optimizer name; ``nan_guard_preset`` names
another, ``nan_guard_patience`` (3) is the number of skipped steps before the
next fallback (see :mod:`personalized.guarding`). The ``nan_guard*`` keys may
also be written inside ``optimizer_args``; the ``train`` section's win. With a
guard and no optimizer, RVC's own AdamW (RVC's values) is guarded: it has no
fallbacks, so ``stop`` stops after ``nan_guard_patience`` skipped steps.

Resuming and switching optimizers
---------------------------------
RVC resumes from the latest ``G_*.pth``/``D_*.pth`` of the experiment and
calls ``optimizer.load_state_dict`` on the saved state; if that raises, it
silently starts again from the pretrained weights at epoch 1.

* Same optimizer: state, step counts and settings come from the checkpoint
  (torch restores the saved param groups, so changed ``optimizer_args`` apply
  to new experiments, or after switching optimizers).
* AdamW to ours: our optimizers see AdamW's state, warn once and start their
  own state fresh; the weights, the epoch and the lr schedule carry on.
* Ours to AdamW: choose ``"AdamW"`` as above. If you just remove the choice,
  RVC's plain AdamW accepts our state and then fails at its first step
  (``KeyError: 'exp_avg'``): that is torch's AdamW, which we do not touch
  unless an optimizer is chosen.

Limits
------
* Only interpreters that read site-packages ``.pth`` files at start-up are
  reached: ``python -S`` is not, nor an embedded Python whose
  ``python3XX._pth`` lacks the line ``import site``;
  ``personalized install rvc`` checks this and says how to fix it. Isolated
  mode (``-I``, as the portable build's ``go-webui.bat`` starts the web UI) still
  reads them, and the ``PERSONALIZED_RVC_*`` variables still reach the hook
  (isolated mode ignores only ``PYTHON*`` variables).
* Any script whose path ends in ``train/train.py`` counts as RVC's, so forks
  with the same layout are covered too (untested).
"""

from __future__ import annotations

import functools
import inspect
import json
import subprocess
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from personalized_hooks.rvc import ARGS_VAR, NAN_GUARD_VAR, OPTIMIZER_VAR

from personalized import presets
from personalized.factory import resolve
from personalized.guarding import GuardSettings, guarded_class, split_guard_keywords
from personalized.install_source import install_instruction
from personalized.registry import get_optimizer

from .. import pth

#: The .pth file's name (personalized-rvc.pth) and the module it imports.
PTH_NAME = "rvc"
HOOK_MODULE = "personalized_hooks.rvc"
#: Names that mean torch's AdamW (lower case).
ADAMW_NAMES = ("adamw", "torch.optim.adamw")
#: The per-parameter state keys of torch's AdamW.
ADAMW_STATE = frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"})
#: Where RVC keeps its training script (either is enough to recognise an RVC folder).
TRAIN_SCRIPTS = ("train/train.py", "infer/modules/train/train.py")


@dataclass(frozen=True)
class Choice:
    """An optimizer choice: what the user wrote, its arguments, and where it was written; the same for
    the NaN guard (its ``nan_guard*`` settings, empty when none is set)."""

    spec: str
    args: dict[str, Any] = field(default_factory=dict)
    source: str = "?"
    guard: dict[str, Any] = field(default_factory=dict)
    guard_source: str = "?"


def parse_choice(raw: Mapping[str, Any]) -> Choice:
    """Check the choice the hook found (raw values from config.json or the environment)."""
    source = str(raw.get("source", "?"))
    spec = raw.get("optimizer")
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{source}: expected an optimizer or preset name such as 'rvc/FCompass', got {spec!r}")
    args = raw.get("optimizer_args")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as error:
            raise ValueError(f"{ARGS_VAR} is not valid JSON: {error}") from None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        where = ARGS_VAR if source == OPTIMIZER_VAR else "train.optimizer_args"
        raise ValueError(f"{where} must be a JSON object of keyword arguments, got {args!r}")
    guard = dict(raw.get("nan_guard") or {})
    return Choice(spec.strip(), args, source, guard, str(raw.get("nan_guard_source", NAN_GUARD_VAR)))


def rvc_values_for(cls: type, trainer: Mapping[str, Any]) -> dict[str, Any]:
    """RVC's lr, betas and eps (and any other keyword it passed), where ``cls`` has the same setting."""
    defaults = cls.hyperparameter_defaults()
    values = {}
    for key, value in trainer.items():
        default = defaults.get(key, inspect.Parameter.empty)
        if key == "lr" and (default is None or default >= 1.0):
            continue  # learning-rate-free: its lr is a multiplier or a relative step, not Adam's lr
        if key == "betas":
            if not isinstance(default, tuple) or len(default) < len(value):
                continue
            value = (*value, *default[len(value) :])
        if key == "eps" and not isinstance(default, float):
            continue  # Adafactor-style (eps1, eps2) pairs are a different setting
        if default is not inspect.Parameter.empty:
            values[key] = value
    return values


def optimizer_and_kwargs(choice: Choice, trainer: Mapping[str, Any], adamw: type) -> tuple[type, dict[str, Any]]:
    """The class to build and its keywords (the precedence is in the module docstring)."""
    if choice.spec.lower() in ADAMW_NAMES:
        return checkpoint_safe_adamw(adamw), {**trainer, **choice.args}
    try:
        if "/" in choice.spec:
            cls, kwargs, _ = resolve(choice.spec)
            return cls, {**kwargs, **choice.args}
        cls = get_optimizer(choice.spec)
    except ImportError as error:
        raise ImportError(f"{choice.source}: {error}") from error
    except (TypeError, ValueError) as error:
        raise ValueError(f"{choice.source}: {error}") from error
    return cls, {**rvc_values_for(cls, trainer), **choice.args}


def build(raw_choice: Mapping[str, Any], adamw: type, /, *args: Any, **kwargs: Any) -> torch.optim.Optimizer:
    """What RVC's ``torch.optim.AdamW(params, lr, betas=..., eps=...)`` builds once a choice is made.

    ``adamw`` is torch's real AdamW; ``args`` and ``kwargs`` are RVC's call.
    """
    choice = parse_choice(raw_choice)
    guard_args, optimizer_args = split_guard_keywords(choice.args)
    choice = replace(choice, args=optimizer_args)
    call = inspect.signature(adamw).bind(*args, **kwargs).arguments
    params = call.pop("params")
    cls, settings = optimizer_and_kwargs(choice, call, adamw)
    guard = {**guard_args, **choice.guard}
    if guard:
        if "/" in choice.spec:  # a preset: its own fallbacks
            guard.setdefault("nan_guard_preset", choice.spec)
        try:
            GuardSettings.parse(cls.__name__, guard)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{choice.guard_source if choice.guard else choice.source}: {error}") from error
        cls, settings = guarded_class(cls), {**settings, **guard}
    try:
        optimizer = cls(params, **settings)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{choice.source}: {error}") from error
    print(f"personalized: RVC's AdamW -> {describe(optimizer)} ({choice.source})", file=sys.stderr, flush=True)
    return optimizer


def describe(optimizer: torch.optim.Optimizer) -> str:
    """The class and settings of ``optimizer``, and what its NaN guard will do."""
    group = optimizer.param_groups[0]
    settings = ", ".join(f"{key}={value!r}" for key, value in group.items() if key not in ("params", "initial_lr"))
    guard = getattr(optimizer, "nan_guard", None)
    if guard is None:
        return f"{type(optimizer).__name__}({settings})"
    fallbacks = (
        f"{len(guard.fallbacks)} fallbacks from preset {guard.preset_name}" if guard.fallbacks else "no fallbacks"
    )
    end = "then stops training" if guard.stop else "then skips bad steps"
    return f"{type(optimizer).__name__}({settings}) with the NaN guard ({fallbacks}, {end})"


# -- torch's AdamW, for switching back ---------------------------------------------------


@functools.cache
def checkpoint_safe_adamw(adamw: type) -> type:
    """torch's AdamW whose ``load_state_dict`` starts the state fresh when it holds another optimizer's."""

    class AdamW(adamw):
        __doc__ = adamw.__doc__

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            foreign = foreign_adamw_keys(state_dict["state"].values())
            if not foreign:
                super().load_state_dict(state_dict)
                return
            settings = [dict(group) for group in self.param_groups]
            super().load_state_dict({**state_dict, "state": {}})
            for group, mine in zip(self.param_groups, settings):
                schedule = {key: group[key] for key in ("lr", "initial_lr") if key in group}
                group.clear()
                group.update(mine, **schedule)
            warnings.warn(
                f"AdamW: the checkpoint holds another optimizer's state ({', '.join(foreign)}); "
                "the weights are kept and AdamW starts its state fresh",
                stacklevel=2,
            )

    return AdamW


def foreign_adamw_keys(states: Iterable[Mapping[str, Any]]) -> list[str]:
    """State keys AdamW does not use, plus ``no exp_avg`` where a state lacks it."""
    unknown, missing = set(), False
    for state in states:
        unknown |= set(state) - ADAMW_STATE
        missing |= bool(state) and "exp_avg" not in state
    return sorted(unknown) + (["no exp_avg"] if missing else [])


# -- personalized install rvc / uninstall rvc ----------------------------------------------

#: Run in RVC's Python by install: can it import the hook, does it read .pth files, is PyYAML there?
PROBE = """
import glob, importlib.util, json, os, sys, sysconfig
purelib = os.path.normcase(os.path.abspath(sysconfig.get_paths()["purelib"]))
print(json.dumps({
    "site": "site" in sys.modules,
    "hook": importlib.util.find_spec("personalized_hooks.rvc") is not None,
    "yaml": importlib.util.find_spec("yaml") is not None,
    "on_path": purelib in {os.path.normcase(os.path.abspath(p)) for p in sys.path if p},
    "pth_files": glob.glob(os.path.join(os.path.dirname(sys.executable), "*._pth")),
}))
"""


def probe(python: str | None) -> dict[str, Any]:
    """What :data:`PROBE` finds in ``python`` (this interpreter by default)."""
    executable = python or sys.executable
    try:
        result = subprocess.run([executable, "-c", PROBE], capture_output=True, text=True, check=True)
        return json.loads(result.stdout)
    except (OSError, subprocess.CalledProcessError, ValueError) as error:
        raise ValueError(f"cannot run the trainer's Python {executable!r}: {error}") from None


def check_rvc_folder(path: Path, python: str | None) -> None:
    if not any((path / script).is_file() for script in TRAIN_SCRIPTS):
        raise ValueError(f"{path} does not look like RVC: none of {', '.join(TRAIN_SCRIPTS)} there")
    runtime = path / "runtime" / "python.exe"
    if python is None and runtime.is_file():
        raise ValueError(
            f"{path} has its own Python ({runtime}); install there with --python {runtime} "
            f"(or pass --python {sys.executable} to install into this one anyway)"
        )


def check_environment(found: Mapping[str, Any], python: str) -> None:
    if not found["hook"]:
        raise ValueError(
            f"personalized-optimizers is not installed for {python}: {install_instruction(python, 'presets')} first"
        )
    if not found["site"]:
        where = " or ".join(found["pth_files"]) or "its ._pth file"
        raise ValueError(
            f"{python} does not import the site module at start-up, so it ignores .pth files: "
            f"add a line 'import site' to {where}, then run this again"
        )


def install(path: Path | None, python: str | None) -> list[str]:
    """Write ``personalized-rvc.pth`` into RVC's Python and print how to choose an optimizer."""
    if path is not None:
        check_rvc_folder(path, python)
    shown = python or sys.executable
    found = probe(python)
    check_environment(found, shown)
    written = pth.write_pth(PTH_NAME, HOOK_MODULE, python)
    rvc_presets = [name for name in presets.available() if name.lower().startswith("rvc/")]
    lines = [f"wrote {written}", *_usage(rvc_presets)]
    if not found["on_path"]:
        lines.append(f"warning: {written.parent} is not on {shown}'s sys.path, so the .pth may never be read")
    if not found["yaml"]:
        lines.append(f"note: preset names need PyYAML: {shown} -m pip install pyyaml")
    lines.append(f"undo with: personalized uninstall rvc{f' --python {python}' if python else ''}")
    return lines


def _usage(rvc_presets: list[str]) -> list[str]:
    example = rvc_presets[0] if rvc_presets else "FCompass"
    return [
        "RVC's train.py now builds the optimizer you choose instead of AdamW (nothing changes until you do):",
        "  per experiment: train.optimizer and train.optimizer_args in logs/<experiment>/config.json,",
        f'    "train": {{"optimizer": "{example}", "optimizer_args": {{"weight_decay": 0.05}}, ...}}',
        "    (the web UI writes that file when you first press Train and never overwrites it)",
        "  for experiments that name none: these variables, set before you start the web UI,",
        f"    {OPTIMIZER_VAR}={example}",
        f'    {ARGS_VAR}={{"weight_decay": 0.05}}',
        "  a preset (a name with '/') brings its own lr and betas; an optimizer name (FCompass) takes",
        "  RVC's learning_rate, betas [0.8, 0.99] and eps 1e-9; optimizer_args override both;",
        "  'AdamW' switches an experiment back to torch's AdamW, also from a checkpoint of ours",
        f'  NaN guard: "nan_guard": "stop" in the same train section (or {NAN_GUARD_VAR}=stop) skips NaN steps,',
        "    applies the preset's fallbacks, then stops training instead of saving NaN checkpoints",
        f"suggested for RVC: {', '.join(rvc_presets) or 'see personalized presets'}"
        f" (personalized presets show {example})",
    ]


def uninstall(path: Path | None, python: str | None) -> list[str]:
    """Remove ``personalized-rvc.pth``; RVC then always uses its own AdamW."""
    removed = pth.remove_pth(PTH_NAME, python)
    if removed is None:
        return [f"nothing to remove: {pth.pth_path(PTH_NAME, python)} does not exist"]
    return [f"removed {removed}; RVC uses its own AdamW again"]

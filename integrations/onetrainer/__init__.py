"""OneTrainer integration: our optimizers in OneTrainer's optimizer dropdown, with their defaults.

OneTrainer has a fixed list of optimizers and silently trains with AdamW when a config names
one it does not know. This integration adds ours to that list.

Switch it on (once per OneTrainer install)::

    /path/to/OneTrainer/venv/bin/python -m pip install /path/to/personalized-optimizers
    personalized install onetrainer /path/to/OneTrainer --python /path/to/OneTrainer/venv/bin/python

(``/path/to/personalized-optimizers`` is a clone of the repository; on Windows the
interpreter is ``venv\\Scripts\\python.exe``). This checks the folder and
OneTrainer's optimizer code, then writes ``personalized-onetrainer.pth`` into that venv, so every
Python started from it, the UI, ``scripts/train.py`` and each multi-GPU worker alike, imports
the tiny torch-free :mod:`personalized_hooks.onetrainer`. That module does nothing until
OneTrainer's own modules are imported; then it checks they are OneTrainer's and runs
:mod:`.patch`:

* ``PERSONALIZED_FCOMPASS``, ``PERSONALIZED_FISHMONGER``, ... (``PERSONALIZED_`` + the name in
  capitals) join OneTrainer's ``Optimizer`` enum: the optimizer dropdown, config files and presets
  accept them;
* their defaults join ``OPTIMIZER_DEFAULT_PARAMETERS``, so the optimizer settings window shows
  them and "Load Defaults" restores them;
* ``create_optimizer`` builds them on OneTrainer's param groups and restores a saved state the
  way OneTrainer does for its own optimizers.

Switch it off with ``personalized uninstall onetrainer --python ...``, or for one run with the
environment variable ``PERSONALIZED_ONETRAINER=off``. If a OneTrainer update changes what the
patch relies on, OneTrainer stops at start-up with a message saying so, instead of training
with AdamW.

Settings. OneTrainer keeps optimizer settings in fixed fields (``beta1``, ``beta2``, ``eps``,
``weight_decay``, ...); a setting of ours travels in the field that
``personalized export PRESET --to onetrainer-json`` writes it to (``betas`` is spread over
``beta1``/``beta2``/``beta3``). An empty field means our default. The learning rate is
OneTrainer's (Training tab), never our class default. Settings OneTrainer has no field for keep
our defaults (``personalized show NAME`` lists them), unless the config JSON gives them in
``muon_adam_config`` under ``"personalized"``, e.g.
``"muon_adam_config": {"personalized": {"clip": 0.0}}`` (see :mod:`.fields`).

Fused Back Pass works with every optimizer but Prodigy (whose step size needs every gradient
at once); the patch adds the others to OneTrainer's list and gives them the switch in the optimizer
settings. OneTrainer's fused back pass hands every tensor the last param group; ours update each
tensor with its own group (:class:`.patch.OwningGroupStep`), so per-part learning rates hold.

Presets for OneTrainer's "Load Preset" menu: :func:`write_menu_preset` (:mod:`.menu`) merges one of
ours onto a OneTrainer preset or saved config (``personalized export PRESET --to onetrainer-json
--write ONETRAINER --onto BASE``).

What does not work:

* On resume from a backup OneTrainer keeps each group's saved settings except the learning rate
  (as for every optimizer): a changed beta or weight decay applies to a fresh run only.
* Boolean fields always have a value in OneTrainer; a hand-written config that names our
  optimizer without them gets OneTrainer's default for them (picking the optimizer in the UI
  fills in ours).
* prodigyopt's Prodigy takes one learning rate for all groups (OneTrainer's own PRODIGY too):
  leave the per-part learning rates empty with PERSONALIZED_PRODIGY.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from personalized.install_source import install_instruction

from .. import pth

#: The ``.pth`` file (``personalized-onetrainer.pth``) and the module it imports.
PTH_NAME = "onetrainer"
HOOK_MODULE = "personalized_hooks.onetrainer"
#: Files that make a folder OneTrainer (the same list as ``personalized_hooks.onetrainer.MARKERS``).
MARKERS = (
    "modules/util/enum/Optimizer.py",
    "modules/util/create.py",
    "modules/util/optimizer_util.py",
    "modules/util/config/TrainConfig.py",
)
#: Where OneTrainer's install scripts put its environment, relative to its folder.
ENVIRONMENTS = ("venv", "conda_env", ".venv")

__all__ = [
    "HOOK_MODULE",
    "MARKERS",
    "PTH_NAME",
    "check_onetrainer_folder",
    "install",
    "uninstall",
    "write_menu_preset",
]


def check_onetrainer_folder(path: Path) -> Path:
    """``path`` if it is a OneTrainer folder; ValueError saying what is missing otherwise."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder: give the OneTrainer folder (the one with scripts/ and modules/)")
    missing = [marker for marker in MARKERS if not (folder / marker).is_file()]
    if missing:
        raise ValueError(f"{folder} does not look like OneTrainer: {missing[0]} is missing")
    return folder


def install(path: Path | None, python: str | None) -> list[str]:
    """Write the ``.pth`` into the environment of ``python`` (this one by default); lines to print.

    With ``path`` (the OneTrainer folder), first check that it is OneTrainer and that its code has
    the shape the patch expects.
    """
    folder = check_onetrainer_folder(path) if path is not None else None
    lines = _check_code(folder) if folder is not None else []
    _check_importable(python)
    written = pth.write_pth(PTH_NAME, HOOK_MODULE, python)
    lines += [
        f"wrote {written}",
        "OneTrainer started from that environment now lists PERSONALIZED_FCOMPASS, PERSONALIZED_FISHMONGER, ... "
        "in its optimizer dropdown (restart it if it is running).",
    ]
    if folder is not None:
        lines += _venv_note(folder, written.parent)
    lines.append(f"switch it off with: personalized uninstall onetrainer{_python_option(python)}")
    return lines


def uninstall(path: Path | None, python: str | None) -> list[str]:
    """Remove the ``.pth`` from the environment of ``python``; ``path`` is not needed."""
    removed = pth.remove_pth(PTH_NAME, python)
    if removed is None:
        return [f"nothing to remove: no {pth.pth_path(PTH_NAME, python)}"]
    return [f"removed {removed}", "OneTrainer no longer lists our optimizers (restart it if it is running)."]


def write_menu_preset(onetrainer: Path, base: str, preset: Any) -> list[str]:
    """Merge ``preset`` onto a OneTrainer preset or saved config, as an entry of its "Load Preset" menu
    (:mod:`.menu`); lines to print."""
    from .menu import write_menu_preset

    return write_menu_preset(onetrainer, base, preset)


def _check_code(folder: Path) -> list[str]:
    """Check, without importing it, that this OneTrainer has the shape the patch expects."""
    from .patch import OneTrainerChanged, check_checkout

    try:
        check_checkout(folder)
    except OneTrainerChanged as error:
        raise ValueError(f"{folder}: {error.what}; this personalized-optimizers cannot patch it (update it)") from None
    except SyntaxError:
        return [f"note: this Python cannot read {folder}'s code to check it; OneTrainer will check it at start-up"]
    return [f"checked {folder}: OneTrainer's optimizer code has the shape the patch expects"]


def _check_importable(python: str | None) -> None:
    """Refuse to write a ``.pth`` that would do nothing: the package must be installed for ``python``
    (this interpreter by default: running from a clone does not install it)."""
    python = python or sys.executable
    command = [python, "-c", f"import {HOOK_MODULE}"]
    try:
        subprocess.run(command, capture_output=True, check=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ValueError(f"cannot run the trainer's Python {python!r}: {error}") from None
    except subprocess.CalledProcessError:
        raise ValueError(
            f"personalized-optimizers is not installed for {python}: {install_instruction(python)} first"
        ) from None


def _venv_note(folder: Path, site: Path) -> list[str]:
    """A hint when OneTrainer has its own environment and it is not the one written to."""
    for env in ENVIRONMENTS:
        candidates = [
            folder / env / "bin" / "python",
            folder / env / "Scripts" / "python.exe",
            folder / env / "python.exe",
        ]
        found = next((candidate for candidate in candidates if candidate.exists()), None)
        if found is not None and not site.resolve().is_relative_to((folder / env).resolve()):
            return [
                f"note: OneTrainer has its own environment {folder / env}; if it runs from there, use --python {found}"
            ]
    return []


def _python_option(python: str | None) -> str:
    return f" --python {python}" if python else ""

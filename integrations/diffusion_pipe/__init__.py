"""diffusion-pipe and the Chroma trainer: ``[optimizer] type = "PersonalizedFCompass"`` in the TOML config.

Both trainers (tdrussell/diffusion-pipe and geocine/diffusion-chroma) look a
``type`` they do not know themselves up as ``getattr(pytorch_optimizer, type)``
and pass every other key of ``[optimizer]`` as a keyword argument. To make our
optimizers reachable there, switch the integration on once, in the trainer's
Python environment::

    python -m pip install /path/to/personalized-optimizers pytorch-optimizer
    personalized install diffusion-pipe        # or: personalized install chroma (same hook)

(``/path/to/personalized-optimizers`` is a clone of the repository), then write
``type = "Personalized<ClassName>"`` in ``[optimizer]`` (for example
``PersonalizedFCompass``, ``PersonalizedSCORN``, ``PersonalizedProdigy``);
``personalized export chroma/scorn --to toml`` prints a ready table. Undo it
with ``personalized uninstall diffusion-pipe``.

How it works: ``install`` writes a ``.pth`` file importing the torch-free
:mod:`personalized_hooks.diffusion_pipe`, which waits for ``pytorch_optimizer``
to be imported and then gives that module a ``__getattr__`` for the
``Personalized*`` names. ``personalized`` itself is imported lazily, on the first
such lookup (:func:`resolve`). Scripts that do not want a ``.pth`` can call
:func:`inject` instead.

The trainers' own types (``scorn``, ``adafactor``, ``automagic``,
``adamw8bitkahan``, ... in any case) keep selecting the trainer's own classes,
and ``type = "Prodigy"`` stays pytorch_optimizer's Prodigy: ours are always
spelled with the ``Personalized`` prefix.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

from personalized import registry
from personalized.install_source import install_instruction

from .. import pth

#: The prefix of our names in the ``pytorch_optimizer`` namespace.
PREFIX = "Personalized"
#: The ``.pth`` file (``personalized-diffusion-pipe.pth``) serves diffusion-pipe and Chroma alike.
PTH_NAME = "diffusion-pipe"
#: The torch-free module the ``.pth`` imports.
HOOK_MODULE = "personalized_hooks.diffusion_pipe"
#: What ``personalized install`` prints as an example ``[optimizer]`` table.
EXAMPLE_TOML = """\
[optimizer]
type = "PersonalizedFCompass"
lr = 0.0001
betas = [0.99, 0.999]
weight_decay = 0.01"""

__all__ = ["EXAMPLE_TOML", "PREFIX", "inject", "install", "resolve", "type_name", "type_names", "uninstall"]


def type_name(optimizer: str) -> str:
    """The ``[optimizer] type`` that selects ``optimizer`` (any spelling the registry accepts)."""
    return PREFIX + registry.canonical_name(optimizer)


def type_names() -> list[str]:
    """Every ``Personalized*`` type, in catalogue order."""
    return [PREFIX + name for name in registry.available()]


def resolve(name: str) -> type:
    """The optimizer class behind ``pytorch_optimizer.<name>``, e.g. ``PersonalizedFCompass``.

    The part after the prefix may be any spelling :func:`personalized.get_optimizer`
    accepts. Raises AttributeError (with close matches) for a name that is not
    ours, and ImportError naming the extra to install for an optimizer whose
    optional package is missing.
    """
    bare = name[len(PREFIX) :] if name[: len(PREFIX)].lower() == PREFIX.lower() else ""
    try:
        canonical = registry.canonical_name(bare)
    except ValueError:
        raise AttributeError(_unknown(name)) from None
    try:
        return registry.get_optimizer(canonical)
    except ImportError as error:
        raise ImportError(f"pytorch_optimizer.{name}: {error}") from error


def _unknown(name: str) -> str:
    names = type_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"module 'pytorch_optimizer' has no attribute {name!r}.{hint} personalized provides: {', '.join(names)}."


def inject() -> ModuleType:
    """Make the ``Personalized*`` names resolvable in this process now, without a ``.pth``.

    Call it before the trainer looks the optimizer up, e.g. at the top of a
    launcher script. Returns the ``pytorch_optimizer`` module.
    """
    try:
        import pytorch_optimizer
    except ImportError as error:
        raise ImportError(
            "diffusion-pipe and Chroma look optimizers up in pytorch_optimizer: pip install pytorch-optimizer"
        ) from error
    from personalized_hooks.diffusion_pipe import add_lazy_names

    add_lazy_names(pytorch_optimizer)
    return pytorch_optimizer


# -- personalized install / uninstall -------------------------------------------------------------

_PROBE = """\
import importlib.util, json, sys
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False
print(json.dumps({name: found(name) for name in sys.argv[1:]}))
"""


def _importable(python: str | None, modules: list[str]) -> dict[str, bool]:
    """Which of ``modules`` the interpreter ``python`` (this one by default) can import."""
    executable = python or sys.executable
    try:
        result = subprocess.run([executable, "-c", _PROBE, *modules], capture_output=True, text=True, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError) as error:
        raise ValueError(f"cannot run the trainer's Python {executable!r}: {error}") from None


def _check_trainer_folder(path: Path) -> list[str]:
    """Notes about the trainer checkout at ``path`` (optional: the hook does not need it)."""
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder")
    script = path / "train.py"
    if not script.is_file():
        raise ValueError(
            f"{path} has no train.py: give the diffusion-pipe or diffusion-chroma folder, or leave the path out"
        )
    trainer = "the Chroma trainer" if (path / "optimizers" / "scorn.py").is_file() else "diffusion-pipe"
    notes = [f"found {trainer} in {path}"]
    if "pytorch_optimizer" not in script.read_text(encoding="utf-8", errors="replace"):
        notes.append(
            "warning: this train.py does not look optimizer types up in pytorch_optimizer; "
            "the Personalized* types need a version that does"
        )
    return notes


def _catalogue() -> list[str]:
    """Every type, wrapped and indented; optional ones name their extra."""
    entries = [
        PREFIX + name + (f" (needs the {registry.OPTIONAL[name].extra} extra)" if name in registry.OPTIONAL else "")
        for name in registry.available()
    ]
    return textwrap.wrap(", ".join(entries), 96, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)


def install(path: Path | None, python: str | None) -> list[str]:
    """Write the ``.pth`` that enables ``type = "Personalized<Name>"``; return lines to print.

    ``path`` (the trainer's folder) is optional and only checked; ``python`` is
    the trainer's interpreter (default: this one). Raises ValueError when that
    environment cannot import this package.
    """
    notes = _check_trainer_folder(path) if path is not None else []
    found = _importable(python, [HOOK_MODULE, "pytorch_optimizer"])
    executable = python or sys.executable
    if not found[HOOK_MODULE]:
        raise ValueError(f"{executable} cannot import {HOOK_MODULE}: {install_instruction(executable)} first")
    written = pth.write_pth(PTH_NAME, HOOK_MODULE, python)
    lines = [
        *notes,
        f"wrote {written}",
        'diffusion-pipe and the Chroma trainer now accept these [optimizer] type = "..." values:',
        *_catalogue(),
        "They are found through the pytorch_optimizer package (both trainers import it for unknown types), "
        "so pytorch-optimizer must be installed in that environment (it is in both trainers' requirements.txt).",
    ]
    if not found["pytorch_optimizer"]:
        lines.append(f"warning: pytorch_optimizer is missing there: `{executable} -m pip install pytorch-optimizer`")
    lines += [
        "The trainers' own types (adamw, automagic, adamw8bitkahan; in Chroma also scorn, adafactor, remaster, "
        "persona; any case) still select the trainer's classes, and \"Prodigy\" is pytorch_optimizer's: "
        "ours are always spelled Personalized<Name>.",
        "Give an lr: both trainers run an LR scheduler on it (Adafactor: lr with relative_step = false).",
        "Example for your training TOML (`personalized export chroma/scorn --to toml` prints a preset):",
        "",
        EXAMPLE_TOML,
        "",
        "Undo with: personalized uninstall diffusion-pipe",
    ]
    return lines


def uninstall(path: Path | None, python: str | None) -> list[str]:
    """Remove the ``.pth`` again; ``path`` is not needed. Return lines to print."""
    removed = pth.remove_pth(PTH_NAME, python)
    if removed is None:
        return [f"nothing to remove: {pth.pth_path(PTH_NAME, python)} does not exist"]
    return [f"removed {removed}", "diffusion-pipe and Chroma no longer see the Personalized* optimizer types there."]

"""kohya sd-scripts, musubi-tuner, the kohya_ss GUI and ComfyUI-FluxTrainer.

They all resolve ``--optimizer_type personalized.FCompass`` themselves: kohya
imports the module named before the last dot and takes the class with
``getattr`` (case-sensitive), then calls ``Class(params, lr=..., **optimizer_args)``
with each ``--optimizer_args`` item parsed as ``key=<Python literal>``. So there
is nothing to patch; either

* ``python -m pip install /path/to/personalized-optimizers`` (a clone of the
  repository; see its README) with the trainer's venv active, or
* ``personalized install kohya /path/to/sd-scripts`` (or the kohya_ss folder,
  whose launcher puts it on ``PYTHONPATH``), which copies the ``personalized``
  package folder there, next to ``train_network.py``, with the shipped presets
  inside it (``personalized/_presets``). It works from a clone too
  (``python -m personalized install kohya ...`` with ``plugin/`` on the path).

``personalized export PRESET --to kohya-args`` prints the arguments,
``--to kohya_ss-json --write /path/to/kohya_ss`` saves a GUI preset, and
``--to fluxtrainer`` prints FluxTrainer's ``|``-separated form.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import personalized
from personalized import presets
from personalized.install_source import pip_install

#: What marks a folder as a kohya trainer root (any one of them).
MARKERS = ("train_network.py", "sdxl_train_network.py", "kohya_gui", "src/musubi_tuner")
PACKAGE = Path(personalized.__file__).resolve().parent


def _check_root(path: Path) -> None:
    if not any((path / marker).exists() for marker in MARKERS):
        raise ValueError(
            f"{path} does not look like sd-scripts, musubi-tuner or kohya_ss (none of {', '.join(MARKERS)} there)"
        )


def install(path: Path | None, python: str | None) -> list[str]:
    """Copy the package folder into the trainer's root (with a path), and print how to use it."""
    lines = []
    if path is not None:
        _check_root(path)
        target = path / "personalized"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
        lines.append(f"copied the personalized package to {target}")
        shipped = presets.shipped_folder()
        if shipped is None:
            lines.append(f"note: no presets copied: {presets.missing_presets_hint()}")
        elif not (target / "_presets").is_dir():
            shutil.copytree(shipped, target / "_presets")
            lines.append(f"copied the presets to {target / '_presets'}")
    else:
        lines.append(
            "with the package pip-installed in the trainer's venv, nothing else is needed "
            f"(with that venv active: {pip_install()})"
        )
    lines += [
        "use it with:",
        '  --optimizer_type personalized.FCompass --optimizer_args "betas=(0.9,0.99)" weight_decay=0.1',
        "or print a preset's arguments: personalized export rvc/FCompass --to kohya-args",
        "--fused_backward_pass accepts only Adafactor; --fused_optimizer_groups N (SDXL) or",
        "--blockwise_fused_optimizers (FLUX, SD3) work with every personalized optimizer",
    ]
    return lines


def uninstall(path: Path | None, python: str | None) -> list[str]:
    """Remove a copy made by :func:`install` (a pip installation is removed with pip)."""
    if path is None:
        return ["nothing to undo without a path; pip uninstall personalized-optimizers removes a pip install"]
    target = path / "personalized"
    if not (target / "registry.py").is_file():
        raise ValueError(f"{target} is not a copy of the personalized package")
    shutil.rmtree(target)
    return [f"removed {target}"]

"""Write and remove the ``.pth`` files that activate an integration in a trainer's Python environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

PREFIX = "personalized-"


def site_packages(python: str | None = None) -> Path:
    """The ``purelib`` folder of the interpreter ``python`` (this one by default)."""
    if python is None:
        import sysconfig

        return Path(sysconfig.get_paths()["purelib"])
    try:
        result = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        raise ValueError(f"cannot run the trainer's Python {python!r}: {error}") from None
    return Path(result.stdout.strip())


def pth_path(name: str, python: str | None = None) -> Path:
    return site_packages(python) / f"{PREFIX}{name}.pth"


def write_pth(name: str, module: str, python: str | None = None) -> Path:
    """Make every interpreter of that environment import ``module`` at start-up.

    The module must be importable there: install the package (README, Install)
    into the trainer's environment first.
    """
    path = pth_path(name, python)
    path.write_text(pth_line(module), encoding="utf-8")
    return path


def pth_line(module: str) -> str:
    """The ``.pth`` line: imports ``module`` only while its package is installed, so a ``.pth``
    left behind by ``pip uninstall`` stays silent instead of failing at every Python start."""
    top = module.split(".")[0]
    return f"import importlib.util as _u; _u.find_spec({top!r}) and __import__({module!r})\n"


def remove_pth(name: str, python: str | None = None) -> Path | None:
    path = pth_path(name, python)
    if path.exists():
        path.unlink()
        return path
    return None

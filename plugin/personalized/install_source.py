"""Where this copy of the package comes from, so that install instructions name a command that works.

No release of personalized-optimizers is on the package index: it is installed from a clone of
the repository (``pip install /path/to/clone``), from ``git+https://`` or from a wheel built
from a clone (README.md, "Install"). Messages that tell someone to install it use
:func:`pip_install`, which names this clone when the package runs from one.
"""

from __future__ import annotations

from pathlib import Path

#: What install instructions name when this copy is not a clone (an installed wheel, a bare copy).
PLACEHOLDER = "/path/to/personalized-optimizers"


def checkout() -> Path | None:
    """The root of the clone this package runs from (directly or installed editable), else None."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "integrations" / "__init__.py").is_file():
        return root
    return None


def pip_install(python: str | None = None, extras: str = "") -> str:
    """The command that installs this package into the environment of ``python`` (``python`` if None).

    It names this clone when there is one, else :data:`PLACEHOLDER`. ``extras`` is e.g.
    ``"presets"``. Double quotes work in cmd.exe and POSIX shells alike.
    """
    target = f"{checkout() or PLACEHOLDER}{f'[{extras}]' if extras else ''}"
    return f"{_quoted(python or 'python')} -m pip install {_quoted(target)}"


def install_instruction(python: str | None = None, extras: str = "") -> str:
    """``run `<pip_install(...)>` `` for a message, saying what the placeholder stands for if it is one."""
    text = f"run `{pip_install(python, extras)}`"
    if checkout() is None:
        text += f" ({PLACEHOLDER}: a clone of the repository; see its README, Install)"
    return text


def _quoted(text: str) -> str:
    return f'"{text}"' if any(ch in text for ch in " []") else text

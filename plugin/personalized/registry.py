"""Look optimizers up by name: case-insensitive, with aliases, and with close
matches suggested when a name is unknown.

Optimizers that need an optional package (bitsandbytes, prodigyopt) are
listed here but imported only when asked for, so ``import personalized``
needs nothing but torch. Their modules import the package only if it is
installed: :func:`settings_class` reads their settings without it.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass

from .optimizers import CATALOGUE


@dataclass(frozen=True)
class OptionalOptimizer:
    """An optimizer whose module imports an optional package."""

    module: str
    package: str
    extra: str
    summary: str

    def load(self, name: str) -> type:
        """The class, ready to build; ImportError naming the extra when the package is missing."""
        try:
            importlib.import_module(self.package)
        except ImportError as error:
            if error.name is None or error.name.split(".")[0] != self.package:
                raise
            raise ImportError(
                f"{name} needs the optional package {self.package!r}: "
                f"pip install 'personalized-optimizers[{self.extra}]' (or pip install {self.package})"
            ) from error
        return self.settings(name)

    def settings(self, name: str) -> type:
        """The class for reading its keywords, defaults and rules, also without the optional package.

        Its module imports the package only if it is there, so presets and exporters can check
        and print settings; building an optimizer goes through :meth:`load`.
        """
        return getattr(importlib.import_module(f"{__package__}.{self.module}"), name)


#: Optimizers that need only torch, in catalogue order.
OPTIMIZERS: dict[str, type] = {cls.__name__: cls for cls in CATALOGUE}

#: Optimizers imported on first use.
OPTIONAL: dict[str, OptionalOptimizer] = {
    "AdamW8bitKahan": OptionalOptimizer(
        "optimizers.adamw8bit_kahan",
        "bitsandbytes",
        "bnb",
        "AdamW8bitKahan: AdamW with bitsandbytes 8-bit blockwise state and Kahan-compensated low-precision updates.",
    ),
    "Prodigy": OptionalOptimizer(
        "optimizers.prodigy",
        "prodigyopt",
        "prodigy",
        "Prodigy: prodigyopt's learning-rate-free Adam, validated, with d and d*lr in every param group.",
    ),
}

#: Other spellings people use, keyed by their normalised form. The Chroma
#: trainer's ``[optimizer] type`` names (adafactor, persona, ...) are here too.
ALIASES: dict[str, str] = {
    "adafactor": "EnhancedAdafactor",
    "persona": "PersonaOptimizer",
    "fishercompass": "FCompass",
    "exmachina": "FMARSCrop_ExMachina",
    "farmscropv1": "FARMSCrop",
    "farmscropv21": "FARMSCropV2",
}


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def available() -> list[str]:
    """The canonical names of every optimizer, in catalogue order."""
    return [*OPTIMIZERS, *OPTIONAL]


def canonical_name(name: str) -> str:
    """The canonical spelling of ``name`` (any case; ``-``, ``_``, ``.`` and spaces ignored).

    A ``personalized.`` prefix is accepted, so trainer-style names work too.
    Raises ValueError listing close matches for an unknown name.
    """
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a string, not {type(name).__name__}")
    bare = name.strip()
    if bare.lower().startswith("personalized."):
        bare = bare[len("personalized.") :]
    table = {_normalise(canonical): canonical for canonical in available()}
    table.update(ALIASES)
    key = _normalise(bare)
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, table, n=3, cutoff=0.6)
    suggestions = sorted({table[match] for match in close})
    hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
    raise ValueError(f"Unknown optimizer {name!r}.{hint} Available: {', '.join(available())}.")


def get_optimizer(name: str) -> type:
    """The optimizer class called ``name``; see :func:`canonical_name` for the spellings accepted.

    Optimizers that need an optional package raise ImportError naming the
    extra to install when it is missing.
    """
    canonical = canonical_name(name)
    if canonical in OPTIONAL:
        return OPTIONAL[canonical].load(canonical)
    return OPTIMIZERS[canonical]


def settings_class(name: str) -> type:
    """The class ``name`` names, for reading its keywords, defaults and rules only.

    Unlike :func:`get_optimizer` it does not need the optional package (bitsandbytes,
    prodigyopt) of AdamW8bitKahan and Prodigy: presets are validated and exported
    without it. Build optimizers with :func:`get_optimizer`.
    """
    canonical = canonical_name(name)
    if canonical in OPTIONAL:
        return OPTIONAL[canonical].settings(canonical)
    return OPTIMIZERS[canonical]


def summary(name: str) -> str:
    """A one-line description, without importing optional packages."""
    if name in OPTIONAL:
        return OPTIONAL[name].summary
    return next(iter((OPTIMIZERS[name].__doc__ or "").strip().splitlines()), "")

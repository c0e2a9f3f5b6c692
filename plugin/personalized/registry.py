"""Look optimizers up by name: case-insensitive, with aliases, and with close
matches suggested when a name is unknown."""

from __future__ import annotations

import difflib

from .base import PersonalizedOptimizer
from .optimizers import FARMSCrop, FARMSCropV2, FCompass, FishMonger, FMARSCrop, FMARSCrop_ExMachina

OPTIMIZERS: dict[str, type[PersonalizedOptimizer]] = {
    cls.__name__: cls for cls in (FCompass, FishMonger, FARMSCrop, FARMSCropV2, FMARSCrop, FMARSCrop_ExMachina)
}

#: Other spellings people use, keyed by their normalised form.
ALIASES: dict[str, str] = {
    "fishercompass": "FCompass",
    "exmachina": "FMARSCrop_ExMachina",
    "fmarscropexmachina": "FMARSCrop_ExMachina",
    "farmscropv1": "FARMSCrop",
    "farmscropv21": "FARMSCropV2",
}


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _lookup_table() -> dict[str, str]:
    table = {_normalise(canonical): canonical for canonical in OPTIMIZERS}
    table.update(ALIASES)
    return table


def available() -> list[str]:
    """The canonical names of every optimizer, in catalogue order."""
    return list(OPTIMIZERS)


def get_optimizer(name: str) -> type[PersonalizedOptimizer]:
    """The optimizer class called ``name`` (any case; ``-``, ``_``, ``.`` and spaces ignored).

    A ``personalized.`` prefix is accepted, so trainer-style names work too.
    Raises ValueError listing close matches for an unknown name.
    """
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a string, not {type(name).__name__}")
    bare = name.strip()
    if bare.lower().startswith("personalized."):
        bare = bare[len("personalized.") :]
    table = _lookup_table()
    key = _normalise(bare)
    if key in table:
        return OPTIMIZERS[table[key]]
    close = difflib.get_close_matches(key, table, n=3, cutoff=0.6)
    suggestions = sorted({table[match] for match in close})
    hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
    raise ValueError(f"Unknown optimizer {name!r}.{hint} Available: {', '.join(available())}.")

"""Start-up hook for diffusion-pipe and the Chroma trainer (geocine/diffusion-chroma).

Both trainers build the optimizer from the ``[optimizer]`` table of their TOML
config; a ``type`` they do not know themselves is looked up with
``getattr(pytorch_optimizer, type)``. This hook gives the ``pytorch_optimizer``
module one more way to answer: every name starting with ``Personalized``
(``PersonalizedFCompass``, ``PersonalizedSCORN``, ...) resolves to our class.

Switch it on once per environment with ``personalized install diffusion-pipe``
(or ``personalized install chroma``, the same hook); that writes a ``.pth``
file importing this module at every interpreter start. So this module is tiny
and torch-free: it only waits for ``pytorch_optimizer`` to be imported, then
adds a module ``__getattr__`` to it. ``personalized`` (and with it our
optimizers) is imported only when a ``Personalized*`` name is first asked for,
so programs that never ask are not touched, and a broken ``personalized``
cannot break ``import pytorch_optimizer``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import when_imported

#: The module the trainers look unknown optimizer types up in.
TARGET = "pytorch_optimizer"
#: Names with this prefix (any case) are ours; every other name is left to the module.
PREFIX = "Personalized"

_MARK = "_personalized_lookup"


def is_ours(name: str) -> bool:
    """Whether ``name`` is one of our names (``Personalized...``, the prefix in any case)."""
    return len(name) > len(PREFIX) and name[: len(PREFIX)].lower() == PREFIX.lower()


def add_lazy_names(module: ModuleType) -> None:
    """Make ``module.Personalized<Name>`` resolve to our optimizer classes on first access.

    Idempotent. A ``__getattr__`` the module already had keeps answering every
    other name. A resolved class is stored on the module, so later lookups are
    plain attribute reads.
    """
    previous = module.__dict__.get("__getattr__")
    if getattr(previous, _MARK, False):
        return

    def __getattr__(name: str) -> Any:
        if is_ours(name):
            from personalized.integrations.diffusion_pipe import resolve

            value = resolve(name)
            setattr(module, name, value)
            return value
        if previous is not None:
            return previous(name)
        raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

    setattr(__getattr__, _MARK, True)
    module.__getattr__ = __getattr__  # type: ignore[attr-defined]


when_imported(TARGET, add_lazy_names)

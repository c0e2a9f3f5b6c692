"""personalized: niche PyTorch optimizers for hobbyist LoRA and small-model training.

Every optimizer keeps its original class name and constructor keywords, so
``personalized.FCompass`` is a drop-in replacement for the original
``FCompass``. Look optimizers up by name with :func:`get_optimizer`.
"""

from . import presets
from .base import PersonalizedOptimizer
from .factory import create_optimizer
from .gradient_release import GradientRelease
from .nan_guard import NaNGuard
from .optimizers import *  # noqa: F403 - every optimizer class, at the top level
from .optimizers import __all__ as _optimizer_names
from .registry import OPTIONAL, available, get_optimizer

__version__ = "0.1.0"

__all__ = [
    *_optimizer_names,
    "GradientRelease",
    "NaNGuard",
    "PersonalizedOptimizer",
    "available",
    "create_optimizer",
    "get_optimizer",
    "presets",
]


def __getattr__(name: str) -> type:
    """Optimizers that need an optional package load on first access (``personalized.Prodigy``)."""
    if name in OPTIONAL:
        return OPTIONAL[name].load(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

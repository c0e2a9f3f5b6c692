"""Optional packages the bench needs, imported only when a run needs them.

``import personalized`` never imports scikit-learn or matplotlib; the bench
asks for them here and names the extra to install when one is missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The pip extra that brings every package the bench needs.
EXTRA = "bench"


class MissingDependency(ImportError):
    """An optional package the bench needs is not installed."""


def require(module: str, package: str) -> ModuleType:
    """Import ``module`` (from the pip package ``package``) or raise MissingDependency naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependency(
            f"the bench needs {package}: pip install 'personalized-optimizers[{EXTRA}]' (or pip install {package})"
        ) from error

"""Find the ``personalized`` package: pip-installed, or shipped beside this node pack.

Looked for, in order:

1. installed into ComfyUI's Python (``pip install /path/to/personalized-optimizers``, a clone);
2. ``<this pack>/lib/personalized``: a copy shipped inside the pack;
3. ``<this pack>/../plugin/personalized``: the whole repository was cloned into
   ``custom_nodes`` and this pack is its ``nodes/`` folder;
4. ``<this pack>/../personalized``: a copy put next to the pack in ``custom_nodes``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

PACK = Path(__file__).resolve().parent
FOLDERS = (PACK / "lib", PACK.parent / "plugin", PACK.parent)

MISSING = (
    "The ComfyUI node pack 'personalized-optimizers' needs the Python package 'personalized'. "
    "Clone the whole repository into ComfyUI/custom_nodes (the pack finds its plugin/personalized "
    "by itself), or install the package from a clone into the Python that runs ComfyUI:\n"
    "  Windows portable:  python_embeded\\python.exe -m pip install C:\\path\\to\\personalized-optimizers\n"
    "  other installs:    <ComfyUI's python> -m pip install /path/to/personalized-optimizers\n"
    "or copy the repository's plugin/personalized and presets folders into {lib}; then restart ComfyUI."
)


def find_package(name: str, folders: tuple[Path, ...]) -> ModuleType:
    """Import ``name``; if it is not installed, from the first of ``folders`` that holds it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
    for folder in folders:
        if (folder / name / "__init__.py").is_file():
            if str(folder) not in sys.path:
                sys.path.append(str(folder))
            return importlib.import_module(name)
    raise ImportError(MISSING.format(lib=folders[0]), name=name)


personalized = find_package("personalized", FOLDERS)
for submodule in ("exporters", "factory", "training"):  # used as personalized.<submodule> by the nodes
    importlib.import_module(f"personalized.{submodule}")

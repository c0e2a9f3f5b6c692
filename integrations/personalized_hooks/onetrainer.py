"""OneTrainer start-up hook, imported by ``personalized-onetrainer.pth`` in OneTrainer's venv.

``personalized install onetrainer`` writes that ``.pth``; every Python of the venv then imports
this module at start-up. It imports nothing heavy (no torch, not ``personalized``) and only
registers three callbacks, for OneTrainer's optimizer enum, its defaults table and its
``create_optimizer``. Each callback first checks that the module just imported belongs to a
OneTrainer checkout (``modules`` is a common name), then hands over to
``personalized.integrations.onetrainer.patch``. Set ``PERSONALIZED_ONETRAINER=off`` to start
OneTrainer without the patch.
"""

from __future__ import annotations

import os
from types import ModuleType

from . import when_imported

#: OneTrainer module -> the patch step that runs right after it is imported.
STEPS = {
    "modules.util.enum.Optimizer": "patch_enum",
    "modules.util.optimizer_util": "patch_defaults",
    "modules.util.create": "patch_create",
}
#: Files of a OneTrainer checkout, relative to its folder.
MARKERS = (
    "modules/util/enum/Optimizer.py",
    "modules/util/create.py",
    "modules/util/optimizer_util.py",
    "modules/util/config/TrainConfig.py",
)
#: Values of PERSONALIZED_ONETRAINER that switch the integration off.
OFF = frozenset({"0", "off", "false", "no"})


def onetrainer_folder(module: ModuleType) -> str | None:
    """The OneTrainer folder ``module`` was loaded from, or None if it is not OneTrainer's."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    folder = os.path.dirname(os.path.abspath(file))
    for _ in range(module.__name__.count(".")):
        folder = os.path.dirname(folder)
    if all(os.path.isfile(os.path.join(folder, *marker.split("/"))) for marker in MARKERS):
        return folder
    return None


def switched_off() -> bool:
    return os.environ.get("PERSONALIZED_ONETRAINER", "").strip().lower() in OFF


def _run_step(module: ModuleType) -> None:
    if onetrainer_folder(module) is None:
        return
    from personalized.integrations.onetrainer import patch

    getattr(patch, STEPS[module.__name__])(module)


def register() -> None:
    """Run the patch steps when OneTrainer's modules are imported (unless switched off)."""
    if switched_off():
        return
    for module_name in STEPS:
        when_imported(module_name, _run_step)


register()

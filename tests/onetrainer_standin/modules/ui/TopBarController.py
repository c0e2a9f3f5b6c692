"""Stand-in for the preset parts of OneTrainer's ``modules/ui/TopBarController.py`` and
``modules/ui/BaseTopBarView.py`` (commit 23df383): the "Load Preset" menu and loading an entry.

* ``load_preset_tree`` lists the folder (``training_presets``) the way the menu shows it: the
  entries sorted by lower-cased name; a sub-folder with presets in it becomes a group
  ``(name, children)``; a file becomes ``(name without .json, path)`` when its name starts with
  ``#`` and ends with ``.json``, ``#.json`` (the last session's settings) excepted.
* ``load_config_from_file`` reads the JSON into ``TrainConfig.default_values()`` (so every key
  the file lacks takes OneTrainer's default, whatever was set before), without running the
  migrations for ``#`` files ("built-in configs are always saved in the most recent version"),
  then copies the result over the current config.
* ``load_preset`` is what picking a menu entry does (``BaseTopBarView.__load_current_config``):
  load the file, then rebuild the optimizer settings with ``change_optimizer``.
"""

import json
import os

from modules.util.config.TrainConfig import TrainConfig
from modules.util.optimizer_util import change_optimizer


class TopBarController:
    def __init__(self, config: TrainConfig) -> None:
        self.train_config = config

    def load_preset_tree(self, dir: str = "training_presets") -> list[tuple[str, str | list]]:
        nodes: list[tuple[str, str | list]] = []
        if os.path.isdir(dir):
            for entry in sorted(os.scandir(dir), key=lambda e: e.name.lower()):
                if entry.is_dir():
                    children = self.load_preset_tree(entry.path)
                    if children:
                        nodes.append((entry.name, children))
                elif entry.name.startswith("#") and entry.name != "#.json" and entry.name.endswith(".json"):
                    nodes.append((os.path.splitext(entry.name)[0], os.path.join(dir, entry.name).replace("\\", "/")))
        return nodes

    def load_config_from_file(self, filename: str) -> TrainConfig:
        basename = os.path.basename(filename)
        is_built_in_preset = basename.startswith("#") and basename != "#.json"
        with open(filename) as f:
            loaded_dict = json.load(f)
        loaded_config = TrainConfig.default_values().from_dict(loaded_dict, migrate=not is_built_in_preset)
        self.train_config.from_dict(loaded_config.to_dict())
        return loaded_config

    def load_preset(self, filename: str) -> None:
        self.load_config_from_file(filename)
        self.train_config.optimizer = change_optimizer(self.train_config)

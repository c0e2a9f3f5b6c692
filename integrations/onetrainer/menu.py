"""Our presets in OneTrainer's "Load Preset" menu.

OneTrainer's menu lists the ``#*.json`` files under ``training_presets/`` (its sub-folders become
sub-menus; ``#.json``, the last session, excepted). Picking one loads it into a fresh
``TrainConfig``: whatever the file leaves out takes OneTrainer's default, not the value on screen.
So ``personalized export PRESET --to onetrainer-json`` (only the optimizer and the learning rate)
cannot be a menu entry: it would reset the model type, the training method and the base model.

:func:`write_menu_preset` merges an optimizer preset onto a preset or saved config the user names
(the *base*) and writes the result to ``training_presets/personalized/#<base> with <preset>.json``,
a menu entry under "personalized" after a restart (OneTrainer reads the folder at start-up).
Everything of the base is kept except:

* ``optimizer``, and our entry in ``optimizer_defaults`` (what the optimizer settings window shows),
  from the exporter (:func:`personalized.exporters.onetrainer_json`);
* ``learning_rate``, the preset's (when it has one): the base's was tuned for another optimizer;
* "Fused Back Pass": the base's setting carries over (OneTrainer's low-VRAM presets need it), except
  for Prodigy, which cannot do it (a note says so).

OneTrainer does not migrate ``#`` files (it takes them as its own, always current), so a saved
config from an older OneTrainer is refused with the way out: load it, save it again, then merge.
Checked against OneTrainer commit 23df383 (``TopBarController.load_preset_tree``,
``load_config_from_file``).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from personalized import exporters
from personalized.presets import Preset

from . import check_onetrainer_folder
from .patch import FUSED_BACK_PASS, per_parameter

#: OneTrainer's preset folder, and our sub-folder (the sub-menu) inside it.
PRESET_FOLDER = "training_presets"
OUR_FOLDER = "personalized"
#: Where OneTrainer's config class, and with it its current config version, is defined.
TRAIN_CONFIG = "modules/util/config/TrainConfig.py"

__all__ = ["OUR_FOLDER", "PRESET_FOLDER", "find_base", "menu_presets", "merge", "write_menu_preset"]


def menu_presets(onetrainer: Path) -> list[Path]:
    """Every file OneTrainer's "Load Preset" menu lists, sorted by path."""
    folder = Path(onetrainer) / PRESET_FOLDER
    return sorted(path for path in folder.rglob("#*.json") if path.name != "#.json" and path.is_file())


def find_base(onetrainer: Path, base: str) -> Path:
    """The file ``base`` names: a path (as given, or inside the OneTrainer folder), or a menu entry's name.

    A menu entry matches by its name as the menu shows it (``#sdxl 1.0 LoRA``), with or without
    the ``#``, in any case. ValueError when nothing or several entries match.
    """
    for candidate in (Path(base).expanduser(), Path(onetrainer) / base):
        if candidate.is_file():
            return candidate
    wanted = base.removeprefix("#").casefold()
    presets = menu_presets(onetrainer)
    found = [path for path in presets if path.stem.removeprefix("#").casefold() == wanted]
    if len(found) == 1:
        return found[0]
    if found:
        where = ", ".join(str(path.relative_to(onetrainer)) for path in found)
        raise ValueError(f"several OneTrainer presets are named {base!r} ({where}): give the path of one")
    examples = ", ".join(repr(path.stem) for path in presets[:3])
    raise ValueError(
        f"{base!r} is neither a file nor a preset in {Path(onetrainer) / PRESET_FOLDER}: give the path of a "
        f"saved config (.json) or a name from OneTrainer's Load Preset menu{f', e.g. {examples}' if examples else ''}"
    )


def config_version(onetrainer: Path) -> int:
    """The config version this OneTrainer writes (``config_version=`` in its TrainConfig), read without importing it.

    Falls back to the version the exporter writes when the source no longer says.
    """
    try:
        tree = ast.parse((Path(onetrainer) / TRAIN_CONFIG).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return exporters.ONETRAINER_CONFIG_VERSION
    train_config = next(
        (node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "TrainConfig"), tree
    )
    versions = [
        node.value.value
        for node in ast.walk(train_config)
        if isinstance(node, ast.keyword) and node.arg == "config_version" and isinstance(node.value, ast.Constant)
    ]
    return versions[0] if versions and isinstance(versions[0], int) else exporters.ONETRAINER_CONFIG_VERSION


def merge(base: dict[str, Any], preset: Preset) -> tuple[dict[str, Any], list[str]]:
    """``base`` (a OneTrainer preset or saved config) with ``preset``'s optimizer; the merged config and notes."""
    fragment = json.loads(exporters.onetrainer_json(preset))
    settings = dict(fragment["optimizer"])
    member = settings["optimizer"]
    notes = []
    if _fused_back_pass(base):
        if per_parameter(preset.optimizer):
            settings[FUSED_BACK_PASS] = True
        else:
            notes.append(
                f"note: the base uses Fused Back Pass (less VRAM), which {preset.optimizer} cannot do: expect more "
                "VRAM use, and layer offloading of a fine-tune to stop at start"
            )
    merged = dict(base)
    merged["optimizer"] = settings
    merged["optimizer_defaults"] = {**base.get("optimizer_defaults", {}), member: settings}
    if "learning_rate" in fragment:
        merged["learning_rate"] = fragment["learning_rate"]
    for part, values in base.items():
        if isinstance(values, dict) and values.get("learning_rate") is not None:
            notes.append(
                f"note: the base sets its own learning rate for {part} ({values['learning_rate']}), which OneTrainer "
                "uses there instead of the preset's"
            )
    return merged, notes


def _fused_back_pass(config: dict[str, Any]) -> bool:
    """Whether ``config`` trains with Fused Back Pass: the optimizer's entry in ``optimizer_defaults``
    (what OneTrainer applies when the preset is picked), else its ``optimizer`` section."""
    optimizer = config.get("optimizer")
    optimizer = optimizer if isinstance(optimizer, dict) else {}
    entry = config.get("optimizer_defaults", {}).get(optimizer.get("optimizer", "ADAMW"), {})
    return bool(entry.get(FUSED_BACK_PASS, optimizer.get(FUSED_BACK_PASS, False)))


def write_menu_preset(onetrainer: Path, base: str, preset: Preset) -> list[str]:
    """Merge ``preset`` onto the OneTrainer preset or saved config ``base`` and write it as a menu entry.

    Returns the lines to print. ValueError for a folder that is not OneTrainer, a base that cannot
    be found, read, or that an older OneTrainer saved.
    """
    folder = check_onetrainer_folder(onetrainer)
    source = find_base(folder, base)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {source} as a OneTrainer config: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source} is not a OneTrainer config (a JSON object)")
    current = config_version(folder)
    saved = data.get("__version", current)
    if isinstance(saved, int) and saved < current:
        raise ValueError(
            f"{source} was saved by an older OneTrainer (config version {saved}; this one writes {current}), and "
            "OneTrainer does not update presets from its menu: load it with Load config, save it again with Save "
            "config, then merge that file"
        )
    merged, notes = merge(data, preset)
    target = (
        folder
        / PRESET_FOLDER
        / OUR_FOLDER
        / f"#{source.stem.removeprefix('#')} with {preset.name.replace('/', '-')}.json"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(merged, indent=4) + "\n", encoding="utf-8")
    return [
        *notes,
        f"wrote {target}",
        f"restart OneTrainer, then pick Load Preset > {OUR_FOLDER} > {target.stem} (needs the integration: "
        "personalized install onetrainer)",
    ]

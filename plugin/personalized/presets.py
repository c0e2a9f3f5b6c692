"""YAML presets: named optimizer settings that carry the known advice.

A preset is a YAML file (schema in ``presets/README.md``) found in, in order:

1. the folders listed in the ``PERSONALIZED_PRESETS`` environment variable
   (``os.pathsep``-separated), for your own presets;
2. ``personalized/_presets`` inside an installed wheel, or inside a copy of the
   package made by ``personalized install kohya``;
3. a ``presets`` folder beside the ``personalized`` package folder (a bare
   copy of the plugin with its presets next to it);
4. the repository's ``presets`` folder (a source checkout).

Its name is its path below that folder without ``.yaml``, for example
``rvc/FCompass``; a file of your own with the name of a shipped preset replaces
it. Loading validates every value against the optimizer's real signature and
ranges (without importing bitsandbytes or prodigyopt) and names the file, the
key and the line of any problem. A preset file that was found but does not load
is always an error, never skipped. PyYAML is imported only here, when a preset
is first read.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .registry import canonical_name, settings_class
from .validation import validate

PACKAGE = Path(__file__).resolve().parent
SEARCH_PATH = (PACKAGE / "_presets", PACKAGE.parent / "presets", PACKAGE.parent.parent / "presets")

#: Who a preset is for: the trainers and the model families.
TRAINERS = ("any", "kohya", "onetrainer", "rvc", "comfyui", "diffusion-pipe", "chroma")
MODELS = ("generic", "sd15-lora", "sdxl-lora", "sd35-mmdit", "flux/chroma", "rvc")

REQUIRED = ("optimizer", "description", "for", "lr", "hyperparameters", "advice", "sources", "fallbacks")
OPTIONAL = ("name",)


class PresetError(ValueError):
    """A preset file that cannot be used, with the file, the key and the line."""


class UnknownPreset(PresetError):
    """No preset of that name was found."""


@dataclass(frozen=True)
class Preset:
    """One validated preset. ``hyperparameters`` and ``fallbacks`` hold constructor keywords."""

    name: str
    optimizer: str
    description: str
    trainers: tuple[str, ...]
    models: tuple[str, ...]
    lr: float | None
    hyperparameters: dict[str, Any]
    advice: str
    sources: dict[str, str]
    fallbacks: tuple[dict[str, Any], ...]
    path: Path = field(compare=False)

    def kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Constructor keywords: the preset's lr and hyperparameters, then ``overrides``."""
        return {"lr": self.lr, **self.hyperparameters, **overrides}


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as error:
        raise ImportError("presets need PyYAML: python -m pip install pyyaml") from error
    return yaml


def _loader() -> type:
    """A safe loader that also reads ``1e-4`` as a number (YAML 1.1 wants ``1.0e-4``)."""
    yaml = _yaml()

    class Loader(yaml.SafeLoader):
        pass

    number = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", number, list("-+0123456789."))
    Loader.add_constructor("tag:yaml.org,2002:float", _number)
    return Loader


def _number(loader: Any, node: Any) -> float | int:
    text = loader.construct_scalar(node)
    try:
        return int(text)
    except ValueError:
        return float(loader.construct_yaml_float(node))


def user_folders() -> list[Path]:
    """The folders named in ``PERSONALIZED_PRESETS`` that exist."""
    return [Path(p) for p in os.environ.get("PERSONALIZED_PRESETS", "").split(os.pathsep) if p and Path(p).is_dir()]


def search_path() -> list[Path]:
    return [*user_folders(), *(folder for folder in SEARCH_PATH if folder.is_dir())]


def shipped_folder() -> Path | None:
    """The folder holding the presets that come with the package, or None when this copy has none."""
    return next((folder for folder in SEARCH_PATH if folder.is_dir() and any(folder.rglob("*.yaml"))), None)


def missing_presets_hint() -> str:
    """What to do when this copy of the package has no shipped presets (a bare copy of the plugin folder)."""
    return (
        f"this copy of the personalized package ({PACKAGE}) has no presets folder: "
        f"copy the repository's presets folder to {PACKAGE / '_presets'}"
    )


def _files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in search_path():
        for path in sorted(folder.rglob("*.yaml")):
            found.setdefault(path.relative_to(folder).with_suffix("").as_posix(), path)
    return found


def available() -> list[str]:
    """The names of every preset found (``default/FCompass``, ``rvc/FCompass``...)."""
    return sorted(_files(), key=str.lower)


def _find(files: dict[str, Path], name: str) -> str | None:
    """The key of ``files`` that ``name`` means (any case, with or without ``.yaml``)."""
    by_lower = {key.lower(): key for key in files}
    return by_lower.get(name.strip().removesuffix(".yaml").lower())


def load(name: str) -> Preset:
    """The validated preset called ``name`` (case-insensitive). Raises UnknownPreset if there is none."""
    files = _files()
    key = _find(files, name)
    if key is None:
        close = difflib.get_close_matches(name, list(files), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        if shipped_folder() is None:
            raise UnknownPreset(f"Unknown preset {name!r}: {missing_presets_hint()}.")
        raise UnknownPreset(f"Unknown preset {name!r}.{hint} Run 'personalized presets' to list them.")
    return load_file(files[key], key)


def default_preset(optimizer: str) -> Preset | None:
    """The ``default/<optimizer>`` preset (canonical name), or None where there is none.

    None also when PyYAML is missing and the preset is a shipped one: the optimizer then
    gets its constructor defaults. A file of your own in ``PERSONALIZED_PRESETS`` is never
    skipped: one that does not load raises PresetError naming its file and line
    (ImportError without PyYAML).
    """
    files = _files()
    key = _find(files, f"default/{optimizer}")
    if key is None:
        return None
    try:
        return load_file(files[key], key)
    except ImportError:
        if any(files[key].is_relative_to(folder) for folder in user_folders()):
            raise
        return None


def load_file(path: str | Path, name: str | None = None) -> Preset:
    """Read and validate one preset file."""
    path = Path(path)
    return _Reader(path, name or path.stem, path.read_text(encoding="utf-8")).preset()


class _Reader:
    """Validates one preset document and reports problems with their line numbers."""

    def __init__(self, path: Path, name: str, text: str) -> None:
        self.yaml = yaml = _yaml()
        self.path, self.name = path, name
        loader = _loader()
        try:
            self.node = yaml.compose(text, Loader=loader)
            self.data = yaml.load(text, Loader=loader)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise PresetError(f"{path}{line}: not valid YAML: {getattr(error, 'problem', error)}") from None

    def fail(self, message: str, *keys: str | int) -> PresetError:
        line = self.line(*keys)
        return PresetError(f"{self.path}{f':{line}' if line else ''}: {message}")

    def line(self, *keys: str | int) -> int | None:
        """1-based line of the entry at ``keys`` (mapping keys or list indexes), if YAML gives it."""
        node, line = self.node, None
        for key in keys:
            if isinstance(node, self.yaml.MappingNode):
                entry = next(((k, v) for k, v in node.value if k.value == key), None)
                if entry is None:
                    break
                line, node = entry[0].start_mark.line + 1, entry[1]
            elif isinstance(node, self.yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def preset(self) -> Preset:
        data = self.data
        if not isinstance(data, dict):
            raise self.fail("expected a mapping of preset fields at the top level")
        for key in data:
            if key not in REQUIRED + OPTIONAL:
                raise self.fail(f"unknown field {key!r}; allowed fields: {', '.join(REQUIRED + OPTIONAL)}", key)
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise self.fail(f"missing field(s): {', '.join(missing)}")
        if "name" in data and data["name"] != self.name:
            raise self.fail(f"name {data['name']!r} does not match the file's name {self.name!r}", "name")
        try:
            optimizer = canonical_name(data["optimizer"])
        except (TypeError, ValueError) as error:
            raise self.fail(f"optimizer: {error}", "optimizer") from None
        cls = settings_class(optimizer)
        rules = cls.hyperparameter_rules()
        for key in ("description", "advice"):
            if not isinstance(data[key], str) or not data[key].strip():
                raise self.fail(f"{key} must be non-empty text", key)
        trainers = self.names(data["for"], "trainers", TRAINERS)
        models = self.names(data["for"], "models", MODELS)
        self.check_values({"lr": data["lr"]}, rules, ("lr",), "lr")
        hyperparameters = self.mapping(data["hyperparameters"], "hyperparameters")
        if "lr" in hyperparameters:
            raise self.fail("put lr in the top-level lr field, not in hyperparameters", "hyperparameters", "lr")
        self.check_values(hyperparameters, rules, ("hyperparameters",), "hyperparameters")
        sources = self.mapping(data["sources"], "sources")
        undocumented = [key for key in ("lr", *hyperparameters) if not str(sources.get(key, "")).strip()]
        if undocumented:
            raise self.fail(f"sources: no source given for {', '.join(undocumented)}", "sources")
        if not isinstance(data["fallbacks"], list):
            raise self.fail("fallbacks must be a list of hyperparameter overrides", "fallbacks")
        fallbacks = []
        for index, fallback in enumerate(data["fallbacks"]):
            fallback = self.mapping(fallback, "fallbacks", index)
            if not fallback:
                raise self.fail(f"fallback {index + 1} is empty", "fallbacks", index)
            self.check_values(fallback, rules, ("fallbacks", index), f"fallback {index + 1}")
            fallbacks.append(fallback)
        merged = dict(hyperparameters, lr=data["lr"])
        try:
            cls._check_group("preset", {**cls.hyperparameter_defaults(), **merged})
        except ValueError as error:
            raise self.fail(str(error)) from None
        return Preset(
            name=self.name,
            optimizer=optimizer,
            description=data["description"].strip(),
            trainers=trainers,
            models=models,
            lr=merged["lr"],
            hyperparameters=hyperparameters,
            advice=data["advice"].strip(),
            sources={str(k): str(v) for k, v in sources.items()},
            fallbacks=tuple(fallbacks),
            path=self.path,
        )

    def mapping(self, value: Any, *keys: str | int) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{keys[0]} must be a mapping of key: value", *keys)
        return dict(value)

    def names(self, targets: Any, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        if not isinstance(targets, dict) or not isinstance(targets.get(key), list) or not targets[key]:
            raise self.fail(f"for.{key} must be a non-empty list (allowed: {', '.join(allowed)})", "for")
        for index, value in enumerate(targets[key]):
            if value not in allowed:
                raise self.fail(f"for.{key}: {value!r} is not one of {', '.join(allowed)}", "for", key, index)
        return tuple(targets[key])

    def check_values(self, values: dict[str, Any], rules: dict, keys: tuple, where: str) -> None:
        for key in list(values):
            if key not in rules:
                raise self.fail(
                    f"{where}: unknown key {key!r} for {self.data['optimizer']}; allowed: {', '.join(rules)}",
                    *keys,
                    key,
                )
            try:
                validate(str(self.path), where, values, {key: rules[key]})
            except (TypeError, ValueError) as error:
                message = str(error).removeprefix(f"{self.path}: ")
                raise self.fail(message, *keys, key) from None

"""Which of OneTrainer's optimizer fields carry which of our hyperparameters.

There is one definition of the field names: :func:`personalized.exporters.onetrainer_settings`
(what ``personalized export PRESET --to onetrainer-json`` writes). This module asks it, key by
key, where each of an optimizer's hyperparameters goes, and keeps a field only if OneTrainer's
``TrainOptimizerConfig`` really has it with a type that can hold our value. Everything else is
*unmapped*: it keeps our class default, unless it is given in the side channel (below).

Reading a OneTrainer config back into constructor keywords follows OneTrainer's own rule:
a field left empty (``None``) means "the optimizer's default". A keyword spread over several
fields (``betas`` over ``beta1``/``beta2``/``beta3``) is put back together as a tuple, an empty
field taking the default's element.

The side channel. OneTrainer drops unknown keys, and its only free-form field in the optimizer
config is the dict ``muon_adam_config`` (read by its MUON optimizers only). Unmapped
hyperparameters can be given there under the key ``"personalized"``::

    "optimizer": {
        "optimizer": "PERSONALIZED_FCOMPASS",
        "muon_adam_config": {"personalized": {"clip": 0.0, "centralization": 0.0}}
    }

Keys that have a OneTrainer field (and ``lr``) are refused there, so that a value typed in
OneTrainer's optimizer window is never silently overridden; so are OneTrainer's own field names
(``beta1``, ``eps``, ...). The message names the OneTrainer field to use instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personalized import exporters
from personalized.presets import Preset

#: OneTrainer's free-form optimizer field that carries the side channel, and our key inside it.
SIDE_CHANNEL_FIELD, SIDE_CHANNEL_KEY = exporters.ONETRAINER_SIDE_CHANNEL


@dataclass(frozen=True)
class Schema:
    """OneTrainer's optimizer fields: name -> (type, nullable), from ``TrainOptimizerConfig``."""

    fields: Mapping[str, tuple[Any, bool]]

    @classmethod
    def of(cls, config: Any) -> Schema:
        """The schema of a ``TrainOptimizerConfig`` instance (its ``types`` and ``nullables``)."""
        types, nullables = getattr(config, "types", None), getattr(config, "nullables", None)
        if not isinstance(types, Mapping) or not isinstance(nullables, Mapping):
            raise TypeError("OneTrainer's optimizer config no longer has the types/nullables tables")
        return cls({name: (kind, bool(nullables.get(name, False))) for name, kind in types.items()})

    def fits(self, field: str, value: Any) -> bool:
        """Whether OneTrainer's field ``field`` exists and can hold ``value`` unchanged."""
        if field not in self.fields:
            return False
        kind, nullable = self.fields[field]
        if value is None:
            return nullable
        if isinstance(value, bool) or kind is bool:
            return kind is bool and isinstance(value, bool)
        if kind is int:
            return isinstance(value, int)
        if kind is float:
            return isinstance(value, (int, float))
        return kind is str and isinstance(value, str)


@dataclass(frozen=True)
class FieldPlan:
    """Where one optimizer's hyperparameters live in OneTrainer's config."""

    optimizer: str
    #: our keyword -> OneTrainer field(s); several for a tuple such as ``betas``
    fields: dict[str, tuple[str, ...]]
    #: our keyword -> our class default
    class_defaults: dict[str, Any]
    #: our keywords without a OneTrainer field
    unmapped: tuple[str, ...]

    def onetrainer_defaults(self) -> dict[str, Any]:
        """Our defaults in OneTrainer's field names (for ``OPTIMIZER_DEFAULT_PARAMETERS``)."""
        defaults: dict[str, Any] = {}
        for key, fields in self.fields.items():
            value = self.class_defaults[key]
            defaults.update(zip(fields, value) if len(fields) > 1 else [(fields[0], value)])
        return defaults

    def kwargs(self, config: Any) -> dict[str, Any]:
        """Constructor keywords from a OneTrainer optimizer config (empty fields: our defaults)."""
        kwargs: dict[str, Any] = {}
        for key, fields in self.fields.items():
            values = [getattr(config, field, None) for field in fields]
            if all(value is None for value in values):
                continue
            if len(fields) == 1:
                kwargs[key] = values[0]
            else:
                default = self.class_defaults[key]
                kwargs[key] = tuple(d if v is None else v for v, d in zip(values, default))
        return kwargs

    def extras(self, config: Any) -> dict[str, Any]:
        """Unmapped keywords from the side channel ``muon_adam_config["personalized"]`` (may be empty)."""
        holder = getattr(config, SIDE_CHANNEL_FIELD, None)
        extras = holder.get(SIDE_CHANNEL_KEY) if isinstance(holder, Mapping) else None
        if extras is None:
            return {}
        where = f'{SIDE_CHANNEL_FIELD}["{SIDE_CHANNEL_KEY}"]'
        if not isinstance(extras, Mapping):
            raise ValueError(f"{self.optimizer}: {where} must be a JSON object of keywords, not {extras!r}")
        clash = [message for key in sorted(extras) if (message := self._owner_of(key))]
        if clash:
            raise ValueError(
                f"{self.optimizer}: {where} sets {'; '.join(clash)}. OneTrainer has its own field for these: "
                "use OneTrainer's field, in its optimizer settings (or the config's \"optimizer\" section), instead"
            )
        return {key: tuple(value) if isinstance(value, list) else value for key, value in extras.items()}

    def _owner_of(self, key: str) -> str | None:
        """Which OneTrainer field ``key`` belongs to, in words; None for a key the side channel may carry.

        ``key`` may be our keyword (``betas``) or OneTrainer's own field name (``beta1``).
        """
        if key == "lr":
            return "lr (use OneTrainer's learning rate, in the Training tab)"
        if key in self.fields:
            return f"{key} (use OneTrainer's field {', '.join(self.fields[key])})"
        ours = next((ours for ours, fields in self.fields.items() if key in fields), None)
        return None if ours is None else f"{key} (use OneTrainer's field {key}, which sets our {ours})"


def _probe(optimizer: str, key: str, value: Any) -> dict[str, Any]:
    """The OneTrainer fields the exporter writes for one hyperparameter."""
    preset = Preset(
        name=f"onetrainer-probe/{optimizer}",
        optimizer=optimizer,
        description="",
        trainers=("onetrainer",),
        models=("generic",),
        lr=None,
        hyperparameters={key: value},
        advice="",
        sources={},
        fallbacks=(),
        path=Path(),
    )
    settings = exporters.onetrainer_settings(preset)
    settings.pop("optimizer", None)
    return settings


def _fields_for(optimizer: str, key: str, default: Any, schema: Schema) -> tuple[str, ...] | None:
    """The fields that carry ``key``, or None when OneTrainer cannot hold it."""
    settings = _probe(optimizer, key, default)
    if not settings:
        return None
    if isinstance(default, (tuple, list)):
        parts_match = len(settings) == len(default) > 1 and list(settings.values()) == list(default)
        if not parts_match:
            return None  # one field holding a tuple: no OneTrainer field can
    elif len(settings) != 1:
        return None
    if not all(schema.fits(field, value) for field, value in settings.items()):
        return None
    return tuple(settings)


def plan(cls: type, schema: Schema) -> FieldPlan:
    """The :class:`FieldPlan` of optimizer class ``cls`` against OneTrainer's ``schema``."""
    defaults = _class_defaults(cls)
    fields: dict[str, tuple[str, ...]] = {}
    unmapped: list[str] = []
    for key, default in defaults.items():
        found = _fields_for(cls.__name__, key, default, schema)
        if found is None:
            unmapped.append(key)
        else:
            fields[key] = found
    return FieldPlan(cls.__name__, fields, defaults, tuple(unmapped))


def _class_defaults(cls: type) -> dict[str, Any]:
    """Constructor keywords and defaults, ``lr`` excepted (OneTrainer passes its learning rate)."""
    defaults = dict(cls.hyperparameter_defaults())
    defaults.pop("lr", None)
    return defaults

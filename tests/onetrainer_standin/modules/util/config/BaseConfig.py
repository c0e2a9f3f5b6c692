"""Stand-in for OneTrainer's ``modules/util/config/BaseConfig.py`` (commit 23df383).

A config is a table of ``(name, default, type, nullable)``. ``from_dict`` converts each known
key by its type; enums are looked up by *name* (``Optimizer["ADAMW"]``). Whatever fails to
convert is reported with a printed "Could not set NAME as VALUE" and keeps its previous value,
which is how an unknown optimizer name ends up as the default ADAMW. Unknown keys are ignored.
Config migrations are left out (the integration does not touch them).
"""

from enum import Enum
from typing import Any, get_args, get_origin


def _is_config(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseConfig)


def _is_enum(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, Enum)


class BaseConfig:
    def __init__(self, data: list[tuple[str, Any, Any, bool]]) -> None:
        self.types: dict[str, Any] = {}
        self.nullables: dict[str, bool] = {}
        self.default_values: dict[str, Any] = {}
        for name, value, kind, nullable in data:
            setattr(self, name, value)
            self.types[name] = kind
            self.nullables[name] = nullable
            self.default_values[name] = value

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, kind in self.types.items():
            value = getattr(self, name)
            if _is_config(kind):
                data[name] = value.to_dict()
            elif get_origin(kind) is dict and _is_config(get_args(kind)[1]):
                data[name] = {key: item.to_dict() for key, item in value.items()}
            elif _is_enum(kind):
                data[name] = None if value is None else str(value)
            else:
                data[name] = value
        return data

    def from_dict(self, data: dict[str, Any]) -> "BaseConfig":
        for name, kind in self.types.items():
            try:
                self._set(name, kind, data[name])
            except Exception:
                if name in data:
                    print(f"Could not set {name} as {data[name]!s}")
        return self

    def _set(self, name: str, kind: Any, value: Any) -> None:
        nullable = self.nullables[name]
        if _is_config(kind):
            getattr(self, name).from_dict(value)
        elif get_origin(kind) is dict and _is_config(get_args(kind)[1]):
            item_type = get_args(kind)[1]
            setattr(self, name, {key: item_type.default_values().from_dict(item) for key, item in value.items()})
        elif _is_enum(kind):
            if isinstance(value, str):
                setattr(self, name, kind[value])
            elif value is None and nullable:
                setattr(self, name, None)
            else:
                setattr(self, name, value)
        elif kind in (float, int, str):
            setattr(self, name, None if value is None and nullable else kind(value))
        else:
            setattr(self, name, value)

"""Stand-in for OneTrainer's ``modules/util/config/BaseConfig.py`` (commit 23df383).

A config is a table of ``(name, default, type, nullable)`` with a ``config_version``. ``to_dict``
writes ``__version`` first. ``from_dict`` converts each known key by its type; a key the data
lacks keeps its current value; enums are looked up by *name* (``Optimizer["ADAMW"]``). Whatever
fails to convert is reported with a printed "Could not set NAME as VALUE" and keeps its previous
value, which is how an unknown optimizer name ends up as the default ADAMW. Unknown keys are
ignored. With ``migrate`` the data's ``__version`` is raised through ``config_migrations``
first; the stand-in's configs have no migrations (the integration does not touch them).
"""

from enum import Enum
from typing import Any, get_args, get_origin


def _is_config(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseConfig)


def _is_enum(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, Enum)


class BaseConfig:
    def __init__(
        self,
        data: list[tuple[str, Any, Any, bool]],
        config_version: int | None = None,
        config_migrations: dict[int, Any] | None = None,
    ) -> None:
        self.config_version = config_version if config_version is not None else 0
        self.config_migrations = config_migrations if config_migrations is not None else {}
        self.types: dict[str, Any] = {}
        self.nullables: dict[str, bool] = {}
        self.default_values: dict[str, Any] = {}
        for name, value, kind, nullable in data:
            setattr(self, name, value)
            self.types[name] = kind
            self.nullables[name] = nullable
            self.default_values[name] = value

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"__version": self.config_version}
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

    def from_dict(self, data: dict[str, Any], migrate: bool = True) -> "BaseConfig":
        if migrate:
            version = data.get("__version", 0)
            while version in self.config_migrations:
                data = self.config_migrations[version](data)
                version += 1
        for name, kind in self.types.items():
            try:
                self._set(name, kind, data[name], migrate)
            except Exception:
                if name in data:
                    print(f"Could not set {name} as {data[name]!s}")
        return self

    def _set(self, name: str, kind: Any, value: Any, migrate: bool) -> None:
        nullable = self.nullables[name]
        if _is_config(kind):
            getattr(self, name).from_dict(value, migrate)
        elif get_origin(kind) is dict and _is_config(get_args(kind)[1]):
            item_type = get_args(kind)[1]
            items = {key: item_type.default_values().from_dict(item, migrate) for key, item in value.items()}
            setattr(self, name, items)
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

"""Stand-in for OneTrainer's ``modules/util/NamedParameterGroup.py`` (commit 23df383).

Learning-rate scaling by batch size is left out (it only changes the numbers).
"""

from collections.abc import Iterable
from functools import cached_property
from typing import Any

from modules.util.config.TrainConfig import TrainConfig
from torch.nn import Parameter


class NamedParameterGroup:
    def __init__(
        self,
        unique_name: str,
        parameters: Iterable[Parameter],
        learning_rate: float | None,
        display_name: str | None = None,
    ) -> None:
        self.unique_name = unique_name
        self.display_name = display_name if display_name is not None else unique_name
        self.parameters = list(parameters)
        self.learning_rate = learning_rate


class NamedParameterGroupCollection:
    def __init__(self) -> None:
        self._groups: list[NamedParameterGroup] = []

    def add_group(self, group: NamedParameterGroup) -> None:
        self._groups.append(group)

    def parameters(self) -> list[Parameter]:
        return [p for group in self._groups for p in group.parameters]

    def parameters_for_optimizer(self, config: TrainConfig) -> list[dict[str, Any]]:
        """One dict per group: display name, parameters, and the learning rate twice."""
        result = []
        for group in self._groups:
            lr = group.learning_rate if group.learning_rate is not None else config.learning_rate
            result.append({"name": group.display_name, "params": list(group.parameters), "lr": lr, "initial_lr": lr})
        return result

    @cached_property
    def unique_name_mapping(self) -> list[str]:
        return [group.unique_name for group in self._groups]

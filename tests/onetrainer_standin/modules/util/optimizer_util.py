"""Stand-in for OneTrainer's ``modules/util/optimizer_util.py`` (commit 23df383).

``init_model_parameters`` keeps what touches the optimizer (no multi-GPU broadcast, no EMA,
no Muon): it imports ``create`` at call time and calls ``create.create_optimizer`` through the
module, moves the tensors that ``state_dict()`` returns in place, and records the group names
that the saver writes next to the state.
"""

from typing import Any

import torch
from modules.util.config.TrainConfig import TrainConfig, TrainOptimizerConfig
from modules.util.enum.Optimizer import Optimizer
from modules.util.NamedParameterGroup import NamedParameterGroupCollection


def change_optimizer(train_config: TrainConfig) -> TrainOptimizerConfig:
    """The optimizer settings after picking ``train_config.optimizer.optimizer`` in the UI."""
    optimizer = train_config.optimizer.optimizer
    optimizer_config = TrainOptimizerConfig.default_values()
    optimizer_config.from_dict(OPTIMIZER_DEFAULT_PARAMETERS[optimizer])
    optimizer_config.optimizer = optimizer
    if str(optimizer) in train_config.optimizer_defaults:
        optimizer_config.from_dict(train_config.optimizer_defaults[str(optimizer)].to_dict())
    return optimizer_config


def _tensors_to_device_(data: Any, device: torch.device) -> None:
    if isinstance(data, torch.Tensor):
        data.data = data.data.to(device=device)
    elif isinstance(data, dict):
        for item in data.values():
            _tensors_to_device_(item, device)


def init_model_parameters(model: Any, parameters: NamedParameterGroupCollection, train_device: torch.device) -> None:
    model.parameters = parameters

    from modules.util import create

    model.optimizer = create.create_optimizer(parameters, model.optimizer_state_dict, model.train_config, None)
    if model.optimizer is not None:
        for state in model.optimizer.state_dict()["state"].values():
            _tensors_to_device_(state, train_device)
    model.optimizer_state_dict = None
    model.param_group_mapping = parameters.unique_name_mapping


OPTIMIZER_DEFAULT_PARAMETERS: dict[Optimizer, dict[str, Any]] = {
    Optimizer.ADAMW: {
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 1e-2,
        "amsgrad": False,
        "foreach": False,
        "fused": False,
        "stochastic_rounding": True,
        "fused_back_pass": False,
    },
    Optimizer.SGD: {"momentum": 0, "weight_decay": 0, "foreach": False},
    Optimizer.PRODIGY: {
        "beta1": 0.9,
        "beta2": 0.999,
        "beta3": None,
        "eps": 1e-8,
        "weight_decay": 0,
        "d0": 1e-6,
        "d_coef": 1.0,
        "growth_rate": float("inf"),
    },
    Optimizer.SCHEDULE_FREE_ADAMW: {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2},
}

"""Stand-in for the optimizer part of OneTrainer's ``modules/modelSaver/mixin/InternalModelSaverMixin.py``
(commit 23df383): the state dict, plus each group's unique name and the optimizer it was saved with.
"""

import os
from typing import Any

import torch


class InternalModelSaverMixin:
    def _save_internal_data(self, model: Any, destination: str) -> None:
        os.makedirs(os.path.join(destination, "optimizer"), exist_ok=True)
        optimizer_state_dict = model.optimizer.state_dict()
        optimizer_state_dict["param_group_mapping"] = model.param_group_mapping
        optimizer_state_dict["param_group_optimizer_mapping"] = [
            str(model.train_config.optimizer.optimizer) for _ in model.param_group_mapping
        ]
        torch.save(optimizer_state_dict, os.path.join(destination, "optimizer", "optimizer.pt"))

"""Stand-in for OneTrainer's ``modules/util/enum/Optimizer.py`` (commit 23df383), reduced to a few members."""

from enum import Enum

import torch


class Optimizer(Enum):
    ADAMW = "ADAMW"
    SGD = "SGD"
    PRODIGY = "PRODIGY"
    SCHEDULE_FREE_ADAMW = "SCHEDULE_FREE_ADAMW"

    @property
    def is_adaptive(self) -> bool:
        return self in [self.PRODIGY]

    @property
    def is_schedule_free(self) -> bool:
        return self in [self.SCHEDULE_FREE_ADAMW]

    def supports_fused_back_pass(self) -> bool:
        return self in [Optimizer.ADAMW]

    def maybe_adjust_lrs(self, lrs: dict[str, float], optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """The reported learning rates; for adaptive optimizers multiplied by each group's ``d``."""
        if not self.is_adaptive:
            return lrs
        groups = optimizer.param_groups
        return {key: lr * groups[i].get("d", 1.0) for i, (key, lr) in enumerate(lrs.items())}

    def __str__(self) -> str:
        return self.value

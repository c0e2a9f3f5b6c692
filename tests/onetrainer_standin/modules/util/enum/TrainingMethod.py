"""Stand-in for OneTrainer's ``modules/util/enum/TrainingMethod.py`` (commit 23df383)."""

from enum import Enum


class TrainingMethod(Enum):
    FINE_TUNE = "FINE_TUNE"
    LORA = "LORA"

    def __str__(self) -> str:
        return self.value

"""Stand-in for OneTrainer's ``modules/util/enum/ModelType.py`` (commit 23df383), reduced to a few members."""

from enum import Enum


class ModelType(Enum):
    STABLE_DIFFUSION_15 = "STABLE_DIFFUSION_15"
    STABLE_DIFFUSION_XL_10_BASE = "STABLE_DIFFUSION_XL_10_BASE"
    CHROMA_1 = "CHROMA_1"

    def __str__(self) -> str:
        return self.value

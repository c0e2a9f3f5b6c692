"""The optimizers, one module each."""

from .farmscrop import FARMSCrop
from .farmscrop_v2 import FARMSCropV2
from .fcompass import FCompass
from .fishmonger import FishMonger
from .fmarscrop import FMARSCrop
from .fmarscrop_exmachina import FMARSCrop_ExMachina

__all__ = ["FARMSCrop", "FARMSCropV2", "FCompass", "FMARSCrop", "FMARSCrop_ExMachina", "FishMonger"]

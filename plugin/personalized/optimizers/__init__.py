"""The optimizers, one module each (AdamW8bitKahan and Prodigy load lazily: see the registry)."""

from .adafactor import EnhancedAdafactor
from .automagic import Automagic
from .farmscrop import FARMSCrop
from .farmscrop_v2 import FARMSCropV2
from .fcompass import FCompass
from .fishmonger import FishMonger
from .fmarscrop import FMARSCrop
from .fmarscrop_exmachina import FMARSCrop_ExMachina
from .persona import PersonaOptimizer
from .remaster import REMASTER
from .scorn import SCORN

__all__ = [
    "REMASTER",
    "SCORN",
    "Automagic",
    "EnhancedAdafactor",
    "FARMSCrop",
    "FARMSCropV2",
    "FCompass",
    "FMARSCrop",
    "FMARSCrop_ExMachina",
    "FishMonger",
    "PersonaOptimizer",
]

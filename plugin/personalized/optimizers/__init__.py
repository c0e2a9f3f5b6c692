"""The optimizers, one module each (AdamW8bitKahan and Prodigy load lazily: see the registry).

What a family shares lives in the family's module: :mod:`.farms` (FARMSCropV2, FMARSCrop,
FMARSCrop_ExMachina) and :mod:`.atan2_adopt` (REMASTER, SCORN); EnhancedAdafactor's module
also holds the second moment Automagic uses.
"""

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

#: The optimizers that need only torch, in catalogue order (``personalized list``).
CATALOGUE = (
    FCompass,
    FishMonger,
    FARMSCrop,
    FARMSCropV2,
    FMARSCrop,
    FMARSCrop_ExMachina,
    EnhancedAdafactor,
    SCORN,
    REMASTER,
    PersonaOptimizer,
    Automagic,
)

__all__ = [cls.__name__ for cls in CATALOGUE]

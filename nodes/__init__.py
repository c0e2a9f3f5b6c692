"""ComfyUI custom node pack for the ``personalized`` optimizers (see README.md).

Nodes: "Personalized Optimizer", "Train LoRA (personalized optimizer)" and
"FluxTrainer ARGS (personalized optimizer)".

Registration: through ComfyUI's current node API (``comfy_entrypoint`` returning a
``ComfyExtension``) when ``comfy_api.latest`` exists, otherwise through the older
``NODE_CLASS_MAPPINGS``. Only one of the two is exported: ComfyUI uses
``NODE_CLASS_MAPPINGS`` whenever a pack defines it.
"""

from __future__ import annotations

from typing import Any

from .definitions import NodeDef, v1_node, v3_node
from .fluxtrainer_node import NODE as FLUXTRAINER_ARGS
from .optimizer_node import NODE as OPTIMIZER
from .train_node import NODE as TRAIN_LORA

NODES: tuple[NodeDef, ...] = (OPTIMIZER, TRAIN_LORA, FLUXTRAINER_ARGS)

try:
    from comfy_api.latest import ComfyExtension, io
except ImportError:
    ComfyExtension = io = None

if io is not None:

    class PersonalizedOptimizersExtension(ComfyExtension):
        """The pack's nodes, for ComfyUI's current node API."""

        async def get_node_list(self) -> list[type[Any]]:
            return [v3_node(node, io) for node in NODES]

    async def comfy_entrypoint() -> PersonalizedOptimizersExtension:
        return PersonalizedOptimizersExtension()

    __all__ = ["comfy_entrypoint"]

else:
    NODE_CLASS_MAPPINGS = {node.node_id: v1_node(node) for node in NODES}
    NODE_DISPLAY_NAME_MAPPINGS = {node.node_id: node.display_name for node in NODES}

    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

"""Lets ComfyUI load nodes/ when this repository is cloned into ComfyUI/custom_nodes."""

from .nodes import *  # noqa: F403 (comfy_entrypoint, or NODE_CLASS_MAPPINGS on an older ComfyUI)
from .nodes import __all__  # noqa: F401

"""Stand-in for comfy_api/latest/__init__.py (ComfyUI @ 09b9054): ComfyExtension and io."""

from __future__ import annotations

from abc import ABC, abstractmethod

from . import _io as io


class ComfyExtension(ABC):
    async def on_load(self) -> None:  # noqa: B027 (optional hook, as in ComfyUI)
        """Called when an extension is loaded."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """Returns a list of nodes that this extension provides."""


IO = io

__all__ = ["IO", "ComfyExtension", "io"]

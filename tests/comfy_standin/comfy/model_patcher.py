"""Stand-in for comfy/model_patcher.py: the MODEL that nodes receive."""

from __future__ import annotations

import torch


class ModelPatcher:
    def __init__(self, model: torch.nn.Module, load_device=None, offload_device=None) -> None:
        self.model = model
        self.load_device = load_device or torch.device("cpu")
        self.offload_device = offload_device or torch.device("cpu")
        self.model_options: dict = {"transformer_options": {}}
        self.weight_wrapper_patches: dict[str, list] = {}
        self.compute_dtype: torch.dtype | None = None

    def clone(self) -> ModelPatcher:
        """A new patcher on the same model, with a copy of the patches (as the real clone)."""
        clone = ModelPatcher(self.model, self.load_device, self.offload_device)
        clone.weight_wrapper_patches = {key: list(value) for key, value in self.weight_wrapper_patches.items()}
        return clone

    def add_weight_wrapper(self, name: str, function) -> None:
        self.weight_wrapper_patches[name] = [*self.weight_wrapper_patches.get(name, []), function]

    def set_model_compute_dtype(self, dtype: torch.dtype) -> None:
        self.compute_dtype = dtype

    def model_dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def load(self) -> None:
        """Attach the weight wrappers to their layers, as the real patcher does when it loads the model."""
        for key, functions in self.weight_wrapper_patches.items():
            layer_name, attribute = key.rsplit(".", 1)
            setattr(self.model.get_submodule(layer_name), f"{attribute}_function", list(functions))

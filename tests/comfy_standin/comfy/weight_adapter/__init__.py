"""Stand-in for comfy/weight_adapter (__init__.py @ dc05edb, lora.py @ 0323d87): the LoRA adapter only."""

from __future__ import annotations

import torch


class WeightAdapterTrainBase(torch.nn.Module):
    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LoraDiff(WeightAdapterTrainBase):
    """The trainable LoRA: ``w + alpha / rank * up @ down``."""

    def __init__(self, weights) -> None:
        super().__init__()
        up, down, alpha, _mid, _dora_scale, _reshape = weights
        self.lora_up = torch.nn.Linear(up.shape[1], up.shape[0], bias=False)
        self.lora_down = torch.nn.Linear(down.shape[1], down.shape[0], bias=False)
        self.lora_up.weight.data.copy_(up)
        self.lora_down.weight.data.copy_(down)
        self.rank = down.shape[0]
        self.alpha = torch.nn.Parameter(torch.tensor(alpha), requires_grad=False)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        diff = self.lora_up.weight @ self.lora_down.weight
        return (w + self.alpha / self.rank * diff.reshape(w.shape)).to(w.dtype)


class LoRAAdapter:
    name = "lora"

    def __init__(self, loaded_keys, weights) -> None:
        self.loaded_keys = loaded_keys
        self.weights = weights

    @classmethod
    def create_train(cls, weight, rank=1, alpha=1.0) -> LoraDiff:
        up = torch.empty(weight.shape[0], rank, device=weight.device, dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(up, a=5**0.5)
        down = torch.zeros(rank, weight.shape[1:].numel(), device=weight.device, dtype=torch.float32)
        return LoraDiff((up, down, alpha, None, None, None))

    def to_train(self) -> LoraDiff:
        return LoraDiff(self.weights)

    @classmethod
    def load(cls, x, lora, alpha, dora_scale, loaded_keys=None) -> LoRAAdapter | None:
        up, down = f"{x}.lora_up.weight", f"{x}.lora_down.weight"
        if up not in lora:
            return None
        return cls({up, down}, (lora[up], lora[down], alpha, None, dora_scale, None))


adapters = [LoRAAdapter]
adapter_maps = {"LoRA": LoRAAdapter}

"""Stand-in for comfy/ops.py: layers whose weights ComfyUI can wrap (``weight_function``, ``bias_function``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _Patchable:
    def _patched(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight, bias = self.weight, self.bias
        for function in self.weight_function:
            weight = function(weight)
        if bias is not None:
            for function in self.bias_function:
                bias = function(bias)
        return weight, bias


class Linear(_Patchable, torch.nn.Linear):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.weight_function: list = []
        self.bias_function: list = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._patched()
        return F.linear(x, weight, bias)


class LayerNorm(_Patchable, torch.nn.LayerNorm):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.weight_function: list = []
        self.bias_function: list = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._patched()
        return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)

"""Stand-in for comfy/utils.py: load_torch_file."""

from __future__ import annotations

import torch

PROGRESS_BAR_ENABLED = True


def load_torch_file(ckpt, safe_load=False, device=None, return_metadata=False):
    if str(ckpt).endswith(".safetensors"):
        import safetensors.torch

        return safetensors.torch.load_file(ckpt, device=str(device or "cpu"))
    return torch.load(ckpt, map_location=device or "cpu", weights_only=True)

"""Stand-in for ComfyUI's node_helpers.py: string_to_torch_dtype."""

from __future__ import annotations

import torch


def string_to_torch_dtype(string: str) -> torch.dtype | None:
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(string)

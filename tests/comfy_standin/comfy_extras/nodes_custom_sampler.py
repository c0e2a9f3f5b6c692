"""Stand-in for comfy_extras/nodes_custom_sampler.py: Noise_RandomNoise and Guider_Basic."""

from __future__ import annotations

import comfy.samplers
import torch


class Noise_RandomNoise:
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randn(samples.shape, generator=generator).to(samples.dtype)


class Guider_Basic(comfy.samplers.CFGGuider):
    def set_conds(self, positive) -> None:
        self.inner_set_conds({"positive": positive})

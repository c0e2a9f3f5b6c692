"""A tiny "diffusion model" made of the stand-in ComfyUI layers, to train a LoRA on for a few CPU steps."""

from __future__ import annotations

import comfy.ops
import torch
from comfy.model_patcher import ModelPatcher


class ModelSampling:
    """Noise ``x = latent + sigma * noise`` with sigma in [0, 1]."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image + noise * sigma.reshape(sigma.shape[:1] + (1,) * (noise.ndim - 1))

    def percent_to_sigma(self, percent: float) -> float:
        return 1.0 - percent


class Denoiser(torch.nn.Module):
    """Predicts the noise from the noisy latent, per pixel, through two patchable layers and a norm."""

    def __init__(self, channels: int = 4, hidden: int = 8) -> None:
        super().__init__()
        self.inp = comfy.ops.Linear(channels + 1, hidden)
        self.norm = comfy.ops.LayerNorm(hidden)
        self.out = comfy.ops.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        pixels = x.movedim(1, -1)
        level = sigma.reshape(-1, *(1,) * (pixels.ndim - 1)).expand(*pixels.shape[:-1], 1).to(pixels.dtype)
        hidden = torch.nn.functional.silu(self.norm(self.inp(torch.cat([pixels, level], dim=-1))))
        return self.out(hidden).movedim(-1, 1)


class TinyBaseModel(torch.nn.Module):
    """What ``ModelPatcher.model`` is: the denoiser plus its noise schedule; ``apply_model`` predicts x0."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.diffusion_model = Denoiser(channels)
        self.model_sampling = ModelSampling()
        self.conds_seen: list[int] = []

    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, cond: list) -> torch.Tensor:
        self.conds_seen.append(len(cond))
        noise = self.diffusion_model(x, sigma)
        return x - noise * sigma.reshape(-1, *(1,) * (x.ndim - 1))


def tiny_model(seed: int = 0, channels: int = 4) -> ModelPatcher:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ModelPatcher(TinyBaseModel(channels))

"""A small flow-matching (rectified flow) model on the digits: the objective of the trainers we serve.

``x_t = (1 - t) * x0 + t * noise``; the model predicts the velocity
``noise - x0`` from ``x_t`` and ``t``; the loss is the mean squared error.
Images are scaled to [-1, 1] and flattened to 64 values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import digits
from .base import Problem, Task, generator


class VelocityMLP(nn.Module):
    """An MLP on the flattened noisy image and sinusoidal features of ``t``."""

    def __init__(self, pixels: int = 64, hidden: int = 128, frequencies: int = 8) -> None:
        super().__init__()
        self.register_buffer("frequencies", math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32))
        self.net = nn.Sequential(
            nn.Linear(pixels + 2 * frequencies, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, pixels),
        )

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.frequencies
        return self.net(torch.cat([x_t, angles.sin(), angles.cos()], dim=1))


def flow_matching_loss(model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """MSE between the predicted and the true velocity ``noise - x0`` at ``x_t``."""
    x_t = (1 - t[:, None]) * x0 + t[:, None] * noise
    return F.mse_loss(model(x_t, t), noise - x0)


class DigitsFlowMatching(Problem):
    """Flow-matching training of :class:`VelocityMLP` on all ten digit classes.

    The evaluation loss uses the held-out images with a fixed draw of ``t``
    and noise, so it is deterministic.
    """

    def __init__(self, seed: int, batch_size: int = 128) -> None:
        data = digits.split()
        self.train_x = data.train_images.flatten(1) * 2 - 1
        self.test_x = data.test_images.flatten(1) * 2 - 1
        fixed = torch.Generator().manual_seed(1234)
        self.test_t = torch.rand(len(self.test_x), generator=fixed)
        self.test_noise = torch.randn(self.test_x.shape, generator=fixed)
        torch.manual_seed(seed)
        self.model = VelocityMLP()
        self.params = list(self.model.parameters())
        self.batches = digits.Batches(len(self.train_x), batch_size, generator(seed, 1))
        self.stream = generator(seed, 2)

    def train_loss(self, step: int) -> torch.Tensor:
        x0 = self.train_x[self.batches.next()]
        t = torch.rand(len(x0), generator=self.stream)
        noise = torch.randn(x0.shape, generator=self.stream)
        return flow_matching_loss(self.model, x0, t, noise)

    def eval_loss(self) -> float:
        with torch.no_grad():
            return float(flow_matching_loss(self.model, self.test_x, self.test_t, self.test_noise))


TASK = Task(
    name="diffusion",
    family="diffusion",
    description="flow-matching velocity MLP (27k weights) on the digits, x_t = (1-t) x0 + t noise",
    loss="held-out flow-matching MSE (fixed t and noise)",
    steps=400,
    build=DigitsFlowMatching,
    needs=digits.NEEDS,
)

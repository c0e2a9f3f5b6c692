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
        return self.net(torch.cat([x_t, time_features(t, self.frequencies)], dim=1))


def time_features(t: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """Sinusoidal features of the times ``t`` (one per sample): the sines, then the cosines, of ``t * frequencies``."""
    angles = t[:, None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def flow_matching_loss(model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """MSE between the predicted and the true velocity ``noise - x0`` at ``x_t``.

    ``x0`` and ``noise`` are batches of any shape (flat vectors or images); ``t`` has one time per sample.
    """
    t_x = t.view(-1, *[1] * (x0.dim() - 1))  # broadcast over each sample's values
    x_t = (1 - t_x) * x0 + t_x * noise
    return F.mse_loss(model(x_t, t), noise - x0)


class FlowMatching(Problem):
    """Flow-matching training of ``model``'s trainable parameters on the samples ``train_x``.

    The evaluation loss uses the held-out samples ``test_x`` with a fixed draw
    of ``t`` and noise, so it is deterministic. The seed sets the minibatches
    and the training draws of ``t`` and noise.
    """

    def __init__(
        self, model: nn.Module, train_x: torch.Tensor, test_x: torch.Tensor, seed: int, batch_size: int
    ) -> None:
        self.model, self.train_x, self.test_x = model, train_x, test_x
        self.params = [p for p in model.parameters() if p.requires_grad]
        fixed = torch.Generator().manual_seed(1234)
        self.test_t = torch.rand(len(test_x), generator=fixed)
        self.test_noise = torch.randn(test_x.shape, generator=fixed)
        self.batches = digits.Batches(len(train_x), batch_size, generator(seed, 1))
        self.stream = generator(seed, 2)

    def train_loss(self, step: int) -> torch.Tensor:
        x0 = self.train_x[self.batches.next()]
        t = torch.rand(len(x0), generator=self.stream)
        noise = torch.randn(x0.shape, generator=self.stream)
        return flow_matching_loss(self.model, x0, t, noise)

    def eval_loss(self) -> float:
        with torch.no_grad():
            return float(flow_matching_loss(self.model, self.test_x, self.test_t, self.test_noise))


class DigitsFlowMatching(FlowMatching):
    """Flow-matching training of :class:`VelocityMLP` on all ten digit classes, flattened to 64 values."""

    def __init__(self, seed: int, batch_size: int = 128) -> None:
        data = digits.split()
        torch.manual_seed(seed)
        model = VelocityMLP()
        super().__init__(
            model, data.train_images.flatten(1) * 2 - 1, data.test_images.flatten(1) * 2 - 1, seed, batch_size
        )


TASK = Task(
    name="diffusion",
    family="diffusion",
    description="flow-matching velocity MLP (27k weights) on the digits, x_t = (1-t) x0 + t noise",
    loss="held-out flow-matching MSE (fixed t and noise)",
    steps=400,
    build=DigitsFlowMatching,
    needs=digits.NEEDS,
)

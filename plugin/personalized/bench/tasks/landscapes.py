"""Noisy synthetic landscapes: the kind of test the original optimizers were judged by.

Both landscapes are scaled so that the learning rates LoRA trainers use
(1e-4 to 1e-3) are the ones that matter in a few hundred steps, and both add fresh gradient
noise every step while the reported loss is the noise-free value.
"""

from __future__ import annotations

import torch

from .base import Problem, Task, generator


class NoisyQuadratic(Problem):
    """The noisy quadratic model: an ill-conditioned bowl whose minimum jitters every step.

    ``loss = mean(h * (x / scale - xi)**2)`` with curvatures ``h`` from 0.01 to
    1 and ``xi ~ N(0, noise**2 / h)``, so the gradient noise grows with the
    curvature as in minibatch training. The evaluation loss is ``mean(h * (x / scale)**2)``.
    """

    def __init__(self, seed: int, dim: int = 256, scale: float = 0.1, noise: float = 0.3) -> None:
        self.curvature = torch.logspace(-2, 0, dim)
        self.scale, self.noise = scale, noise
        start = torch.randn(dim, generator=generator(seed, 0)) * scale
        self.params = [torch.nn.Parameter(start)]
        self.noise_stream = generator(seed, 1)

    def _loss(self, shift: torch.Tensor | float) -> torch.Tensor:
        return (self.curvature * (self.params[0] / self.scale - shift) ** 2).mean()

    def train_loss(self, step: int) -> torch.Tensor:
        xi = torch.randn(self.curvature.shape, generator=self.noise_stream) * self.noise / self.curvature.sqrt()
        return self._loss(xi)

    def eval_loss(self) -> float:
        with torch.no_grad():
            return float(self._loss(0.0))


class NoisyRosenbrock(Problem):
    """32 independent Rosenbrock valleys, a ``(32, 2)`` weight, with additive gradient noise.

    The landscape point of each row is its weights times ``zoom``; rows start
    near (-1.5, 2) and have their minimum at (1, 1). Every step adds
    ``noise * <z, point>`` with fresh ``z ~ N(0, 1)``, a gradient noise of
    ``noise`` in landscape units.
    """

    def __init__(self, seed: int, rows: int = 32, zoom: float = 30.0, noise: float = 2.0) -> None:
        jitter = 0.1 * torch.randn(rows, 2, generator=generator(seed, 0))
        start = (torch.tensor([-1.5, 2.0]) + jitter) / zoom
        self.params = [torch.nn.Parameter(start)]
        self.zoom, self.noise = zoom, noise
        self.noise_stream = generator(seed, 1)

    def _point(self) -> torch.Tensor:
        return self.params[0] * self.zoom

    def _loss(self) -> torch.Tensor:
        x, y = self._point().unbind(dim=1)
        return ((1 - x) ** 2 + 100 * (y - x**2) ** 2).mean()

    def train_loss(self, step: int) -> torch.Tensor:
        z = torch.randn(self.params[0].shape, generator=self.noise_stream)
        return self._loss() + self.noise * (z * self._point()).sum(dim=1).mean()

    def eval_loss(self) -> float:
        with torch.no_grad():
            return float(self._loss())


QUADRATIC = Task(
    name="quadratic",
    family="landscapes",
    description="noisy quadratic model, 256 weights, curvatures 0.01 to 1",
    loss="noise-free quadratic value",
    steps=400,
    build=NoisyQuadratic,
    cost=0.15,
)

ROSENBROCK = Task(
    name="rosenbrock",
    family="landscapes",
    description="32 Rosenbrock valleys (a 32x2 weight) with gradient noise",
    loss="noise-free mean Rosenbrock value",
    steps=400,
    build=NoisyRosenbrock,
    cost=0.2,
)

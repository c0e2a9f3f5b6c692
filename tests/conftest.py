"""Shared fixtures and helpers; what the tests know about each optimizer is in ``records.py`` (RECORDS)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import personalized

sys.path.insert(0, str(Path(__file__).parent))


from records import BATCHED, RECORDS, OptimizerRecord, features, fixed_lr, record  # noqa: F401 (shared with the tests)


def step_with_seeded_grads(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], steps: range) -> None:
    """One ``step()`` per step number, each with gradients drawn from a generator seeded by it
    (so a resumed run sees the same gradients as an uninterrupted one)."""
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()


@pytest.fixture(params=personalized.available())
def optimizer_class(request: pytest.FixtureRequest) -> type:
    return personalized.get_optimizer(request.param)


def make_params(seed: int = 0, dtype: torch.dtype = torch.float32) -> list[torch.nn.Parameter]:
    """A small mixed set: a matrix, a vector, a convolution kernel."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(6, 5), (5,), (3, 2, 3, 3)]
    return [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in shapes]


def fill_grads(params: list[torch.nn.Parameter], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import personalized

sys.path.insert(0, str(Path(__file__).parent))

#: Settings that switch on every optional branch of each optimizer.
ALL_FEATURES = {
    "FCompass": dict(weight_decay=0.1, centralization=1.0, clip=1.0),
    "FishMonger": dict(weight_decay=0.1, diff_amp=1.0, centralization=1.0),
    "FARMSCrop": dict(weight_decay=0.1, centralization=1.0, diff_mult=1.0),
    "FARMSCropV2": dict(weight_decay=0.1, centralization=1.0, diff_mult=1.0),
    "FMARSCrop": dict(weight_decay=0.1, centralization=1.0, diff_mult=1.0, moment_centralization=1.0),
    "FMARSCrop_ExMachina": dict(weight_decay=0.1, centralization=1.0, eps_floor=0.0, cautious=True),
    "EnhancedAdafactor": dict(lr=1e-3, relative_step=False, beta1=0.9, weight_decay=0.01),
    "SCORN": dict(focus_ratio=0.1, weight_decay=0.01, orthograd=True, cautious_min=0.0, reset_interval=2),
    "REMASTER": dict(weight_decay=0.01, cautious_min=0.0, reset_interval=2, orthograd=True),
    "PersonaOptimizer": dict(focus_boost=0.05, weight_decay=0.01, reset_interval=2, orthograd=True, cautious_min=0.0),
    "AdamW8bitKahan": dict(weight_decay=0.1, stabilize=True, min_8bit_size=1),
    "Prodigy": dict(weight_decay=0.1, use_bias_correction=True, safeguard_warmup=True),
    "Automagic": dict(lr=1e-4, weight_decay=0.01),
}

#: The optimizers whose update runs on item batches (multi-tensor and compiled paths).
BATCHED = [cls for cls in personalized.optimizers.CATALOGUE if cls.item_batched]


def features(cls: type) -> dict[str, object]:
    """lr 1e-3 and every optional branch of ``cls``'s update switched on."""
    return {"lr": 1e-3, **ALL_FEATURES[cls.__name__]}


def step_with_seeded_grads(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], steps: range) -> None:
    """One ``step()`` per step number, each with gradients drawn from a generator seeded by it
    (so a resumed run sees the same gradients as an uninterrupted one)."""
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()


#: What an optimizer needs besides ``lr`` to take a fixed learning rate. Prodigy
#: steps by about d * lr: from its default d0 = 1e-6 an lr of 1e-4 moves nothing
#: even in float32, so d starts (and in the small-update test stays) at 0.1.
FIXED_LR = {
    "EnhancedAdafactor": dict(relative_step=False, scale_parameter=False),
    "Prodigy": dict(d0=0.1),
}

#: Optimizers whose step reads values on the host by design (prodigyopt computes d there).
HOST_SYNC_BY_DESIGN = {"Prodigy"}


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

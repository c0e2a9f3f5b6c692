"""LoRA adaptation: pretrain an MLP on digits 0-4, freeze it, train only low-rank adapters on 5-9.

Every linear layer gets an adapter ``scale * B @ A`` with ``A`` random,
``B`` zero (so training starts from the pretrained function) and rank 4,
as LoRA trainers do. Only ``A`` and ``B`` are given to the optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import digits
from .base import Problem, Task, generator

#: The classes the base model learns, and the ones the adapters must add.
PRETRAIN_CLASSES = (0, 1, 2, 3, 4)
ADAPT_CLASSES = (5, 6, 7, 8, 9)


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``scale * B @ A``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, stream: torch.Generator) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        bound = 1 / math.sqrt(base.in_features)
        self.lora_A = nn.Parameter((torch.rand(rank, base.in_features, generator=stream) * 2 - 1) * bound)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale


def base_mlp() -> nn.Sequential:
    """The network to adapt: 64 -> 128 -> 128 -> 10, about 26k weights."""
    return nn.Sequential(nn.Linear(64, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 10))


#: The pretrained base models by seed, made once per process (or handed over by :func:`adopt`).
_BASES: dict[int, dict[str, torch.Tensor]] = {}


def pretrained(seed: int) -> dict[str, torch.Tensor]:
    """The base MLP's weights for ``seed`` (see :func:`pretrain`), made once per process."""
    if seed not in _BASES:
        _BASES[seed] = pretrain(seed)
    return _BASES[seed]


def share(seeds: Sequence[int]) -> dict[int, dict[str, torch.Tensor]]:
    """The base models of ``seeds``, to hand to worker processes."""
    return {seed: pretrained(seed) for seed in seeds}


def adopt(bases: object) -> None:
    """Use base models made by :func:`share` (in another process) instead of training them again."""
    assert isinstance(bases, dict)
    _BASES.update(bases)


def pretrain(seed: int, steps: int = 300, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """The base MLP's weights after AdamW training on digits 0-4.

    Label smoothing keeps the base model's logits moderate, as in a large
    pretrained model: without it the unseen classes 5-9 start at a loss near 14.
    """
    data = digits.split(PRETRAIN_CLASSES)
    torch.manual_seed(seed)
    model = base_mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = digits.Batches(len(data.train_labels), batch_size, generator(seed, 10))
    for _ in range(steps):
        index = batches.next()
        logits = model(data.train_images[index].flatten(1))
        loss = F.cross_entropy(logits, data.train_labels[index], label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def with_adapters(model: nn.Sequential, rank: int, alpha: float, stream: torch.Generator) -> nn.Sequential:
    """``model`` with every ``nn.Linear`` replaced by a :class:`LoRALinear` around it."""
    layers = [LoRALinear(layer, rank, alpha, stream) if isinstance(layer, nn.Linear) else layer for layer in model]
    return nn.Sequential(*layers)


class DigitsLoRA(Problem):
    """Trains only the adapters, with cross-entropy over all ten classes, on digits 5-9."""

    def __init__(self, seed: int, rank: int = 4, alpha: float = 4.0, batch_size: int = 64) -> None:
        base = base_mlp()
        base.load_state_dict(pretrained(seed))
        self.model = with_adapters(base, rank, alpha, generator(seed, 2))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.data = digits.split(ADAPT_CLASSES)
        self.batches = digits.Batches(len(self.data.train_labels), batch_size, generator(seed, 1))

    def train_loss(self, step: int) -> torch.Tensor:
        index = self.batches.next()
        logits = self.model(self.data.train_images[index].flatten(1))
        return F.cross_entropy(logits, self.data.train_labels[index])

    def _eval_logits(self) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self.data.test_images.flatten(1))

    def eval_loss(self) -> float:
        return float(F.cross_entropy(self._eval_logits(), self.data.test_labels))

    def metrics(self) -> dict[str, float]:
        return {"accuracy": digits.accuracy(self._eval_logits(), self.data.test_labels)}


TASK = Task(
    name="lora",
    family="lora",
    description="rank-4 LoRA on an MLP pretrained on digits 0-4, adapted to digits 5-9",
    loss="held-out cross-entropy on digits 5-9",
    steps=400,
    build=DigitsLoRA,
    needs=digits.NEEDS,
    prepare=share,
    adopt=adopt,
)

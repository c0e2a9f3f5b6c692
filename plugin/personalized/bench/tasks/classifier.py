"""A small convolutional classifier on the digits: plain supervised training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import digits
from .base import Problem, Task, generator


def small_cnn() -> nn.Module:
    """Two 3x3 convolutions and a linear head, about 10k weights."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.SiLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


class DigitsClassifier(Problem):
    """Cross-entropy training of :func:`small_cnn` on minibatches of the training digits."""

    def __init__(self, seed: int, batch_size: int = 64) -> None:
        self.data = digits.split()
        torch.manual_seed(seed)
        self.model = small_cnn()
        self.params = list(self.model.parameters())
        self.batches = digits.Batches(len(self.data.train_labels), batch_size, generator(seed, 1))

    def train_loss(self, step: int) -> torch.Tensor:
        index = self.batches.next()
        logits = self.model(self.data.train_images[index].unsqueeze(1))
        return F.cross_entropy(logits, self.data.train_labels[index])

    def _eval_logits(self) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self.data.test_images.unsqueeze(1))

    def eval_loss(self) -> float:
        return float(F.cross_entropy(self._eval_logits(), self.data.test_labels))

    def metrics(self) -> dict[str, float]:
        return {"accuracy": digits.accuracy(self._eval_logits(), self.data.test_labels)}


TASK = Task(
    name="classifier",
    family="classifier",
    description="small CNN (10k weights) classifying scikit-learn's 8x8 digits",
    loss="held-out cross-entropy",
    steps=400,
    build=DigitsClassifier,
    needs=digits.NEEDS,
    cost=2.0,
)

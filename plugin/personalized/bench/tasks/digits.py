"""scikit-learn's bundled 8x8 digits (1797 images, shipped inside the package: nothing is downloaded).

Shared by the classifier, diffusion and LoRA tasks. The train/test split is
fixed (it does not change with the run's seed); the seed changes the
initial weights and the order of the minibatches.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..deps import require

#: The (module, pip package) a task on digits needs.
NEEDS = (("sklearn.datasets", "scikit-learn"),)

#: Fraction of each class held out for evaluation.
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    """Images as ``(N, 8, 8)`` floats in [0, 1] and their labels, for training and for evaluation."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


@functools.lru_cache(maxsize=1)
def _load() -> tuple[torch.Tensor, torch.Tensor]:
    datasets = require("sklearn.datasets", "scikit-learn")
    digits = datasets.load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32) / 16.0
    return images, torch.as_tensor(digits.target, dtype=torch.long)


@functools.lru_cache(maxsize=4)
def split(classes: Sequence[int] = tuple(range(10))) -> Split:
    """The digits of ``classes``, split once and for all into training and held-out images."""
    images, labels = _load()
    keep = torch.isin(labels, torch.tensor(list(classes)))
    images, labels = images[keep], labels[keep]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(len(labels) * TEST_FRACTION)
    test, train = order[:cut], order[cut:]
    return Split(images[train], labels[train], images[test], labels[test])


class Batches:
    """Seeded minibatch indices, drawn with replacement: the same sequence for every optimizer."""

    def __init__(self, size: int, batch_size: int, stream: torch.Generator) -> None:
        self.size, self.batch_size, self.stream = size, batch_size, stream

    def next(self) -> torch.Tensor:
        """The indices of the next minibatch."""
        return torch.randint(self.size, (self.batch_size,), generator=self.stream)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of rows whose largest logit is the label."""
    return float((logits.argmax(dim=1) == labels).float().mean())

"""What a bench task is: a seeded problem with a training loss and an evaluation loss."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


class Problem(ABC):
    """One seeded instance of a task: the trainable parameters, the data and the losses.

    Building the same task with the same seed gives the same initial weights
    and the same sequence of minibatches, so every optimizer sees exactly the
    same training run.
    """

    #: The tensors the optimizer trains (for LoRA only the adapters).
    params: list[torch.nn.Parameter]

    @abstractmethod
    def train_loss(self, step: int) -> torch.Tensor:
        """The loss on the minibatch of ``step`` (1-based), with a graph to backpropagate."""

    @abstractmethod
    def eval_loss(self) -> float:
        """The deterministic evaluation loss (held-out data or the noise-free landscape)."""

    def metrics(self) -> dict[str, float]:
        """Extra end-of-run numbers for results.json, e.g. ``{"accuracy": 0.97}``."""
        return {}


@dataclass(frozen=True)
class Task:
    """A named, seeded training problem and how the quick suite runs it."""

    name: str
    #: The module (task family) it comes from: landscapes, classifier, diffusion, lora.
    family: str
    description: str
    #: What the reported loss is.
    loss: str
    #: Optimizer steps of every run (every contender and learning rate gets the same).
    steps: int
    #: ``build(seed)`` makes the problem.
    build: Callable[[int], Problem]
    #: Optional packages the task needs, as (module, pip package) pairs.
    needs: tuple[tuple[str, str], ...] = ()
    #: The time of one step relative to the lora task's (measured on one thread), for the progress estimate.
    cost: float = 1.0
    #: ``prepare(seeds)``: what every run of the task shares and is costly to make (a pretrained
    #: base model), as picklable data; the bench computes it once and hands it to its worker processes.
    prepare: Callable[[Sequence[int]], object] | None = None
    #: ``adopt(data)``: take what ``prepare`` made (in a worker process) instead of making it again.
    adopt: Callable[[object], None] | None = None


def generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one independent random stream of a seeded problem."""
    return torch.Generator().manual_seed(1_000_003 * seed + stream)

"""Small stand-ins for RVC's generator and discriminator, and another module that builds an AdamW.

Copied next to the stand-in training script; the tests import it too, to write
checkpoints for the same networks.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def make_nets() -> tuple[torch.nn.Module, torch.nn.Module]:
    """A tiny generator and discriminator (RVC: SynthesizerTrnMs768NSFsid, MultiPeriodDiscriminatorV2)."""
    net_g = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))
    net_d = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.1), torch.nn.Linear(8, 1))
    return net_g, net_d


def other_adamw(params: Iterable[torch.nn.Parameter], learning_rate: float, betas: list[float], eps: float) -> object:
    """The very call RVC's training script makes, from a module that is not the training script."""
    return torch.optim.AdamW(params, learning_rate, betas=betas, eps=eps)

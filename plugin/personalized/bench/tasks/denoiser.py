"""LoRA on a small pretrained image denoiser: a flow-matching UNet learns digits 0-4, adapters add 5-9.

The base model is a tiny UNet-like velocity model for the 8x8 digits
(convolutions, one self-attention block, the time fed in as a per-channel
scale and shift), pretrained with flow matching on digits 0-4, then frozen.
Every convolution and linear layer gets a rank-4 adapter whose up-projection
starts at zero, as LoCon-style LoRA trainers do, and only the adapters are
trained, with the same flow-matching loss, on digits 5-9: images the base
never saw.

The pretraining does not depend on the run's seed (users all start from the
same checkpoint). It takes a few seconds, so a process makes it once
(:func:`pretrain` is cached), and the bench makes it once for all its worker
processes: :func:`share` (the task's ``prepare``) returns the base weights in
the parent, :func:`adopt` (the task's ``adopt``) hands them to each worker,
whose problems then start from them as they are instead of pretraining again.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import digits
from .base import Task, generator
from .diffusion import FlowMatching, time_features
from .lora import ADAPT_CLASSES, PRETRAIN_CLASSES, LoRALinear



def images(pixels: torch.Tensor) -> torch.Tensor:
    """Digits ``(N, 8, 8)`` in [0, 1] as the model's ``(N, 1, 8, 8)`` inputs in [-1, 1]."""
    return pixels[:, None] * 2 - 1


def modulate(h: torch.Tensor, scale_shift: torch.Tensor) -> torch.Tensor:
    """``h * (1 + scale) + shift`` per sample and channel; ``scale_shift`` is ``(N, 2C)``: the scales, then the shifts."""
    scale, shift = scale_shift[:, :, None, None].chunk(2, dim=1)
    return torch.addcmul(shift, h, 1 + scale)


class Denoiser(nn.Module):
    """A tiny UNet predicting the flow-matching velocity of an 8x8 one-channel image at time ``t``.

    It works on 2x2 patches (the image as 4 channels at 4x4): a convolution
    to ``channels`` at 4x4 (the skip features), a strided convolution down to
    2x2 with twice the channels, a 1x1 convolution and a pixel shuffle back up
    to 4x4, added to the skip features, and an output convolution to the 4
    patch channels, put back together as the 8x8 image. ``t`` enters through
    sinusoidal features and a linear layer; a second linear layer of that
    embedding gives each channel of the two encoder convolutions a scale and a
    shift.
    """

    def __init__(self, channels: int = 24, embedding: int = 32, frequencies: int = 4) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("frequencies", math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32))
        self.time = nn.Linear(2 * frequencies, embedding)
        self.modulation = nn.Linear(embedding, 2 * channels + 4 * channels)
        self.conv_in = nn.Conv2d(4, channels, 3, padding=1)
        self.down = nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1)
        self.conv_out = nn.Conv2d(3 * channels, 4, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        embedding = F.silu(self.time(time_features(t, self.frequencies)))
        outer, inner = self.modulation(embedding).split([2 * self.channels, 4 * self.channels], dim=1)
        skip = F.silu(modulate(self.conv_in(F.pixel_unshuffle(x_t, 2)), outer))
        h = F.silu(modulate(self.down(skip), inner))
        h = torch.cat([skip, F.interpolate(h, scale_factor=2.0, mode="nearest")], dim=1)
        return F.pixel_shuffle(self.conv_out(h), 2)


class LoRAConv2d(nn.Module):
    """A frozen ``nn.Conv2d`` plus a trainable low-rank update, scaled by ``alpha / rank``.

    The update is a convolution to ``rank`` channels with the layer's kernel,
    stride and padding (``lora_down``, random), then a 1x1 convolution back to
    the layer's output channels (``lora_up``, zero, so training starts from
    the pretrained function). Both are linear, so the layer plus the update is
    one convolution with the weight ``W + scale * up @ down``, which is how it
    is computed: one convolution per call instead of three. For ungrouped,
    zero-padded convolutions (all of :class:`Denoiser`'s).
    """

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float, stream: torch.Generator) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        out_channels, in_channels, *kernel = base.weight.shape
        bound = 1 / math.sqrt(base.weight[0].numel())
        self.lora_down = nn.Parameter((torch.rand(rank, in_channels, *kernel, generator=stream) * 2 - 1) * bound)
        self.lora_up = nn.Parameter(torch.zeros(out_channels, rank, 1, 1))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.base
        weight = torch.addmm(base.weight.flatten(1), self.lora_up.flatten(1), self.lora_down.flatten(1), alpha=self.scale)
        return F.conv2d(x, weight.view_as(base.weight), base.bias, base.stride, base.padding, base.dilation)


def add_adapters(model: Denoiser, rank: int, alpha: float, stream: torch.Generator) -> Denoiser:
    """``model``, frozen, with its convolutions and its time modulation wrapped, in place, in adapters.

    As LoRA trainers do for a diffusion UNet's blocks (their convolutions and
    time projections); the shared time embedding ``model.time`` gets none.
    """
    model.requires_grad_(False)
    for name, layer in model.named_children():
        if isinstance(layer, nn.Conv2d):
            setattr(model, name, LoRAConv2d(layer, rank, alpha, stream))
    model.modulation = LoRALinear(model.modulation, rank, alpha, stream)
    return model


def pretraining(batch_size: int = 32) -> FlowMatching:
    """The pretraining problem: a fresh :class:`Denoiser` (fixed init) on digits 0-4, with held-out 0-4 images."""
    data = digits.split(PRETRAIN_CLASSES)
    torch.manual_seed(0)
    return FlowMatching(Denoiser(), images(data.train_images), images(data.test_images), 0, batch_size)


@functools.lru_cache(maxsize=2)
def pretrain(steps: int = 1000, lr: float = 3e-3) -> dict[str, torch.Tensor]:
    """The base denoiser's weights after ``steps`` of AdamW on :func:`pretraining` (computed once per process).

    Deterministic and the same for every seed. Fewer ``steps`` give a weaker
    base quickly (for tests); the bench uses the default.
    """
    problem = pretraining()
    optimizer = torch.optim.AdamW(problem.params, lr=lr)
    for step in range(1, steps + 1):
        loss = problem.train_loss(step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {key: value.detach().clone() for key, value in problem.model.state_dict().items()}


#: The base weights :func:`adopt` was given (made in another process); None: :func:`pretrain` here.
_ADOPTED: dict[str, torch.Tensor] | None = None


def pretrained() -> dict[str, torch.Tensor]:
    """The base weights every problem starts from: the adopted ones, else :func:`pretrain`'s."""
    return _ADOPTED if _ADOPTED is not None else pretrain()


def share(seeds: Sequence[int]) -> dict[str, torch.Tensor]:
    """The base weights to hand to the worker processes (the task's ``prepare``): one for all ``seeds``."""
    return pretrained()


def adopt(state: object) -> None:
    """Start every later problem of this process from ``state`` (made by :func:`share`), as it is."""
    global _ADOPTED
    assert isinstance(state, dict)
    _ADOPTED = state


class DenoiserLoRA(FlowMatching):
    """Trains only the adapters of the pretrained :class:`Denoiser`, with flow matching, on digits 5-9.

    The seed sets the adapters' random down-projections, the minibatches and
    the draws of ``t`` and noise; the evaluation loss is on the held-out 5-9
    images with a fixed draw of ``t`` and noise.
    """

    def __init__(self, seed: int, rank: int = 4, alpha: float = 4.0, batch_size: int = 32) -> None:
        base = Denoiser()
        base.load_state_dict(pretrained())
        model = add_adapters(base, rank, alpha, generator(seed, 3))
        data = digits.split(ADAPT_CLASSES)
        super().__init__(model, images(data.train_images), images(data.test_images), seed, batch_size)


TASK = Task(
    name="denoiser",
    family="diffusion",
    description="rank-4 LoRA on the convolutions and linear layers of a flow-matching UNet "
    "pretrained on digits 0-4, adapted to digits 5-9",
    loss="held-out flow-matching MSE on digits 5-9 (fixed t and noise)",
    steps=400,
    build=DenoiserLoRA,
    needs=digits.NEEDS,
    cost=1.0,
    prepare=share,
    adopt=adopt,
)

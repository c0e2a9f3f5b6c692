"""LoRA on a small pretrained image denoiser: a flow-matching UNet learns digits 0-4, adapters add 5-9.

The base model is a tiny UNet-like velocity model for the 8x8 digits (three
convolutions on 2x2 patches, the time fed in as a per-channel scale and
shift), pretrained with flow matching on digits 0-4, then frozen. Its
convolutions and its time modulation get rank-4 adapters whose
up-projections start at zero, as LoRA (LoCon) trainers do for a diffusion
UNet, and only the adapters are trained, with the same flow-matching loss,
on digits 5-9: images the base never saw.

The pretraining does not depend on the run's seed (users all start from the
same checkpoint) and takes a few seconds, so a process makes it once
(:func:`pretrain` is cached) and the bench makes it once for all its worker
processes: :func:`share` (the task's ``prepare``) returns the base weights in
the parent, and :func:`adopt` (the task's ``adopt``) gives them to each
worker, whose problems then start from them, as they are, instead of
pretraining again.
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
    """``h * (1 + scale) + shift`` per sample and channel; ``scale_shift`` is ``(N, 2C)``: scales, then shifts."""
    scale, shift = scale_shift[:, :, None, None].chunk(2, dim=1)
    return torch.addcmul(shift, h, 1 + scale)


class Denoiser(nn.Module):
    """A tiny UNet predicting the flow-matching velocity of an 8x8 one-channel image at time ``t``.

    It works on 2x2 patches (the image as 4 channels at 4x4). The encoder is a
    convolution to ``channels`` at 4x4 (the skip features) and a strided
    convolution down to 2x2 with four times the channels; the decoder shuffles
    those back up to ``channels`` at 4x4 (depth to space), joins the skip
    features and maps them with an output convolution to the 4 patch channels
    of the 8x8 image. ``t`` enters through sinusoidal features and a linear
    layer (the time embedding); a second linear layer of it gives each channel
    of the two encoder convolutions a scale and a shift.
    """

    def __init__(self, channels: int = 16, embedding: int = 32, frequencies: int = 4) -> None:
        super().__init__()
        self.register_buffer("frequencies", math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32))
        self.time = nn.Linear(2 * frequencies, embedding)
        self.modulated = [2 * channels, 8 * channels]  # the scales and shifts of conv_in's, then down's, outputs
        self.modulation = nn.Linear(embedding, sum(self.modulated))
        self.conv_in = nn.Conv2d(4, channels, 3, padding=1)
        self.down = nn.Conv2d(channels, 4 * channels, 3, stride=2, padding=1)
        self.conv_out = nn.Conv2d(2 * channels, 4, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        embedding = F.silu(self.time(time_features(t, self.frequencies)))
        outer, inner = self.modulation(embedding).split(self.modulated, dim=1)
        skip = F.silu(modulate(self.conv_in(F.pixel_unshuffle(x_t, 2)), outer))
        h = F.silu(modulate(self.down(skip), inner))
        return F.pixel_shuffle(self.conv_out(torch.cat([skip, F.pixel_shuffle(h, 2)], dim=1)), 2)


class LoRAConv2d(nn.Module):
    """A frozen ``nn.Conv2d`` plus a trainable low-rank update, scaled by ``alpha / rank``.

    The update is a convolution to ``rank`` channels with the layer's kernel,
    stride and padding (``lora_down``, random), then a 1x1 convolution back to
    the layer's output channels (``lora_up``, zero, so training starts from
    the pretrained function). Both are linear, so the layer plus the update is
    one convolution with the weight ``W + scale * up @ down``, which is how it
    is computed: one convolution instead of three, whose fixed cost dominates
    on feature maps this small. For ungrouped, zero-padded convolutions (all
    of :class:`Denoiser`'s).
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
        update = (self.lora_up.flatten(1), self.lora_down.flatten(1))
        weight = torch.addmm(base.weight.flatten(1), *update, alpha=self.scale).view_as(base.weight)
        return F.conv2d(x, weight, base.bias, base.stride, base.padding, base.dilation)


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


def pretraining(batch_size: int = 64) -> FlowMatching:
    """The pretraining problem: a fresh :class:`Denoiser` (fixed init) on digits 0-4, with held-out 0-4 images."""
    data = digits.split(PRETRAIN_CLASSES)
    torch.manual_seed(0)
    return FlowMatching(Denoiser(), images(data.train_images), images(data.test_images), 0, batch_size)


@functools.cache
def pretrain(steps: int = 500, lr: float = 1e-2) -> dict[str, torch.Tensor]:
    """The base denoiser's weights after ``steps`` of AdamW on :func:`pretraining` (computed once per process).

    Deterministic and the same for every seed. Fewer ``steps`` give a weaker
    base quickly (for tests); the bench uses the default. It runs on one
    thread: a model this small trains fastest there, and far slower on
    several when other processes share the cores.
    """
    problem = pretraining()
    optimizer = torch.optim.AdamW(problem.params, lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for step in range(1, steps + 1):
            loss = problem.train_loss(step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
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

    def __init__(self, seed: int, rank: int = 4, alpha: float = 4.0, batch_size: int = 16) -> None:
        base = Denoiser()
        base.load_state_dict(pretrained())
        model = add_adapters(base, rank, alpha, generator(seed, 3))
        data = digits.split(ADAPT_CLASSES)
        super().__init__(model, images(data.train_images), images(data.test_images), seed, batch_size)


TASK = Task(
    name="denoiser",
    family="diffusion",
    description="rank-4 LoRA on a flow-matching conv UNet (17k weights) pretrained on digits 0-4, adapted to 5-9",
    loss="held-out flow-matching MSE on digits 5-9 (fixed t and noise)",
    steps=400,
    build=DenoiserLoRA,
    needs=digits.NEEDS,
    cost=2.5,
    prepare=share,
    adopt=adopt,
)

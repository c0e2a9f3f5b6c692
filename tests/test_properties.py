"""Properties of the blocks (``personalized/blocks.py``, and the families' own in ``personalized/optimizers/``)
and of a step's refusals, over generated inputs.

The recordings pin each optimizer's numbers on one small problem; these tests let hypothesis
look for shapes and values that break what every update relies on: a batch of n items gives
what n single tensors give, clipping is idempotent, stochastic rounding is unbiased, and
complex or integer tensors are refused before anything changes. Examples are bounded and
derandomized (no example database), so a run is fast and the same every time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import personalized
from personalized import blocks
from personalized.optimizers import adafactor, farms, scorn

from conftest import make_params, record

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)

#: About 1e15: magnitudes whose squares, summed over an item, stay finite in float32 (the overflow
#: of larger gradients is :func:`blocks.square_safe`'s business, tested with the optimizers at 1e20).
LARGEST = 2.0**50


@st.composite
def item_batches(draw: st.DrawFn, count: int = 2) -> list[Tensor]:
    """``count`` float32 item batches of one shape ``(n, *item)``, n from 1 to 4, items of up to 4 dimensions
    of 1 to 3 elements, with values from 0 and subnormals up to :data:`LARGEST`."""
    n = draw(st.integers(1, 4))
    item = tuple(draw(st.lists(st.integers(1, 3), max_size=4)))
    size = n * math.prod(item)
    values = st.floats(-LARGEST, LARGEST, width=32, allow_nan=False)
    return [torch.tensor(draw(st.lists(values, min_size=size, max_size=size))).view(n, *item) for _ in range(count)]


def with_second_moment(x: Tensor, g: Tensor) -> Tensor:
    """Adafactor's normalisation of ``g`` from a fresh (factored, for matrices) second moment of ``x``'s shape."""
    return adafactor.adafactor_normalize_(adafactor.second_moment_state(x), g, 0.9, 1e-30)


def difference_base(x: Tensor, g: Tensor) -> Tensor:
    """The FARMSCropV2 family's difference base, from a difference EMA ``x.abs()``, and that EMA after the step."""
    ema = x.abs()
    base = farms.difference_fisher_base_(ema, g, 1.0, 0.9, 0.5, 2.0, 1e-6)
    return torch.cat([base, ema])


#: Every block that reduces over items, as a function of two item batches of one shape.
PER_ITEM: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "rms": lambda x, g: blocks.rms(x),
    "item_norm": lambda x, g: blocks.item_norm(x),
    "item_amax": lambda x, g: blocks.item_amax(x),
    "rms_by_norm": lambda x, g: blocks.rms_by_norm(x),
    "square_safe": lambda x, g: blocks.square_safe(x * 1e20),
    "rms_clip_scaled": lambda x, g: blocks.rms_clip_scaled(x, 0.5, 1e-8),
    "rms_clip_relative": lambda x, g: blocks.rms_clip_relative(x, 0.5),
    "rms_cap": lambda x, g: blocks.rms_cap(x),
    "norm_clip": lambda x, g: blocks.norm_clip(x, 0.5),
    "centralize": lambda x, g: blocks.centralize(x, 1.0),
    "moment_centralize": lambda x, g: farms.moment_centralize(x, 1.0),
    "cautious_mask": blocks.cautious_mask,
    "cautious_floor": lambda x, g: blocks.cautious_floor(x, g, 0.1, 1e-3, strict=False),
    "adaptive_eps": lambda x, g: blocks.adaptive_eps(g, 1e-6, 1e-2, 1e-30),
    "mars_correction": lambda x, g: farms.mars_correction(g, g - x, 5e-4, 0.9, 1.0),
    "difference_fisher_base_": difference_base,
    "orthogonalize": lambda x, g: blocks.orthogonalize(x, g, 1e-30),
    "orthogonalize in bf16": lambda x, g: blocks.orthogonalize(x.bfloat16(), g.bfloat16(), 1e-30),
    "orthogonalize_guarded": lambda x, g: blocks.orthogonalize_guarded(x, g, 1e-30),
    "scion_lmo": lambda x, g: scorn.scion_lmo(g),
    "adafactor_normalize_": with_second_moment,
}


@pytest.mark.parametrize("name", list(PER_ITEM))
@PROPERTY
@given(batch=item_batches())
def test_a_batch_of_n_items_equals_n_single_tensors(name: str, batch: list[Tensor]) -> None:
    """The multi-tensor path stacks same-shape parameters; the plain path runs ``p[None]``."""
    block = PER_ITEM[name]
    x, g = batch
    together = block(x.clone(), g.clone())
    one_by_one = [block(x[i : i + 1].clone(), g[i : i + 1].clone()) for i in range(x.shape[0])]
    # Each item's result is the same rows of the output (two stacked outputs: per half).
    halves = together.shape[0] // x.shape[0]
    expected = torch.cat([single[h : h + 1] for h in range(halves) for single in one_by_one])
    torch.testing.assert_close(together, expected, rtol=1e-6, atol=0, equal_nan=True)


#: Each clip as a function of its input, the size it limits, the limit, and how far inputs are scaled up.
CLIPS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor], float, float]] = {
    "rms_clip_relative": (lambda x: blocks.rms_clip_relative(x, 0.5), blocks.rms, 0.5, 1.0),
    "rms_clip_scaled at clip 1": (lambda x: blocks.rms_clip_scaled(x, 1.0, 1e-8), blocks.rms, 1.0, 1.0),
    "rms_cap": (blocks.rms_cap, blocks.rms, 1.0, 1e20),
    "norm_clip": (lambda x: blocks.norm_clip(x, 0.5), blocks.item_norm, 0.5, 1.0),
    # The squares of a sum of two such tensors, summed over the item, stay finite.
    "square_safe": (blocks.square_safe, lambda x: blocks.item_sum((x + x).square()), blocks.FLOAT32_MAX, 1e20),
}


@pytest.mark.parametrize("name", list(CLIPS))
@PROPERTY
@given(batch=item_batches(count=1))
def test_clipping_twice_equals_clipping_once(name: str, batch: list[Tensor]) -> None:
    clip, size, limit, scale = CLIPS[name]
    once = clip(batch[0] * scale)
    torch.testing.assert_close(clip(once), once, rtol=4 * torch.finfo(torch.float32).eps, atol=0)
    assert (size(once) <= limit * (1 + 1e-6)).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@PROPERTY
@given(data=st.data())
def test_stochastic_rounding_is_unbiased_and_lands_on_a_neighbour(dtype: torch.dtype, data: st.DataObject) -> None:
    largest = torch.finfo(dtype).max
    values = data.draw(st.lists(st.floats(-largest, largest, width=32), min_size=1, max_size=8), label="values")
    source = torch.tensor(values)
    nearest = source.to(dtype)
    away = torch.where(source > nearest.float(), math.inf, -math.inf).to(dtype)
    other = torch.nextafter(nearest, away)
    low, high = torch.minimum(nearest, other).float(), torch.maximum(nearest, other).float()
    draws = 4096
    target = torch.empty(draws, len(values), dtype=dtype)
    copy_source = source.expand(draws, -1).contiguous()
    with torch.random.fork_rng():
        torch.manual_seed(data.draw(st.integers(0, 2**31 - 1), label="torch seed"))
        blocks.copy_stochastic_(target, copy_source)
    landed = target.float()
    exact = nearest.float() == source
    assert torch.equal(landed[:, exact], copy_source[:, exact])
    assert ((landed == low) | (landed == high)).all()
    # Rounding up happens with probability (source - low) / (high - low): the mean is the source,
    # within 6 standard deviations of a mean of ``draws`` such choices.
    spacing = high - low
    error = (landed.double().mean(0) - source.double()).abs()
    assert (error <= 6 * 0.5 / math.sqrt(draws) * spacing.double()).all(), (values, error / spacing)


@PROPERTY
@given(
    name=st.sampled_from(personalized.available()),
    dtype=st.sampled_from([torch.complex64, torch.complex128]),
    shape=st.lists(st.integers(1, 3), max_size=3).map(tuple),
    position=st.integers(0, 3),
)
def test_complex_parameters_are_refused_at_construction(
    name: str, dtype: torch.dtype, shape: tuple[int, ...], position: int
) -> None:
    params = make_params()
    params.insert(position, torch.nn.Parameter(torch.zeros(shape, dtype=dtype)))
    cls = personalized.get_optimizer(name)
    with pytest.raises(TypeError, match=rf"{name}: parameter {position} of param group 0 is {dtype}; complex"):
        cls(params, **record(name).features)


@PROPERTY
@given(
    name=st.sampled_from(personalized.available()),
    dtype=st.sampled_from([torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool]),
    shape=st.lists(st.integers(1, 3), max_size=3).map(tuple),
    position=st.integers(0, 3),
)
def test_integer_and_boolean_parameters_are_refused_and_nothing_moves(
    name: str, dtype: torch.dtype, shape: tuple[int, ...], position: int
) -> None:
    params: list[Tensor] = list(make_params())
    bad = torch.ones(shape, dtype=dtype)
    params.insert(position, bad)
    optimizer = personalized.get_optimizer(name)(params, **record(name).features)
    for p in params:
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in params]
    with pytest.raises(TypeError, match=rf"{name}: parameter {position} of param group 0 has dtype {dtype}"):
        optimizer.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert not any(optimizer.state[p] for p in params if p is not bad)

"""Item batches: the layout that lets one update definition serve one tensor or many.

Every update rule of the package is written for a *batch of items*: tensors
of shape ``(n, *shape)`` holding ``n`` parameters of the same shape, with
per-tensor reductions taken over the item dimensions (see
:mod:`personalized.blocks`). The plain path hands ``_update`` a batch of one
(``p[None]``, a view, so nothing is copied). The multi-tensor path
(``foreach=True``) stacks same-shape parameters and runs the very same code
once for all of them.

For the multi-tensor path the state of a batch lives in one stacked tensor
per key, and ``optimizer.state[p][key]`` is a view of row ``i`` of it: the
state is stored once, checkpoints see ordinary per-parameter tensors, and
updating one parameter on its own (gradient release) writes into the same
memory. :class:`StackedState` keeps those stacks between steps and rebuilds
them whenever the per-parameter entries were replaced (checkpoint loaded,
state edited by hand) or the batch changed (some parameters without a gradient
this step). Until every parameter of an old stack has moved to a new one, the
old stack stays alive: a step after such a change may briefly hold part of
the state twice.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

#: Largest number of elements stacked into one batch: 1M elements, 4 MiB per float32
#: temporary, so a step's peak memory grows by a few tens of MiB at most (a dozen live
#: temporaries); a LoRA's hundreds of small tensors still make only a few batches. Larger
#: same-shape groups are split; a larger tensor runs alone.
FOREACH_MAX_ELEMENTS = 1 << 20


def batch_key(p: Tensor, state: dict[str, Any]) -> tuple[Any, ...]:
    """Parameters with equal keys can be updated together: same shape, dtypes, gradient
    layout and device, the same step counters and clocks (the non-tensor state) and state
    dtypes. (So a step's check phase needs to look at one member of each batch.)"""
    kept = tuple([(key, value.dtype if isinstance(value, Tensor) else value) for key, value in state.items()])
    return (p.shape, p.dtype, p.grad.dtype, p.grad.layout, p.device, kept)


def batches(params: Sequence[Tensor], states: Any, together: bool) -> list[list[Tensor]]:
    """Split ``params`` into batches: one per parameter, or (``together``) one per
    :func:`batch_key`, in first-seen order, each at most :data:`FOREACH_MAX_ELEMENTS`."""
    if not together:
        return [[p] for p in params]
    groups: dict[tuple[Any, ...], list[Tensor]] = {}
    for p in params:
        groups.setdefault(batch_key(p, states.get(p, {})), []).append(p)
    result = []
    for members in groups.values():
        size = max(1, FOREACH_MAX_ELEMENTS // members[0].numel())
        result += [members[start : start + size] for start in range(0, len(members), size)]
    return result


def item_shape(value: Tensor, scalar: bool, item_ndim: int) -> tuple[int, ...]:
    """The shape of one item: a per-tensor scalar is kept as ``(1,) * item_ndim`` in a batch
    (so it broadcasts) and as a 0-dim tensor per parameter."""
    return (1,) * item_ndim if scalar else tuple(value.shape)


def as_batch(values: Sequence[Tensor], scalar: bool, item_ndim: int, out: Tensor | None = None) -> Tensor:
    """Stack per-parameter tensors into a batch (a view for a single tensor)."""
    shape = item_shape(values[0], scalar, item_ndim)
    if len(values) == 1:
        return values[0].view(1, *shape) if scalar else values[0].unsqueeze(0)
    if out is not None:
        return torch.stack(list(values), out=out.view(len(values), *values[0].shape)).view(len(values), *shape)
    return torch.stack(list(values)).view(len(values), *shape)


def unbatch(batch: Tensor, scalar: bool) -> tuple[Tensor, ...]:
    """The per-parameter views of a batch (0-dim views for per-tensor scalars)."""
    if scalar:
        batch = batch.view(batch.shape[0])
    return batch.unbind(0)


@dataclass
class StackedState:
    """The stacked state tensors of one multi-tensor batch and their per-parameter views."""

    stacks: dict[str, Tensor] = field(default_factory=dict)
    views: dict[str, tuple[Tensor, ...]] = field(default_factory=dict)

    def matches(self, states: Sequence[dict[str, Any]]) -> bool:
        """Whether every parameter's state still holds exactly this batch's views."""
        keys = [key for key, value in states[0].items() if isinstance(value, Tensor)]
        if sorted(keys) != sorted(self.views):
            return False
        return all(all(map(operator.is_, [state[key] for state in states], self.views[key])) for key in keys)

    def build(self, states: Sequence[dict[str, Any]], scalar_keys: Iterable[str], item_ndim: int) -> None:
        """Stack the parameters' current state tensors and point each parameter at its row."""
        scalar_keys = set(scalar_keys)
        self.stacks, self.views = {}, {}
        for key, value in states[0].items():
            if torch.is_tensor(value):
                stacked = as_batch([state[key] for state in states], key in scalar_keys, item_ndim)
                self.rebind(states, key, stacked, key in scalar_keys)

    def store(self, states: Sequence[dict[str, Any]], key: str, value: Tensor, scalar: bool) -> None:
        """Keep ``value`` as the batch's tensor for ``key``: copied into the existing stack when it
        fits (one kernel, the parameters' views stay valid), else as a new stack."""
        current = self.stacks.get(key)
        if current is not None and current.shape == value.shape and current.dtype == value.dtype:
            current.copy_(value)
        else:
            self.rebind(states, key, value, scalar)

    def rebind(self, states: Sequence[dict[str, Any]], key: str, stacked: Tensor, scalar: bool) -> None:
        """Make ``stacked`` the batch's tensor for ``key``; every parameter's entry becomes its row."""
        self.stacks[key] = stacked
        self.views[key] = unbatch(stacked, scalar)
        for state, view in zip(states, self.views[key]):
            state[key] = view


class Scratch:
    """Reused buffers for stacking gradients and parameters (one per purpose, device and dtype)."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    def get(self, purpose: str, like: Tensor, count: int) -> Tensor:
        """A flat buffer of at least ``count * like.numel()`` elements of ``like``'s dtype and device."""
        size = count * like.numel()
        key = (purpose, like.device, like.dtype)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < size:
            buffer = torch.empty(max(size, min(FOREACH_MAX_ELEMENTS, 2 * size)), dtype=like.dtype, device=like.device)
            self._buffers[key] = buffer
        return buffer[:size]

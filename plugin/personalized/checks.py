"""The check phase of a step: what a step refuses before it changes anything.

A step updates its parameters one batch after another. A parameter that
cannot be updated (a sparse gradient, a complex or integer tensor, optimizer
state left on another device) is therefore refused before the first batch
moves: a refused step leaves every parameter and all optimizer state exactly
as they were. Errors name the parameter the way a user can find it: by name
where the optimizer was given named parameters (``model.named_parameters()``),
else by its index in its param group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

#: The parameter dtypes every optimizer of the package updates.
FLOATING = "float32, float64, bfloat16 or float16"


def parameter_label(param_groups: Iterable[Mapping[str, Any]], p: Tensor) -> str:
    """How an error names ``p``: ``parameter 'name' (1 of param group 0)``, or ``parameter 1 of param group 0``."""
    for group_index, group in enumerate(param_groups):
        for index, member in enumerate(group["params"]):
            if member is p:
                names = group.get("param_names")
                if names:
                    return f"parameter {names[index]!r} ({index} of param group {group_index})"
                return f"parameter {index} of param group {group_index}"
    return "a parameter outside the param groups"


def refuse_complex(owner: str, param_groups: Iterable[Mapping[str, Any]], p: Tensor) -> None:
    """Raise TypeError for a complex parameter (checked at construction and at every step)."""
    if p.is_complex():
        raise TypeError(
            f"{owner}: {parameter_label(param_groups, p)} is {p.dtype}; complex parameters are not supported "
            f"(the per-tensor norms, centralisation and factored moments have no complex form), only real ones "
            f"({FLOATING}): train torch.view_as_real of it as a real parameter instead"
        )


def check_parameter(owner: str, param_groups: Iterable[Mapping[str, Any]], p: Tensor, state: Mapping[str, Any]) -> None:
    """Raise if ``p`` (which has a gradient) cannot be updated by ``owner``: a sparse gradient
    (RuntimeError, as torch's optimizers), a complex or non-floating parameter or gradient
    (TypeError), a gradient or state tensor on another device than ``p`` (ValueError)."""
    grad = p.grad
    if grad.layout != torch.strided:
        raise RuntimeError(
            f"{owner} does not support sparse gradients: {parameter_label(param_groups, p)} has a {grad.layout} "
            "gradient; expected a dense one (nn.Embedding(sparse=False), or torch.optim.SparseAdam for that parameter)"
        )
    refuse_complex(owner, param_groups, p)
    if not p.is_floating_point():
        raise TypeError(
            f"{owner}: {parameter_label(param_groups, p)} has dtype {p.dtype}; only floating-point parameters "
            f"can be trained ({FLOATING})"
        )
    if not grad.is_floating_point():
        raise TypeError(
            f"{owner}: the gradient of {parameter_label(param_groups, p)} has dtype {grad.dtype}; "
            f"expected a floating-point gradient ({FLOATING})"
        )
    if grad.device != p.device:
        raise ValueError(
            f"{owner}: the gradient of {parameter_label(param_groups, p)} is on {grad.device}, the parameter on "
            f"{p.device}; expected both on the same device"
        )
    for key, value in state.items():
        if isinstance(value, Tensor) and value.device != p.device:
            raise ValueError(
                f"{owner}: the optimizer state {key!r} of {parameter_label(param_groups, p)} is on {value.device}, "
                f"the parameter on {p.device}; expected both on the same device. Move the model before the first "
                "step, or reload the optimizer's state_dict after moving it (load_state_dict puts the state on the "
                "parameters' devices)"
            )


def refuse_meta(owner: str, param_groups: Iterable[Mapping[str, Any]], params: Iterable[Tensor], why: str) -> None:
    """Raise ValueError if a parameter of ``params`` or its gradient is on the meta device (no values: ``why``)."""
    for p in params:
        if p.is_meta or (p.grad is not None and p.grad.is_meta):
            raise ValueError(
                f"{owner}: {parameter_label(param_groups, p)} is on the meta device, which holds no values; {why}. "
                "Supported: parameters with storage (CPU, CUDA, ...): materialise the model first (to_empty, then "
                "initialise or load its weights)"
            )

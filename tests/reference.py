"""Replay of the recorded reference trajectories (see tests/refdata/README.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from records import RECORDS
from safetensors.torch import load_file

REFDATA = Path(__file__).parent / "refdata"
NAMES = ("w2d", "b1d", "w4d")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Case:
    name: str
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def optimizer(self) -> str:
        return self.meta["optimizer"]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.meta["constructor_kwargs"])

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.meta["dtype"]]

    @property
    def steps(self) -> int:
        return self.meta["steps_completed"]

    def grads(self, step: int) -> list[torch.Tensor]:
        return [self.tensors[f"step{step:02d}/grad/{n}"] for n in NAMES]

    def params_after(self, step: int) -> list[torch.Tensor]:
        return [self.tensors[f"step{step:02d}/param/{n}"] for n in NAMES]

    def initial_params(self, device: torch.device | str = "cpu") -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(self.tensors[f"init/{n}"].to(device, copy=True)) for n in NAMES]


def cases(optimizers: list[str] | None = None, status: str | None = None) -> list[str]:
    found = []
    for path in sorted(REFDATA.glob("*.json")):
        meta = json.loads(path.read_text())
        if optimizers is not None and meta["optimizer"] not in optimizers:
            continue
        if status is not None and meta["status"] != status:
            continue
        found.append(path.stem)
    return found


#: The optimizers whose recordings the shared tests replay (:attr:`OptimizerRecord.replayed`: those that
#: need only torch), in catalogue order.
TORCH_ONLY = [name for name, record in RECORDS.items() if record.replayed]


def fixed() -> set[str]:
    """The recordings of a defect we fixed (:attr:`OptimizerRecord.fixed_cases`)."""
    return {name for record in RECORDS.values() for name in record.fixed_cases}


def faithful(dtype: str | None = None) -> list[str]:
    """The cases our default behaviour must reproduce (optionally of one dtype: "float32", ...)."""
    names = [name for name in cases(TORCH_ONLY, status="ok") if name not in fixed()]
    return [name for name in names if dtype is None or load_meta(name)["dtype"] == dtype]


def reproducing_settings(name: str) -> dict[str, Any] | None:
    """The keywords with which our optimizer reproduces the recorded case ``name`` (None: none do)."""
    record = RECORDS[load_meta(name)["optimizer"]]
    fix = record.fixed_cases.get(name, {})
    return None if fix is None else {**record.original_settings, **fix}


def load_meta(name: str) -> dict[str, Any]:
    return json.loads((REFDATA / f"{name}.json").read_text())


def load(name: str) -> Case:
    return Case(name, load_meta(name), load_file(str(REFDATA / f"{name}.safetensors")))


def ulps(ours: torch.Tensor, recorded: torch.Tensor) -> torch.Tensor:
    """Distance in units of the last place of ``recorded``'s dtype."""
    step = torch.nextafter(recorded, torch.full_like(recorded, float("inf"))).float() - recorded.float()
    return (ours.float() - recorded.float()).abs() / step


def absolute_error(ours: torch.Tensor, recorded: torch.Tensor) -> torch.Tensor:
    return (ours.float() - recorded.float()).abs()


def replay(
    case: Case,
    optimizer_class: type,
    in_ulps: bool = False,
    copies: int = 1,
    device: torch.device | str = "cpu",
    measure: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    **kwargs: Any,
) -> list[float]:
    """Teacher-forced replay: the max parameter error after each step (absolute, or in ulps).

    Before every step the parameters are reset to the recorded ones and the
    recorded gradient is fed; the optimizer's state follows its own run.
    With ``copies``, the group holds that many copies of the three
    parameters (so same-shape tensors exist) and every copy must follow the
    recording. ``device``: where the parameters live (the recordings are
    compared on the CPU). ``measure(ours, recorded)``: the elementwise error
    (default: absolute, or in ulps with ``in_ulps``).
    """
    if measure is None:
        measure = ulps if in_ulps else absolute_error
    params = [p for _ in range(copies) for p in case.initial_params(device)]
    torch.manual_seed(case.meta.get("global_torch_seed", 1234))
    optimizer = optimizer_class(params, **{**case.kwargs, **kwargs})
    errors = []
    for step in range(case.steps):
        if step > 0:
            for p, recorded in zip(params, case.params_after(step - 1) * copies):
                p.data.copy_(recorded)
        for p, grad in zip(params, case.grads(step) * copies):
            p.grad = grad.to(device, copy=True)
        optimizer.step()
        recorded = case.params_after(step) * copies
        ours = [p.detach().cpu() for p in params]
        errors.append(max(measure(p, r).max().item() for p, r in zip(ours, recorded)))
    return errors

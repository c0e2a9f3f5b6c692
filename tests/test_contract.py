"""What every trainer does with an optimizer, for every class (trainer-hooks section 0)."""

from __future__ import annotations

import pytest
import torch

from conftest import fixed_lr, make_params


def build(cls: type, params: object, **kwargs: object) -> torch.optim.Optimizer:
    return cls(params, **{**fixed_lr(cls), **kwargs})


def step_all(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.ones_like(p)
    optimizer.step()


def test_params_as_generator_dict_values_and_rich_group_dicts(optimizer_class: type) -> None:
    model = torch.nn.Linear(4, 3)
    step_all(build(optimizer_class, model.parameters()))  # RVC: net.parameters()
    weights = {"a": torch.nn.Parameter(torch.randn(3, 2)), "b": torch.nn.Parameter(torch.randn(2))}
    step_all(build(optimizer_class, weights.values()))  # ComfyUI: lora_sd.values()
    first, second = make_params(0), make_params(1)
    groups = [  # OneTrainer / diffusion-pipe style groups with extra keys
        {"params": first, "name": "unet", "lr": 1e-4, "initial_lr": 1e-4},
        {"params": second, "name": "te", "lr": 1e-4, "initial_lr": 1e-4, "weight_decay": 0.0},
    ]
    optimizer = build(optimizer_class, groups)
    step_all(optimizer)
    assert optimizer.param_groups[1]["weight_decay"] == 0.0 and optimizer.param_groups[0]["name"] == "unet"


def test_betas_list_is_copied_not_kept(optimizer_class: type) -> None:
    if "betas" not in optimizer_class.hyperparameter_defaults():
        pytest.skip(f"{optimizer_class.__name__} has no betas")
    count = len(optimizer_class.hyperparameter_defaults()["betas"])
    betas = [0.5] * count
    optimizer = build(optimizer_class, make_params(), betas=betas)
    betas[0] = 0.1  # diffusion-pipe's gradient_release rescales the list in place between instances
    step_all(optimizer)
    assert optimizer.param_groups[0]["betas"] == (0.5,) * count
    assert betas[0] == 0.1 and isinstance(betas, list)


def test_zero_grad_forms(optimizer_class: type) -> None:
    params = make_params()
    optimizer = build(optimizer_class, params)
    step_all(optimizer)
    optimizer.zero_grad(set_to_none=False)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in params)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)
    assert optimizer.step() is None  # no closure, nothing to step: fine

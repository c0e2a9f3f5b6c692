"""Gradient release: the hooked path equals ordinary steps, and gradients are freed during backward."""

from __future__ import annotations

import pytest

import personalized

import reference
from conftest import fill_grads, make_params

PER_PARAMETER = [name for name in personalized.available() if personalized.get_optimizer(name).per_parameter_update]
#: Every float32 recording, replayed with the settings that reproduce it (recordings of defects we
#: fixed: the coerced FishMonger clip, AdamW8bitKahan's no-op decay), as elsewhere.
CASES = [
    name
    for name in reference.cases(PER_PARAMETER, status="ok")
    if reference.load_meta(name)["dtype"] == "float32" and reference.reproducing_settings(name) is not None
]


@pytest.mark.parametrize("name", CASES)
def test_hooked_updates_with_accumulation_match_the_reference(name: str) -> None:
    """Two micro-batches per step; the loss sum(p * g/2) puts exactly g into p.grad."""
    case = reference.load(name)
    params = case.initial_params()
    optimizer = personalized.get_optimizer(case.optimizer)(
        params, **{**case.kwargs, **reference.reproducing_settings(name)}
    )
    release = personalized.GradientRelease(optimizer, accumulation_steps=2)
    worst = 0.0
    for step in range(case.steps):
        if step > 0:
            for p, recorded in zip(params, case.params_after(step - 1)):
                p.data.copy_(recorded)
        for micro in range(2):
            sum((p * (g / 2)).sum() for p, g in zip(params, case.grads(step))).backward()
            if micro == 0:
                assert all(p.grad is not None for p in params)  # still accumulating
        assert all(p.grad is None for p in params)  # released after the update
        worst = max(worst, *((p.detach() - r).abs().max().item() for p, r in zip(params, case.params_after(step))))
    release.remove()
    assert worst <= 1e-6
    if optimizer.group_step:
        assert optimizer.param_groups[0]["step"] == case.steps


def test_group_step_advances_once_per_round_whatever_the_order() -> None:
    params = make_params()
    optimizer = personalized.FMARSCrop_ExMachina(params)
    group = optimizer.param_groups[0]
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        fill_grads(params, 0)
        for index in order:
            optimizer.step_parameter(params[index], group, index)
    assert group["step"] == 3


def test_removed_hooks_leave_gradients_for_an_ordinary_step() -> None:
    params = make_params()
    release = personalized.GradientRelease(personalized.FCompass(params))
    release.remove()
    sum(p.sum() for p in params).backward()
    assert all(p.grad is not None for p in params)


def test_prodigy_refuses_clearly() -> None:
    optimizer = personalized.Prodigy(make_params())
    with pytest.raises(TypeError, match="cannot update one parameter at a time"):
        personalized.GradientRelease(optimizer)
    with pytest.raises(RuntimeError, match="needs every gradient at once"):
        optimizer.step_parameter(optimizer.param_groups[0]["params"][0], optimizer.param_groups[0], 0)


def test_bad_accumulation_steps() -> None:
    with pytest.raises(ValueError, match="accumulation_steps=0 is not allowed"):
        personalized.GradientRelease(personalized.FCompass(make_params()), accumulation_steps=0)

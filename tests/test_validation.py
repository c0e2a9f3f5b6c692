"""Bad hyperparameters and unknown keywords are clear errors, wherever they come from."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import personalized
from personalized.validation import Flag, Number, Numbers

from conftest import FIXED_LR


def bad_values(rule: object) -> list[object]:
    """Values the rule must reject, with the error type expected for each."""
    if isinstance(rule, Numbers):
        return [
            (math.nan,) * rule.count,
            ("0.5",) * rule.count,
            (0.5,) * (rule.count + 1),
            0.5,
            *[(bad,) * rule.count for bad in bad_values(rule.each) if isinstance(bad, float) and not math.isnan(bad)],
        ]
    if isinstance(rule, Flag):
        return ["yes"]
    assert isinstance(rule, Number)
    values: list[object] = [math.nan, "1e-3", True]
    if rule.low > -math.inf:
        values.append(rule.low if rule.low_open else rule.low - 1.0)
    if rule.high < math.inf:
        values.append(rule.high if rule.high_open else rule.high + 1.0)
    return values


def hyperparameter_cases() -> list[tuple[str, str, object]]:
    cases = []
    for name in personalized.available():
        cls = personalized.get_optimizer(name)
        for key, rule in cls.hyperparameter_rules().items():
            cases += [(name, key, value) for value in bad_values(rule)]
    return cases


@pytest.mark.parametrize(("name", "key", "value"), hyperparameter_cases())
def test_bad_value_is_rejected_in_constructor_and_in_every_group(name: str, key: str, value: object) -> None:
    cls = personalized.get_optimizer(name)
    params = [torch.nn.Parameter(torch.zeros(2))]
    errors = (TypeError, ValueError)
    with pytest.raises(errors, match=rf"{name}: constructor: {key}=") as info:
        cls(params, **{key: value})
    assert repr(value) in str(info.value) and "expected" in str(info.value)

    with pytest.raises(errors, match=rf"{name}: param group 1: {key}="):
        cls([{"params": params}, {"params": [torch.nn.Parameter(torch.zeros(2))], key: value}])

    optimizer = cls(params)
    with pytest.raises(errors, match=rf"{name}: param group 1: {key}="):
        optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], key: value})
    assert len(optimizer.param_groups) == 1


def test_error_names_the_allowed_range() -> None:
    with pytest.raises(ValueError, match=r"lr=-0\.1 is not allowed; expected a finite number >= 0"):
        personalized.FCompass([torch.nn.Parameter(torch.zeros(1))], lr=-0.1)
    with pytest.raises(ValueError, match=r"betas=\(0\.9, 1\.0\).*2 numbers, each >= 0 and < 1"):
        personalized.FCompass([torch.nn.Parameter(torch.zeros(1))], betas=(0.9, 1.0))


def test_wrong_types_are_type_errors() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(TypeError, match="lr='1e-3'"):
        personalized.FCompass(params, lr="1e-3")
    with pytest.raises(TypeError, match="cautious='yes'"):
        personalized.FMARSCrop_ExMachina(params, cautious="yes")


def test_unknown_keyword_lists_the_allowed_ones(optimizer_class: type) -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'betass'; allowed keywords: lr, "):
        optimizer_class([torch.nn.Parameter(torch.zeros(1))], betass=(0.9, 0.99))


def test_betas_accept_a_list_and_are_stored_as_a_tuple(optimizer_class: type) -> None:
    if "betas" not in optimizer_class.hyperparameter_defaults():
        pytest.skip(f"{optimizer_class.__name__} has no betas")
    default = inspect.signature(optimizer_class).parameters["betas"].default
    given = [0.5] * len(default)
    optimizer = optimizer_class(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "betas": list(given)}], betas=list(given)
    )
    assert optimizer.defaults["betas"] == tuple(given)
    assert optimizer.param_groups[0]["betas"] == tuple(given)


def test_group_extra_keys_are_kept(optimizer_class: type) -> None:
    group = {"params": [torch.nn.Parameter(torch.zeros(1))], "name": "unet", "initial_lr": 1e-4, "lr": 1e-4}
    optimizer = optimizer_class([group], lr=1e-4, **FIXED_LR.get(optimizer_class.__name__, {}))
    assert optimizer.param_groups[0]["name"] == "unet"
    assert optimizer.param_groups[0]["initial_lr"] == 1e-4


def test_signature_defaults_match_the_originals() -> None:
    """Class names, keywords and defaults are the originals' (spec sections 1-6)."""
    expected = {
        "FCompass": dict(
            lr=1e-3, betas=(0.99, 0.999), amp_fac=2, eps=1e-8, weight_decay=0.1, clip=1.0, centralization=1.0
        ),
        "FishMonger": dict(
            lr=1e-3,
            betas=(0.9, 0.99, 0.999),
            eps=1e-8,
            weight_decay=0.0,
            clip=1.0,
            centralization=1.0,
            diff_amp=1.0,
            diff_amp_beta=0.999,
        ),
        "FARMSCrop": dict(
            lr=1e-4,
            betas=(0.999, 0.9999),
            eps=1e-8,
            weight_decay=1e-6,
            centralization=1.0,
            diff_mult=1.0,
            momentum_beta=0.9999,
            momentum_amp=5.0,
        ),
        "FARMSCropV2": dict(
            lr=1e-4,
            betas=(0.999, 0.9999),
            eps=1e-6,
            weight_decay=0.0,
            centralization=0.0,
            diff_mult=1.0,
            momentum_beta=0.9999,
            momentum_lambda=0.25,
            clip=1.0,
        ),
        "FMARSCrop": dict(
            lr=1e-4,
            betas=(0.999, 0.9999),
            eps=1e-6,
            weight_decay=0.0,
            centralization=0.0,
            moment_centralization=1.0,
            diff_mult=1.0,
            momentum_beta=0.9999,
            momentum_lambda=0.25,
            clip=1.0,
        ),
        "FMARSCrop_ExMachina": dict(
            lr=1.5e-4,
            betas=(0.999, 0.9999),
            eps=1e-6,
            eps2=1e-2,
            eps_floor=None,
            weight_decay=0.01,
            centralization=0.0,
            moment_centralization=1.0,
            diff_mult=1.0,
            momentum_beta=0.9999,
            momentum_lambda=0.25,
            gamma=5e-4,
            clip=1.0,
            cautious=True,
        ),
    }
    for name, defaults in expected.items():
        cls = personalized.get_optimizer(name)
        assert cls.__name__ == name
        speed = {"foreach": True, "compile": False, "bf16_state": False}  # keywords of ours, shared by all
        assert cls([torch.nn.Parameter(torch.zeros(1))]).defaults == {**defaults, **speed}


def test_lr_can_be_passed_positionally(optimizer_class: type) -> None:
    settings = FIXED_LR.get(optimizer_class.__name__, {})
    assert optimizer_class([torch.nn.Parameter(torch.zeros(1))], 0.123, **settings).defaults["lr"] == 0.123

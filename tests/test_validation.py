"""Bad hyperparameters and unknown keywords are clear errors, wherever they come from."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import personalized
from personalized.validation import Flag, Number, Numbers, OneOf

from conftest import RECORDS, fixed_lr, record


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
    if isinstance(rule, OneOf):  # another value of an allowed one's kind, and a string
        near = [not allowed if isinstance(allowed, bool) else allowed + 1 for allowed in rule.values]
        return [*(value for value in near if value not in rule.values), "yes"]
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
    optimizer = optimizer_class([group], **fixed_lr(optimizer_class))
    assert optimizer.param_groups[0]["name"] == "unet"
    assert optimizer.param_groups[0]["initial_lr"] == 1e-4


@pytest.mark.parametrize("name", [name for name, record in RECORDS.items() if record.original_defaults is not None])
def test_signature_defaults_match_the_originals(name: str) -> None:
    """Class names, keywords and defaults are the originals' (spec sections 1-6)."""
    cls = personalized.get_optimizer(name)
    assert cls.__name__ == name
    speed = {"foreach": True, "compile": False, "bf16_state": False}  # keywords of ours, shared by all
    assert cls([torch.nn.Parameter(torch.zeros(1))]).defaults == {**record(cls).original_defaults, **speed}


def test_lr_can_be_passed_positionally(optimizer_class: type) -> None:
    settings = record(optimizer_class).fixed_lr
    assert optimizer_class([torch.nn.Parameter(torch.zeros(1))], 0.123, **settings).defaults["lr"] == 0.123

"""An optimizer is its declarations: keywords with their rules, state with how it starts, and its math.

Rules come from :data:`personalized.validation.SHARED_RULES` for keywords several optimizers share
and from the class's ``own_rules`` for the rest; ``state_keys``, which tells an optimizer's own
checkpoint from another's, is derived from ``state_tensors`` and ``extra_state_keys``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor

import personalized
from personalized.base import WRITTEN_BY, NeededWhen, PersonalizedOptimizer, StateInit, hyperparameters, zeros
from personalized.blocks import item_norm
from personalized.registry import settings_class
from personalized.validation import NON_NEGATIVE, SHARED_RULES, NumberOrInf, OneOf, Rule

from conftest import features, fill_grads, make_params


class HeavyBall(PersonalizedOptimizer):
    """Heavy-ball momentum with an optional trace of |g|: a new optimizer written from declarations alone."""

    own_rules: ClassVar[dict[str, Rule]] = {"inertia": NON_NEGATIVE, "trace": NON_NEGATIVE}
    state_tensors: ClassVar[dict[str, StateInit | NeededWhen]] = {
        "velocity": zeros,
        "trace": NeededWhen(lambda group: group["trace"] > 0, zeros),
    }
    scalar_state_keys: ClassVar[frozenset[str]] = frozenset({"last_norm"})
    extra_state_keys: ClassVar[frozenset[str]] = frozenset({"first_grad"})

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-2, inertia: float = 0.9, trace: float = 0.0, **unexpected: Any
    ) -> None:
        super().__init__(params, hyperparameters(locals()), unexpected)

    def _update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any], s: dict[str, Any]) -> None:
        state["velocity"].mul_(group["inertia"]).add_(grad)
        if group["trace"] > 0:
            state["trace"].mul_(group["trace"]).add_(grad.abs())
        state["last_norm"] = item_norm(grad)
        if "first_grad" not in state:
            state["first_grad"] = grad.clone()
        p.add_(state["velocity"], alpha=-group["lr"])


def test_a_new_optimizer_is_its_declarations() -> None:
    params = make_params()
    optimizer = HeavyBall(params, trace=0.5)
    for seed in range(3):
        fill_grads(params, seed)
        optimizer.step()

    assert HeavyBall.state_keys == {"step", "velocity", "trace", "last_norm", "first_grad"}
    assert all(set(optimizer.state[p]) == HeavyBall.state_keys for p in params)
    assert set(HeavyBall([torch.nn.Parameter(torch.zeros(2))]).hyperparameter_rules()) == {
        "lr",
        "inertia",
        "trace",
        "foreach",
        "compile",
        "bf16_state",
    }
    with pytest.raises(ValueError, match=r"HeavyBall: constructor: inertia=-1\.0 is not allowed; expected .*>= 0"):
        HeavyBall(params, inertia=-1.0)

    # without the name of its writer (an older checkpoint), its state is still recognised as its own
    saved = optimizer.state_dict()
    del saved[WRITTEN_BY]
    resumed = HeavyBall(make_params(), trace=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed.load_state_dict(saved)
    assert resumed.state[resumed.param_groups[0]["params"][0]]["step"] == 3


def test_a_keyword_without_a_rule_is_an_error_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match=r"Sloppy: no validation rule for keyword\(s\) wobble; declare one .*own_rules"):

        class Sloppy(PersonalizedOptimizer):
            def __init__(self, params: Iterable[Any], lr: float = 1e-3, wobble: float = 0.5, **unexpected: Any) -> None:
                super().__init__(params, hyperparameters(locals()), unexpected)


def test_shared_rules_are_for_keywords_that_several_optimizers_take() -> None:
    classes = [settings_class(name) for name in personalized.available()]
    takers = {key: [cls.__name__ for cls in classes if key in cls.hyperparameter_defaults()] for key in SHARED_RULES}
    assert {key: names for key, names in takers.items() if len(names) < 2} == {}
    # and no optimizer repeats a shared rule as its own
    repeated = [
        (cls.__name__, key) for cls in classes for key, rule in cls.own_rules.items() if SHARED_RULES.get(key) == rule
    ]
    assert repeated == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_state_key_an_optimizer_keeps_is_declared(optimizer_class: type, dtype: torch.dtype) -> None:
    params = make_params(dtype=dtype)
    optimizer = optimizer_class(params, **features(optimizer_class))
    for seed in range(4):  # past the resets of the features' reset_interval=2
        fill_grads(params, seed)
        optimizer.step()
    kept = set().union(*(optimizer.state[p] for p in params))
    assert kept <= optimizer_class.state_keys
    assert set(optimizer_class.state_tensors) <= kept  # every declared tensor is started with all features on

    saved = optimizer.state_dict()
    del saved[WRITTEN_BY]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer_class(make_params(dtype=dtype), **features(optimizer_class)).load_state_dict(saved)


def test_one_of_allows_its_values_only_and_tells_why() -> None:
    rule = OneOf((8, 32), "ignored")
    assert rule.accepts(8.0) and rule.normalize(8.0) == 8 and isinstance(rule.normalize(8.0), int)
    assert not rule.accepts(16) and not rule.accepts("8")
    assert not OneOf((1,)).accepts(True) and not OneOf((False,)).accepts(0)
    assert rule.describe() == "8 or 32 (ignored)"
    optimizer_rules = settings_class("AdamW8bitKahan").hyperparameter_rules()
    assert optimizer_rules["amsgrad"].describe() == "False (AdamW8bit has no AMSGrad variant)"
    with pytest.raises(TypeError, match=r"amsgrad=0 is not allowed; expected False"):
        personalized.get_optimizer("AdamW8bitKahan")(make_params(), amsgrad=0)


def test_number_or_inf() -> None:
    rule = NumberOrInf(1.0)
    assert rule.accepts(math.inf) and rule.accepts(1.02) and not rule.accepts(0.5) and not rule.accepts(math.nan)
    assert rule.describe() == "a finite number >= 1, or inf"
    assert settings_class("Prodigy").hyperparameter_rules()["growth_rate"] == rule

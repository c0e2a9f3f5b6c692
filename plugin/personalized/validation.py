"""Hyperparameter rules: every value is checked where it enters (constructor
keywords and every param group), and a bad one is reported with the owner,
the group, the key, the value and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any


@dataclass(frozen=True)
class Number:
    """A real number (not a bool) in a range; ``optional`` also allows None."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    integral: bool = False

    def describe(self) -> str:
        bounds = []
        if self.low > -math.inf:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high < math.inf:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = ("a whole number" if self.integral else "a finite number") + (
            " " + " and ".join(bounds) if bounds else ""
        )
        return text + (", or None" if self.optional else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            return False
        if self.integral and value != int(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def normalize(self, value: Any) -> Any:
        if value is None:
            return None
        return int(value) if self.integral else float(value)


BETA = Number(0.0, 1.0, high_open=True)
UNIT = Number(0.0, 1.0)
NON_NEGATIVE = Number(0.0)
POSITIVE = Number(0.0, low_open=True)
COUNT = Number(0.0, integral=True)


@dataclass(frozen=True)
class Flag:
    """True or False."""

    def describe(self) -> str:
        return "True or False"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def normalize(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class Numbers:
    """A tuple or list of ``count`` numbers, each allowed by ``each``; stored as a tuple."""

    count: int
    each: Number = BETA

    def describe(self) -> str:
        return f"a tuple or list of {self.count} numbers, each {self.each.describe().removeprefix('a finite number ')}"

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, (tuple, list))
            and len(value) == self.count
            and all(self.each.accepts(item) for item in value)
        )

    def normalize(self, value: Any) -> Any:
        return tuple(self.each.normalize(item) for item in value)


Rule = Number | Flag | Numbers

#: Rules for the hyperparameter names the optimizers share. An optimizer may
#: override any of them (for example an ``eps`` used as a floor must be > 0).
COMMON_RULES: dict[str, Rule] = {
    "lr": NON_NEGATIVE,
    "eps": NON_NEGATIVE,
    "eps2": NON_NEGATIVE,
    "eps_floor": Number(0.0, optional=True),
    "weight_decay": NON_NEGATIVE,
    "clip": NON_NEGATIVE,
    "centralization": NON_NEGATIVE,
    "moment_centralization": NON_NEGATIVE,
    "amp_fac": NON_NEGATIVE,
    "diff_amp": NON_NEGATIVE,
    "diff_amp_beta": BETA,
    "diff_mult": NON_NEGATIVE,
    "momentum_beta": BETA,
    "momentum_amp": NON_NEGATIVE,
    "momentum_lambda": NON_NEGATIVE,
    "gamma": NON_NEGATIVE,
    "cautious": Flag(),
    "cautious_min": UNIT,
    "weight_decay_rate": UNIT,
    "amp": NON_NEGATIVE,
    "amp_factor": NON_NEGATIVE,
    "reset_interval": COUNT,
    "reset_increment": COUNT,
    "orthograd": Flag(),
    "constrain": Flag(),
    "stochastic_fp": Flag(),
    "foreach": Flag(),
    "compile": Flag(),
    "bf16_state": Flag(),
    "focus_ratio": NON_NEGATIVE,
    "focus_boost": NON_NEGATIVE,
    "focus_eps": NON_NEGATIVE,
    "spectral_update_scale": NON_NEGATIVE,
}


def rules_for(defaults: Mapping[str, Any], overrides: Mapping[str, Rule]) -> dict[str, Rule]:
    """The rule of every hyperparameter in ``defaults``.

    ``betas`` takes its length from the default; other names come from
    ``overrides`` first, then :data:`COMMON_RULES`.
    """
    rules: dict[str, Rule] = {}
    for key, default in defaults.items():
        if key in overrides:
            rules[key] = overrides[key]
        elif key == "betas":
            rules[key] = Numbers(len(default))
        else:
            rules[key] = COMMON_RULES[key]
    return rules


def reject_unknown(owner: str, unknown: Mapping[str, Any], allowed: Mapping[str, Any]) -> None:
    """Raise TypeError naming unexpected keyword arguments and the allowed ones."""
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        raise TypeError(f"{owner} got unexpected keyword argument(s) {names}; allowed keywords: {', '.join(allowed)}")


def validate(owner: str, where: str, values: dict[str, Any], rules: Mapping[str, Rule]) -> None:
    """Check (and normalise in place) every value that has a rule.

    Keys without a rule (``params``, ``name``, ``initial_lr``...) are left alone.
    """
    for key, rule in rules.items():
        if key not in values:
            continue
        value = values[key]
        if not rule.accepts(value):
            error = TypeError if _wrong_type(rule, value) else ValueError
            raise error(f"{owner}: {where}: {key}={value!r} is not allowed; expected {rule.describe()}")
        values[key] = rule.normalize(value)


def _wrong_type(rule: Rule, value: Any) -> bool:
    if isinstance(rule, Number):
        return value is not None and (isinstance(value, bool) or not isinstance(value, Real))
    if isinstance(rule, Numbers):
        return not isinstance(value, (tuple, list)) or any(_wrong_type(rule.each, item) for item in value)
    return not isinstance(value, bool)

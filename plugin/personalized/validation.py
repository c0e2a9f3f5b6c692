"""Hyperparameter rules: every value is checked where it enters (constructor
keywords and every param group), and a bad one is reported with the owner,
the group, the key, the value and what is allowed.

Where the rules come from: :data:`SHARED_RULES` for the keywords several
optimizers take with one meaning (``lr``, ``weight_decay``...), ``betas`` by
the length of its default, and the optimizer's own ``own_rules`` for every
other keyword (its own names, and shared names it restricts). A keyword with
no rule is a developer's error, raised when the class is defined
(:func:`rules_for`)."""

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


@dataclass(frozen=True)
class NumberOrInf(Number):
    """A finite number in range, or ``inf`` (no limit)."""

    def describe(self) -> str:
        return super().describe() + ", or inf"

    def accepts(self, value: Any) -> bool:
        return (isinstance(value, Real) and value == math.inf) or super().accepts(value)


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


@dataclass(frozen=True)
class OneOf:
    """One of a few values, such as the only values kept for old configs; ``why`` tells the user why (shown
    in the error and by ``personalized show``). ``1`` and ``True`` are different values here."""

    values: tuple[Any, ...]
    why: str = ""

    def describe(self) -> str:
        allowed = " or ".join(repr(value) for value in self.values)
        return f"{allowed} ({self.why})" if self.why else allowed

    def accepts(self, value: Any) -> bool:
        return any(_kind(value) is _kind(allowed) and value == allowed for allowed in self.values)

    def normalize(self, value: Any) -> Any:
        """The allowed value itself (``8.0`` becomes ``8``)."""
        return next(allowed for allowed in self.values if _kind(value) is _kind(allowed) and value == allowed)


def _kind(value: Any) -> type:
    """What a value is for the rules: a bool, a real number, or its own type."""
    if isinstance(value, bool):
        return bool
    return Real if isinstance(value, Real) else type(value)


Rule = Number | Flag | Numbers | OneOf

#: Rules of the keywords that several optimizers take with one meaning. Every other keyword
#: is declared by its optimizer (``own_rules``), which may also restrict a shared one (an
#: ``eps`` used as a floor must be > 0). ``betas`` takes its rule from its default's length.
SHARED_RULES: dict[str, Rule] = {
    "lr": NON_NEGATIVE,
    "eps": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "clip": NON_NEGATIVE,
    "clip_threshold": POSITIVE,
    "centralization": NON_NEGATIVE,
    "moment_centralization": NON_NEGATIVE,
    "diff_mult": NON_NEGATIVE,
    "momentum_beta": BETA,
    "momentum_lambda": NON_NEGATIVE,
    "amp": NON_NEGATIVE,
    "weight_decay_rate": UNIT,
    "reset_interval": COUNT,
    "reset_increment": COUNT,
    "orthograd": Flag(),
    "constrain": Flag(),
    "cautious_min": UNIT,
    "stochastic_fp": Flag(),
    "foreach": Flag(),
    "compile": Flag(),
    "bf16_state": Flag(),
}


def rules_for(owner: str, defaults: Mapping[str, Any], own: Mapping[str, Rule]) -> dict[str, Rule]:
    """The rule of every hyperparameter in ``defaults`` (an optimizer's keywords and their defaults).

    ``own`` (the optimizer's ``own_rules``) first, then ``betas`` by the length of its
    default, then :data:`SHARED_RULES`. A keyword with none of these is a TypeError for
    the optimizer's author, raised when the class is defined.
    """
    rules: dict[str, Rule] = {}
    for key, default in defaults.items():
        if key in own:
            rules[key] = own[key]
        elif key == "betas":
            rules[key] = Numbers(len(default))
        elif key in SHARED_RULES:
            rules[key] = SHARED_RULES[key]
    missing = [key for key in defaults if key not in rules]
    if missing:
        raise TypeError(
            f"{owner}: no validation rule for keyword(s) {', '.join(missing)}; declare one for each in "
            f"{owner}.own_rules (Number, Flag, Numbers, OneOf... from personalized.validation), or use a "
            f"shared keyword ({', '.join(SHARED_RULES)})"
        )
    return rules


def refused(
    owner: str, where: str, key: str, value: Any, expected: str, error: type[Exception] = ValueError
) -> Exception:
    """The error for a value that is not allowed: owner, where, key, value and what is allowed, in the words
    every rule uses (raise it; for checks that involve several hyperparameters, see ``_check_group``)."""
    return error(f"{owner}: {where}: {key}={value!r} is not allowed; expected {expected}")


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
            raise refused(owner, where, key, value, rule.describe(), error)
        values[key] = rule.normalize(value)


def _wrong_type(rule: Rule, value: Any) -> bool:
    if isinstance(rule, Number):
        return value is not None and (isinstance(value, bool) or not isinstance(value, Real))
    if isinstance(rule, Numbers):
        return not isinstance(value, (tuple, list)) or any(_wrong_type(rule.each, item) for item in value)
    if isinstance(rule, OneOf):
        return all(_kind(value) is not _kind(allowed) for allowed in rule.values)
    return not isinstance(value, bool)

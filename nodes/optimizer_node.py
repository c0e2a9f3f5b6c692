"""Node "Personalized Optimizer": pick an optimizer or a preset and adjust its main settings.

Its output (type ``PERSONALIZED_OPTIMIZER``) goes into "Train LoRA (personalized
optimizer)" or "FluxTrainer ARGS (personalized optimizer)".
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ._locate import personalized
from .definitions import Field, NodeDef, Output

#: The socket type that carries an :class:`OptimizerChoice` between nodes.
OPTIMIZER_TYPE = "PERSONALIZED_OPTIMIZER"
#: What the setting widgets show by default: the preset's value is used (the ``summary`` output shows it).
FROM_PRESET = "preset"
#: The numbers the learning_rate and weight_decay widgets of earlier versions (number widgets) used
#: for "the preset's": saved workflows still carry them.
EARLIER_FROM_PRESET = {"learning_rate": 0.0, "weight_decay": -1.0}


@dataclass(frozen=True)
class OptimizerChoice:
    """A preset or optimizer name, and the settings that replace the preset's."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def settings(self) -> tuple[type, dict[str, Any], Any]:
        """The optimizer class, every constructor keyword it gets (lr included), and the preset (or None)."""
        cls, kwargs, preset = personalized.factory.resolve(self.name)
        return cls, {**kwargs, **self.overrides}, preset

    def build(self, params: Iterable[Any]) -> torch.optim.Optimizer:
        """The optimizer for ``params``."""
        return personalized.create_optimizer(params, self.name, **self.overrides)


def choices() -> list[str]:
    """Every optimizer name (using its default preset), then every preset."""
    try:
        presets = personalized.presets.available()
    except ImportError:  # PyYAML missing: the optimizers alone still work
        presets = []
    return [*personalized.available(), *presets]


def inputs() -> list[Field]:
    options = tuple(choices())
    return [
        Field(
            "optimizer",
            "COMBO",
            "An optimizer (with its default settings) or a preset: settings for one trainer or model "
            "family, with the known advice. 'rvc/...' suits voice models, 'chroma/...' Chroma/Flux LoRAs, "
            "'advice/...' fixes one known problem. The 'summary' output shows what was picked.",
            default=options[0],
            options=options,
        ),
        Field(
            "learning_rate",
            "STRING",
            "The learning rate. 'preset' uses the preset's (the 'summary' output shows the number); type a number "
            "such as 2e-4 to use your own. Prodigy expects about 1.0; Automagic only starts from it.",
            default=FROM_PRESET,
        ),
        Field(
            "weight_decay",
            "STRING",
            "How strongly weights are pulled towards zero each step. 'preset' uses the preset's value (shown in "
            "'summary'); type a number such as 0.01 to use your own (0 turns it off).",
            default=FROM_PRESET,
        ),
        Field(
            "betas",
            "STRING",
            "The momentum factors. 'preset' uses the preset's (shown in 'summary'); type e.g. '0.9, 0.99' to use "
            "your own (FishMonger takes three). If training turns NaN at once with the Fisher optimizers, try "
            "'0.9, 0.99'.",
            default=FROM_PRESET,
        ),
        Field(
            "extra_args",
            "STRING",
            "Any other setting, one key=value per line (or separated by |), written as in kohya's "
            "optimizer_args: centralization=0.0, cautious=True, eps=1e-8. Text needs no quotes. "
            "'personalized show <optimizer>' lists every setting and its allowed range.",
            default="",
            multiline=True,
        ),
    ]


def parse_extra_args(text: str) -> dict[str, Any]:
    """``key=value`` items, one per line or ``|``-separated; values are Python literals, other text stays text."""
    settings: dict[str, Any] = {}
    for item in re.split(r"[|\n]", text):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key.isidentifier():
            raise ValueError(f"extra_args: {item!r} is not key=value (for example centralization=0.0)")
        settings[key] = _literal(value)
    return settings


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def from_preset(text: Any) -> bool:
    """Whether a setting widget asks for the preset's value: ``preset`` (any case) or empty."""
    return str(text).strip().casefold() in ("", FROM_PRESET)


def parse_number(name: str, text: Any) -> float | None:
    """A number widget's value; None for the preset's (``preset``, empty, or the number earlier versions used)."""
    if from_preset(text):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number (such as 2e-4) or 'preset'") from None
    return None if value == EARLIER_FROM_PRESET[name] else value


def parse_betas(text: str) -> tuple[float, ...] | None:
    """``'0.9, 0.99'`` (or with spaces, brackets) as a tuple; None for the preset's (``preset`` or empty)."""
    if from_preset(text):
        return None
    parts = [part for part in re.split(r"[\s,]+", text.strip().strip("()[]")) if part]
    try:
        return tuple(float(part) for part in parts)
    except ValueError:
        raise ValueError(f"betas: {text!r} is not a list of numbers like 0.9, 0.99") from None


def describe(choice: OptimizerChoice) -> str:
    """What the choice resolves to, in words: optimizer, preset, every setting, the preset's advice."""
    cls, settings, preset = choice.settings()
    source = f"preset {preset.name}: {preset.description}" if preset else "its own defaults"
    lines = [f"{cls.__name__}, {source}", ", ".join(f"{key}={value!r}" for key, value in settings.items())]
    if choice.overrides:
        lines.append("changed here: " + ", ".join(sorted(choice.overrides)))
    if preset is not None:
        lines.append(preset.advice)
    return "\n".join(lines)


def run(optimizer: str, learning_rate: str, weight_decay: str, betas: str, extra_args: str) -> tuple:
    overrides = parse_extra_args(extra_args)
    lr = parse_number("learning_rate", learning_rate)
    if lr is not None:
        overrides["lr"] = lr
    decay = parse_number("weight_decay", weight_decay)
    if decay is not None:
        overrides["weight_decay"] = decay
    parsed_betas = parse_betas(betas)
    if parsed_betas is not None:
        overrides["betas"] = parsed_betas
    choice = OptimizerChoice(optimizer, overrides)
    choice.build([torch.zeros(1, requires_grad=True)])  # every value is checked now, with the optimizer's message
    return choice, describe(choice)


NODE = NodeDef(
    node_id="PersonalizedOptimizer",
    display_name="Personalized Optimizer",
    description="Pick one of the personalized optimizers or presets and adjust its main settings. "
    "Connect it to 'Train LoRA (personalized optimizer)' or to 'FluxTrainer ARGS (personalized optimizer)'.",
    inputs=inputs,
    outputs=(
        Output(OPTIMIZER_TYPE, "optimizer", "The optimizer and its settings."),
        Output("STRING", "summary", "Every setting the optimizer will get, and the preset's advice."),
    ),
    run=run,
)

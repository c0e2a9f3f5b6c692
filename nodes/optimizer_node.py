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
            "FLOAT",
            "The learning rate. 0 keeps the preset's (shown in 'summary'). Prodigy expects about 1.0; "
            "Automagic only starts from it.",
            default=0.0,
            min=0.0,
            max=10.0,
            step=0.0000001,
        ),
        Field(
            "weight_decay",
            "FLOAT",
            "How strongly weights are pulled towards zero each step. -1 keeps the preset's value.",
            default=-1.0,
            min=-1.0,
            max=10.0,
            step=0.0001,
        ),
        Field(
            "betas",
            "STRING",
            "The momentum factors, e.g. '0.9, 0.99' (FishMonger takes three). Empty keeps the preset's. "
            "If training turns NaN at once with the Fisher optimizers, try '0.9, 0.99'.",
            default="",
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


def parse_betas(text: str) -> tuple[float, ...] | None:
    """``'0.9, 0.99'`` (or with spaces, brackets) as a tuple; None when empty."""
    parts = [part for part in re.split(r"[\s,]+", text.strip().strip("()[]")) if part]
    if not parts:
        return None
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


def run(optimizer: str, learning_rate: float, weight_decay: float, betas: str, extra_args: str) -> tuple:
    overrides = parse_extra_args(extra_args)
    if learning_rate > 0:
        overrides["lr"] = learning_rate
    if weight_decay >= 0:
        overrides["weight_decay"] = weight_decay
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

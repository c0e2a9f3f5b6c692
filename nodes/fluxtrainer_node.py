"""Node "FluxTrainer ARGS (personalized optimizer)": optimizer settings for kijai's ComfyUI-FluxTrainer.

FluxTrainer's "Init Flux LoRA Training" takes an ``optimizer_settings`` input of
type ``ARGS``: a dict it copies onto kohya's arguments (``setattr(args, key,
value)``). Ours carries ``optimizer_type="personalized.<Class>"``, which kohya
imports, and ``optimizer_args`` as ``key=value`` strings that kohya reads with
``ast.literal_eval``. The same keys as FluxTrainer's own "Optimizer Config" node.
"""

from __future__ import annotations

import ast
from typing import Any

from ._locate import personalized
from .definitions import Field, NodeDef, Output
from .optimizer_node import OPTIMIZER_TYPE, OptimizerChoice

#: FluxTrainer's lr_scheduler choices (its OptimizerConfig node).
LR_SCHEDULERS = ("constant", "cosine", "cosine_with_restarts", "polynomial", "constant_with_warmup")


def inputs() -> list[Field]:
    return [
        Field("optimizer", OPTIMIZER_TYPE, "From the 'Personalized Optimizer' node."),
        Field(
            "max_grad_norm",
            "FLOAT",
            "Gradients longer than this are scaled down (gradient clipping); 0 turns it off.",
            default=1.0,
            min=0.0,
            max=1000.0,
            step=0.01,
        ),
        Field(
            "lr_scheduler",
            "COMBO",
            "How the learning rate changes during training.",
            default="constant",
            options=LR_SCHEDULERS,
        ),
        Field(
            "lr_warmup_steps",
            "INT",
            "Steps over which the learning rate grows to its value.",
            default=0,
            min=0,
            max=100000,
        ),
        Field(
            "lr_scheduler_num_cycles",
            "INT",
            "Restarts of cosine_with_restarts.",
            default=1,
            min=1,
            max=1000,
        ),
        Field(
            "lr_scheduler_power",
            "FLOAT",
            "Curve of the polynomial scheduler (1 is a straight line).",
            default=1.0,
            min=0.0,
            max=10.0,
            step=0.01,
        ),
        Field(
            "min_snr_gamma",
            "FLOAT",
            "Lowers the weight of high-loss timesteps; 5 is the paper's value, 0 turns it off.",
            default=5.0,
            min=0.0,
            max=100.0,
            step=0.01,
        ),
        Field(
            "send_learning_rate",
            "BOOLEAN",
            "Also send the preset's learning rate (or the one set on 'Personalized Optimizer'). It then "
            "replaces the learning_rate on FluxTrainer's Init node; turn off to use that one.",
            default=True,
        ),
    ]


def kohya_arg(key: str, value: Any) -> str:
    """``key=value`` as kohya's ``--optimizer_args`` wants it; refuses what kohya or FluxTrainer would misread."""
    text = personalized.exporters.python_literal(value)
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"FluxTrainer (kohya) cannot read {key}={text}; leave {key} at its default") from None
    if "=" in text or "|" in text:
        raise ValueError(f"FluxTrainer (kohya) cannot read {key}={text}: values must not contain '=' or '|'")
    return f"{key}={text}"


def run(
    optimizer: OptimizerChoice,
    max_grad_norm: float,
    lr_scheduler: str,
    lr_warmup_steps: int,
    lr_scheduler_num_cycles: int,
    lr_scheduler_power: float,
    min_snr_gamma: float,
    send_learning_rate: bool,
) -> tuple:
    cls, settings, preset = optimizer.settings()
    if "lr" in settings and settings["lr"] is None:
        raise ValueError(
            f"{preset.name if preset else cls.__name__} has no lr (it picks its own step size), but kohya always "
            "passes FluxTrainer's learning_rate, so FluxTrainer cannot run it without an lr. Choose a preset with "
            "an lr (for Adafactor: chroma/adafactor), or set learning_rate and relative_step=False"
        )
    lr = settings.pop("lr", None)
    optimizer_args = [kohya_arg(key, value) for key, value in settings.items()]
    args: dict[str, Any] = {
        "optimizer_type": f"personalized.{cls.__name__}",
        "max_grad_norm": max_grad_norm,
        "lr_scheduler": lr_scheduler,
        "lr_warmup_steps": lr_warmup_steps,
        "lr_scheduler_num_cycles": lr_scheduler_num_cycles,
        "lr_scheduler_power": lr_scheduler_power,
        "min_snr_gamma": min_snr_gamma if min_snr_gamma != 0.0 else None,
        "optimizer_args": optimizer_args,
    }
    if send_learning_rate and lr is not None:
        args["learning_rate"] = lr
    return args, "|".join(optimizer_args)


NODE = NodeDef(
    node_id="PersonalizedFluxTrainerArgs",
    display_name="FluxTrainer ARGS (personalized optimizer)",
    description="Turns a 'Personalized Optimizer' into optimizer settings for kijai's ComfyUI-FluxTrainer: "
    "connect 'optimizer_settings' to its Init Flux LoRA Training node.",
    inputs=inputs,
    outputs=(
        Output("ARGS", "optimizer_settings", "For the optimizer_settings input of FluxTrainer's Init nodes."),
        Output(
            "STRING",
            "extra_optimizer_args",
            "The same optimizer settings, |-separated, for the extra_optimizer_args box of FluxTrainer's "
            "own Optimizer Config node.",
        ),
    ),
    run=run,
)

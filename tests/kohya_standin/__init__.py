"""What kohya's trainers do with optimizer settings, re-stated for the tests.

Written from reading kohya-ss/sd-scripts 48d368f (2026-02-16), bmaltais/kohya_ss
45088f0 (2026-07-10) and kijai/ComfyUI-FluxTrainer 639b3e8 (2025-02-03); none of
their code is copied.

* sd-scripts ``library/train_util.py``: ``--learning_rate`` is a float (default
  2e-6) and ``--optimizer_args`` a list of strings (``nargs="*"``). ``get_optimizer``
  lower-cases the type only to match its own branches; each argument is
  ``key, value = arg.split("=")`` with ``ast.literal_eval(value)``; a dotted type is
  imported with ``importlib`` and its case-sensitive last part taken with ``getattr``;
  the class is built as ``Class(params, lr=learning_rate, **kwargs)`` and ``train()``
  is called if the instance has one. A LoRA's ``prepare_optimizer_params`` gives each
  group its lr (``unet_lr`` / ``text_encoder_lr``, else ``learning_rate``). The
  default ``--lr_scheduler constant`` is diffusers' constant schedule (a ``LambdaLR``
  of 1).
* kohya_ss GUI: a preset JSON fills the GUI fields of the same names; the
  "Optimizer extra arguments" text must match ``validate_args_setting``; for the run,
  the GUI strips double quotes from it, splits it on whitespace and writes it, with
  ``learning_rate`` and ``optimizer_type``, into a TOML file that sd-scripts reads
  (``read_config_from_file``: ``toml.load``, then argparse on top).
* FluxTrainer's Optimizer Config nodes: ``extra_optimizer_args`` is split on ``|``,
  each piece stripped, empty ones dropped; the list becomes kohya's ``optimizer_args``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import re
from typing import Any

import toml
import torch

#: sd-scripts' own optimizer branches (lower-cased type): ours must never land in one.
BUILT_IN_EXACT = {"lion", "pagedadamw", "pagedadamw32bit", "sgdnesterov", "prodigy", "adafactor", "adamw"}

#: kohya_ss ``common_gui.validate_args_setting``.
GUI_ARGS_PATTERN = r"^(\S+=\S+)( \S+=\S+)*$|^$"


def builtin_branch(optimizer_type: str) -> bool:
    """Whether sd-scripts would route this (lower-cased) type into one of its own branches."""
    return (
        optimizer_type in BUILT_IN_EXACT
        or optimizer_type.endswith("8bit")
        or optimizer_type.startswith("dadapt")
        or optimizer_type.endswith("schedulefree")
    )


def parser() -> argparse.ArgumentParser:
    """The optimizer arguments of sd-scripts' ``add_optimizer_arguments``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--optimizer_type", type=str, default="")
    parser.add_argument("--learning_rate", type=float, default=2.0e-6)
    parser.add_argument("--optimizer_args", type=str, default=None, nargs="*")
    parser.add_argument("--lr_scheduler", type=str, default="constant")
    return parser


def get_optimizer(optimizer_type: str, optimizer_args: list[str], lr: float, params: list) -> Any:
    """sd-scripts' ``get_optimizer`` for a type that is not one of its own."""
    assert not builtin_branch(optimizer_type.lower()), optimizer_type
    kwargs = {}
    for arg in optimizer_args:
        key, value = arg.split("=")
        kwargs[key] = ast.literal_eval(value)
    module_name, _, class_name = optimizer_type.rpartition(".")
    optimizer_class = getattr(importlib.import_module(module_name), class_name)
    optimizer = optimizer_class(params, lr=lr, **kwargs)
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()
    return optimizer


def lora_groups(params: list[torch.nn.Parameter], unet_lr: float, text_encoder_lr: float) -> list[dict[str, Any]]:
    """A LoRA network's ``prepare_optimizer_params``: the U-Net's and the text encoder's groups, each with its lr."""
    half = len(params) // 2
    return [{"params": params[:half], "lr": unet_lr}, {"params": params[half:], "lr": text_encoder_lr}]


#: What the trainers hand back: the optimizer and its lr scheduler.
Built = tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]


def train_network(args: argparse.Namespace, params: list[torch.nn.Parameter]) -> Built:
    """``train_network.py`` with parsed ``args`` and no per-part lrs: the optimizer and its constant scheduler."""
    groups = lora_groups(params, args.learning_rate, args.learning_rate)
    optimizer = get_optimizer(args.optimizer_type, args.optimizer_args or [], args.learning_rate, groups)
    assert args.lr_scheduler == "constant"
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def from_command_line(words: list[str], params: list[torch.nn.Parameter]) -> Built:
    """``accelerate launch train_network.py <words>``."""
    return train_network(parser().parse_args(words), params)


def from_gui_preset(text: str, params: list[torch.nn.Parameter]) -> Built:
    """A kohya_ss user preset loaded into the GUI, then Start training."""
    fields = json.loads(text)
    assert re.match(GUI_ARGS_PATTERN, fields["optimizer_args"])
    config = {
        "optimizer_type": fields["optimizer"],
        "learning_rate": float(fields["learning_rate"]),
        "optimizer_args": str(fields["optimizer_args"]).replace('"', "").split() or None,
    }
    args = parser().parse_args([], namespace=argparse.Namespace(**toml.loads(toml.dumps(config))))
    return train_network(args, params)


def fluxtrainer_optimizer_args(extra_optimizer_args: str) -> list[str]:
    """FluxTrainer: ``extra_optimizer_args`` as kohya's ``optimizer_args``."""
    return [arg.strip() for arg in extra_optimizer_args.strip().split("|") if arg.strip()]


def from_fluxtrainer(
    extra_optimizer_args: str, optimizer_type: str, learning_rate: float, params: list[torch.nn.Parameter]
) -> Built:
    """FluxTrainer's Init node with ``optimizer_type`` (from our ARGS node) and its ``learning_rate`` widget."""
    args = argparse.Namespace(
        optimizer_type=optimizer_type,
        learning_rate=learning_rate,
        optimizer_args=fluxtrainer_optimizer_args(extra_optimizer_args),
        lr_scheduler="constant",
    )
    return train_network(args, params)

"""Turn a preset into what a trainer's config wants pasted.

Every function takes a :class:`personalized.presets.Preset` and returns text
that runs in that trainer as printed. kohya (sd-scripts, musubi-tuner, the
kohya_ss GUI, FluxTrainer), diffusion-pipe and Chroma always pass a learning
rate and run an lr scheduler on it, so a preset without an lr is printed for
them in its fixed-lr form (:func:`with_lr`).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .optimizers.adafactor import RELATIVE_STEP_LR
from .presets import Preset
from .registry import settings_class

#: OneTrainer's optimizer settings live in fixed fields (``TrainOptimizerConfig`` in its
#: modules/util/config/TrainConfig.py); these are the ones our keywords map to. ``betas`` is
#: spread over beta1/beta2/beta3 and an ``eps`` pair over eps/eps2 (see onetrainer_settings).
ONETRAINER_FIELDS = {
    "beta1": "beta1",
    "beta2": "beta2",
    "beta3": "beta3",
    "eps": "eps",
    "eps2": "eps2",
    "weight_decay": "weight_decay",
    "d0": "d0",
    "d_coef": "d_coef",
    "growth_rate": "growth_rate",
    "use_bias_correction": "use_bias_correction",
    "safeguard_warmup": "safeguard_warmup",
    "decouple": "decouple",
    "slice_p": "slice_p",
    "fsdp_in_use": "fsdp_in_use",
    "stochastic_fp": "stochastic_rounding",
    "clip_threshold": "clip_threshold",
    "decay_rate": "decay_rate",
    "scale_parameter": "scale_parameter",
    "relative_step": "relative_step",
    "warmup_init": "warmup_init",
    "min_8bit_size": "min_8bit_size",
    "cautious": "cautious",
}

#: OneTrainer's ``TrainConfig`` config_version (commit 23df383). A file without ``__version`` is
#: read as a version-0 config and migrated, which fails on the nested "optimizer" object.
ONETRAINER_CONFIG_VERSION = 11

#: Where settings without a OneTrainer field travel: ``muon_adam_config["personalized"]``.
ONETRAINER_SIDE_CHANNEL = ("muon_adam_config", "personalized")


#: The formats whose trainers always pass a learning rate: they get presets through :func:`with_lr`.
LR_ALWAYS_PASSED = frozenset({"kohya-args", "kohya_ss-json", "fluxtrainer", "toml"})


def with_lr(preset: Preset) -> Preset:
    """``preset`` as trainers that always pass a learning rate can run it.

    A preset with an lr is returned as it is. One without (EnhancedAdafactor's relative
    step, ``min(1e-2, 1/sqrt(t))``) becomes lr 1e-2 with ``relative_step=False`` and its
    other settings kept (``scale_parameter`` too): under a constant lr schedule the same
    steps, bit for bit, for the first 10,000 steps; after that the step stays at 1e-2
    (times the parameter scale) where the relative step would shrink as ``1/sqrt(t)``.
    Raises ValueError with ``warmup_init=True``, a warm-up only the relative step has.
    """
    if preset.lr is not None:
        return preset
    settings = {**settings_class(preset.optimizer).hyperparameter_defaults(), **preset.hyperparameters}
    if settings.get("warmup_init"):
        raise ValueError(
            f"preset {preset.name}: warmup_init=True needs Adafactor's relative step (no lr), which kohya, "
            "diffusion-pipe and Chroma cannot run (they always pass a learning rate); give the preset an lr "
            "with relative_step: false and warmup_init: false, and use the trainer's lr warm-up"
        )
    return replace(preset, lr=RELATIVE_STEP_LR, hyperparameters={**preset.hyperparameters, "relative_step": False})


def python_literal(value: Any) -> str:
    """``value`` as a Python literal without spaces (kohya's ``ast.literal_eval`` reads it back)."""
    if isinstance(value, (tuple, list)):
        items = ",".join(python_literal(item) for item in value)
        return f"({items},)" if isinstance(value, tuple) and len(value) == 1 else f"({items})"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    return repr(value)


def kohya_optimizer_args(preset: Preset) -> list[str]:
    """``key=value`` strings for ``--optimizer_args`` (no spaces, single-quoted strings: GUI-safe)."""
    return [f"{key}={python_literal(value)}" for key, value in preset.hyperparameters.items()]


def kohya_args(preset: Preset) -> str:
    """A command-line fragment for sd-scripts / musubi-tuner / kohya_ss (``accelerate launch ... <this>``)."""
    preset = with_lr(preset)
    parts = ["--optimizer_type", f"personalized.{preset.optimizer}", "--learning_rate", repr(preset.lr)]
    args = kohya_optimizer_args(preset)
    if args:
        parts += ["--optimizer_args", *args]
    return " ".join(shlex.quote(part) for part in parts)


def kohya_ss_json(preset: Preset) -> str:
    """A kohya_ss GUI preset (copy into ``presets/lora/user_presets/``)."""
    preset = with_lr(preset)
    data = {
        "optimizer": f"personalized.{preset.optimizer}",
        "optimizer_args": " ".join(kohya_optimizer_args(preset)),
        "learning_rate": preset.lr,
    }
    return json.dumps(data, indent=2)


def fluxtrainer_args(preset: Preset) -> str:
    """``extra_optimizer_args`` for kijai's ComfyUI-FluxTrainer, which splits on ``|``.

    The lr is not among them (kohya passes FluxTrainer's ``learning_rate`` itself): set that
    to the preset's lr, or to :func:`with_lr`'s for a preset without one.
    """
    return "|".join(kohya_optimizer_args(with_lr(preset)))


def kohya_ss_preset_path(kohya_ss: Path, preset: Preset) -> Path:
    """Where the kohya_ss GUI looks for user presets: ``presets/lora/user_presets/``."""
    return kohya_ss / "presets" / "lora" / "user_presets" / f"personalized-{preset.name.replace('/', '-')}.json"


def onetrainer_member(optimizer: str) -> str:
    """The OneTrainer ``Optimizer`` enum member our integration adds for ``optimizer``."""
    return "PERSONALIZED_" + optimizer.upper()


def onetrainer_settings(preset: Preset) -> dict[str, Any]:
    """The preset's values in OneTrainer's optimizer field names (betas become beta1/beta2/beta3)."""
    settings: dict[str, Any] = {"optimizer": onetrainer_member(preset.optimizer)}
    for key, value in preset.hyperparameters.items():
        if key == "betas":
            settings.update({f"beta{index}": beta for index, beta in enumerate(value, start=1)})
        elif key == "eps" and isinstance(value, (tuple, list)):
            settings["eps"], settings["eps2"] = value
        elif key in ONETRAINER_FIELDS:
            settings[ONETRAINER_FIELDS[key]] = value
    return settings


def onetrainer_unmapped(preset: Preset) -> list[str]:
    """Hyperparameters that OneTrainer's fixed config has no field for."""
    return [key for key in preset.hyperparameters if key != "betas" and key not in ONETRAINER_FIELDS]


def onetrainer_json(preset: Preset) -> str:
    """A partial OneTrainer config carrying the optimizer and every setting OneTrainer has a field for.

    Settings the preset leaves out are written with the optimizer's defaults: OneTrainer would
    fill them with its own (its on/off fields always have a value). Settings without a field
    travel in ``muon_adam_config["personalized"]``, which only our integration reads.
    """
    defaults = settings_class(preset.optimizer).hyperparameter_defaults()
    defaults.pop("lr", None)
    settings = onetrainer_settings(replace(preset, hyperparameters={**defaults, **preset.hyperparameters}))
    unmapped = {key: preset.hyperparameters[key] for key in onetrainer_unmapped(preset)}
    if unmapped:
        settings[ONETRAINER_SIDE_CHANNEL[0]] = {ONETRAINER_SIDE_CHANNEL[1]: unmapped}
    data: dict[str, Any] = {
        "__version": ONETRAINER_CONFIG_VERSION,
        "optimizer": settings,
        "optimizer_defaults": {settings["optimizer"]: settings},
    }
    if preset.lr is not None:
        data["learning_rate"] = preset.lr
    return json.dumps(data, indent=2)


def toml_value(value: Any) -> str:
    """``value`` in TOML. Arrays mixing whole and fractional numbers are written as floats: the
    ``toml`` package both trainers read their config with refuses arrays of mixed types."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        if any(isinstance(item, float) for item in value):
            value = [float(item) if isinstance(item, int) and not isinstance(item, bool) else item for item in value]
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and value == float("inf"):
        return "inf"
    return repr(value)


def toml(preset: Preset) -> str:
    """An ``[optimizer]`` table for diffusion-pipe and the Chroma trainer (betas as TOML lists).

    ``None`` values are left out: TOML has no null, and the optimizer's default
    then applies. A preset without an lr is written in its fixed-lr form (:func:`with_lr`),
    with a comment saying so.
    """
    lines = [f"# personalized preset {preset.name}: {preset.description}"]
    if preset.lr is None:
        preset = with_lr(preset)
        lines.append(
            f"# lr {preset.lr} with relative_step = false: the relative step's lr for its first 10,000 steps "
            "(these trainers always run an lr scheduler on lr)"
        )
    lines += ["[optimizer]", f"type = {json.dumps('Personalized' + preset.optimizer)}"]
    values = {"lr": preset.lr, **preset.hyperparameters}
    lines += [f"{key} = {toml_value(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines)


def plain_json(preset: Preset) -> str:
    """The preset's constructor call as JSON: optimizer name and keywords."""
    return json.dumps(
        {"preset": preset.name, "optimizer": preset.optimizer, "kwargs": preset.kwargs()},
        indent=2,
    )


#: ``personalized export --to`` formats.
FORMATS: dict[str, Callable[[Preset], str]] = {
    "kohya-args": kohya_args,
    "kohya_ss-json": kohya_ss_json,
    "onetrainer-json": onetrainer_json,
    "toml": toml,
    "json": plain_json,
    "fluxtrainer": fluxtrainer_args,
}

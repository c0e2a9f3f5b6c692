"""Build an optimizer from a preset or an optimizer name in one call.

This is the function the trainer integrations and the ComfyUI nodes use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .registry import canonical_name, get_optimizer


def resolve(spec: str) -> tuple[type, dict[str, Any], Any]:
    """The class, constructor keywords and preset (or None) that ``spec`` names.

    ``spec`` is a preset name (``"rvc/FCompass"``, anything with a ``/``) or an
    optimizer name (``"fcompass"``), which uses that optimizer's
    ``default/<Name>`` preset when presets can be read and its plain
    constructor defaults otherwise. A ``default/<Name>`` file of your own that
    does not load is an error (see :func:`personalized.presets.default_preset`).
    """
    from . import presets

    if "/" in spec:
        preset = presets.load(spec)
        return get_optimizer(preset.optimizer), preset.kwargs(), preset
    name = canonical_name(spec)
    preset = presets.default_preset(name)
    return get_optimizer(name), preset.kwargs() if preset else {}, preset


def create_optimizer(params: Iterable[Any], spec: str, **overrides: Any) -> torch.optim.Optimizer:
    """Build the optimizer ``spec`` names (see :func:`resolve`) for ``params``.

    ``overrides`` replace the preset's values, e.g.
    ``create_optimizer(model.parameters(), "rvc/FCompass", lr=2e-4)``.
    """
    cls, kwargs, _ = resolve(spec)
    return cls(params, **{**kwargs, **overrides})

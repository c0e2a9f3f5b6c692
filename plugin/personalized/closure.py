"""The closure of ``step(closure)``, run the same way by every optimizer of the package and the NaN guards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def closure_loss(closure: Callable[[], Any] | None) -> Any:
    """Run ``closure`` with grad enabled and return its loss; None without a closure.

    A step runs under ``torch.no_grad()``, but a closure recomputes the loss and calls
    ``backward()``, which needs grad (Hugging Face's Adafactor ran it under ``no_grad``, and
    such a closure failed).
    """
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()

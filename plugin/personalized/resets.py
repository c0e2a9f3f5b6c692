"""Step clocks with periodic state resets (REMASTER, SCORN, PersonaOptimizer).

Each clock advances the per-parameter counters in ``state`` and returns the
step number ``t`` to use. A reset is due exactly when the clock returns
``t == 1`` after at least one reset (:func:`reset_now`).
"""

from __future__ import annotations

from typing import Any

from .blocks import soft_beta

#: The state keys :func:`interval_clock` keeps besides ``step``.
INTERVAL_CLOCK_KEYS = frozenset({"steps_since_reset", "times_zero"})
#: The state keys :func:`persona_clock` keeps besides ``step``.
PERSONA_CLOCK_KEYS = frozenset({"steps_since_reset", "times_reset"})


def interval_clock(state: dict[str, Any], group: dict[str, Any]) -> int:
    """REMASTER / SCORN: with resets, ``t`` counts the steps since the last reset.

    ``steps_since_reset`` starts at 1; a reset happens when it reaches
    ``reset_interval + reset_increment * times_zero``. Without resets the
    per-parameter ``step`` is the clock.
    """
    state.setdefault("step", 0)
    if group["reset_interval"] <= 0:
        state["step"] += 1
        return state["step"]
    since = state.setdefault("steps_since_reset", 1)
    times = state.setdefault("times_zero", 0)
    if since // (group["reset_interval"] + group["reset_increment"] * times) > 0:
        state["times_zero"] = times + 1
        since = 1
    state["steps_since_reset"] = since + 1
    return since


def persona_clock(state: dict[str, Any], group: dict[str, Any]) -> int:
    """PersonaOptimizer: ``step`` counts up and restarts at 1 on a reset.

    ``steps_since_reset`` counts from 0; a reset happens when it reaches
    ``reset_interval + reset_increment * times_reset``.
    """
    step = state.get("step", 0) + 1
    if group["reset_interval"] > 0:
        since = state.get("steps_since_reset", 0) + 1
        times = state.get("times_reset", 0)
        threshold = group["reset_interval"] + group["reset_increment"] * times
        if since >= threshold > 0:
            times, step, since = times + 1, 1, 1
        state["steps_since_reset"], state["times_reset"] = since, times
    state["step"] = step
    return step


def reset_now(state: dict[str, Any], step: int, counter: str) -> bool:
    """True at the step where the clock has just restarted (never at the very first step)."""
    return step == 1 and state.get(counter, 0) > 0


def atan2_adopt_scalars(group: dict[str, Any], step: int, state: dict[str, Any]) -> dict[str, Any]:
    """The step's numbers of REMASTER and SCORN: whether the clock has just reset, the debiasing
    of both EMAs (the second with a soft beta), the decoupled decay and the signed lr."""
    beta1, beta2 = group["betas"]
    sq_beta = soft_beta(beta2, step)
    return {
        "reset": reset_now(state, step, "times_zero"),
        "bias_correction": 1 - beta1**step,
        "sq_beta": sq_beta,
        "sq_weight": 1 - sq_beta,
        "sq_bias_correction": (1 - sq_beta**step) ** 0.5,
        "decay": group["weight_decay"] * group["weight_decay_rate"] ** step,
        "lr": group["lr"],
        "neg_lr": -group["lr"],
    }

"""Step clocks with periodic state resets (REMASTER, SCORN, PersonaOptimizer).

Each clock advances the per-parameter counters in ``state`` and returns the
step number ``t`` to use. A reset is due exactly when the clock returns
``t == 1`` after at least one reset (:func:`reset_now`); the update then starts
the declared state again
(:meth:`personalized.base.PersonalizedOptimizer._restart_state`).
"""

from __future__ import annotations

from typing import Any

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

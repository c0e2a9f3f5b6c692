"""personalized.training: optimizer + lr schedule + NaN guard for a given number of steps, without ComfyUI."""

from __future__ import annotations

import math

import pytest
import torch

import personalized
from personalized.training import SCHEDULES, attach_scheduler, build_training_optimizer, lr_factor

from conftest import fill_grads, make_params


def lora_state_dict(seed: int = 0) -> dict[str, torch.nn.Parameter]:
    """Parameters the way ComfyUI's trainer holds them: a dict whose ``values()`` it passes on."""
    return {f"block.{i}.lora": p for i, p in enumerate(make_params(seed))}


def run_like_comfyui(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], steps: int) -> list[float]:
    """ComfyUI's TrainSampler loop: backward, ``step()`` without closure, bare ``zero_grad()``; returns the lrs used."""
    used = []
    for step in range(steps):
        fill_grads(params, seed=step)
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        optimizer.zero_grad()
    return used


def test_builds_a_working_optimizer_from_dict_values() -> None:
    lora = lora_state_dict()
    before = [p.detach().clone() for p in lora.values()]
    optimizer, scheduler = build_training_optimizer(lora.values(), "rvc/FCompass", steps=3)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR)
    run_like_comfyui(optimizer, list(lora.values()), 3)
    assert all(not torch.equal(b, p) for b, p in zip(before, lora.values()))
    assert all(p.grad is None for p in lora.values())
    assert all(torch.isfinite(p).all() for p in lora.values())


def test_preset_values_and_overrides_reach_the_optimizer() -> None:
    preset = personalized.presets.load("rvc/FCompass")
    optimizer, _ = build_training_optimizer(lora_state_dict().values(), "rvc/FCompass", steps=1, lr=2e-4)
    group = optimizer.param_groups[0]
    assert group["lr"] == 2e-4 and group["initial_lr"] == 2e-4
    assert tuple(group["betas"]) == tuple(preset.hyperparameters["betas"])


def test_nan_guard_wraps_with_the_presets_fallbacks_and_skips_bad_steps() -> None:
    lora = lora_state_dict()
    optimizer, _ = build_training_optimizer(lora.values(), "default/FCompass", steps=5)
    assert isinstance(optimizer, personalized.NaNGuard)
    assert optimizer.fallbacks == [dict(f) for f in personalized.presets.load("default/FCompass").fallbacks]
    before = [p.detach().clone() for p in lora.values()]
    for p in lora.values():
        p.grad = torch.full_like(p, math.nan)
    optimizer.step()
    assert optimizer.skipped_steps == 1
    assert all(torch.equal(b, p) for b, p in zip(before, lora.values()))


def test_without_nan_guard_the_optimizer_is_the_plain_class() -> None:
    optimizer, _ = build_training_optimizer(lora_state_dict().values(), "fcompass", steps=2, nan_guard=False)
    assert type(optimizer) is personalized.FCompass


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_attached_schedule_follows_lr_factor_for_every_step(schedule: str) -> None:
    lora = lora_state_dict()
    steps, warmup = 8, 3
    optimizer, scheduler = build_training_optimizer(
        lora.values(), "rvc/FCompass", steps=steps, schedule=schedule, warmup_steps=warmup
    )
    attach_scheduler(optimizer, scheduler)
    base = personalized.presets.load("rvc/FCompass").lr
    used = run_like_comfyui(optimizer, list(lora.values()), steps)
    assert used == pytest.approx([base * lr_factor(s, steps, schedule, warmup) for s in range(steps)])
    assert used[warmup - 1] == pytest.approx(base)


def test_lr_factor_shapes() -> None:
    assert [lr_factor(s, 10, "constant", 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(0, 10, "cosine") == 1.0
    assert lr_factor(5, 10, "cosine") == pytest.approx(0.5)
    assert 0 < lr_factor(9, 10, "cosine") < 0.05
    assert [lr_factor(s, 4, "linear") for s in range(4)] == [1.0, 0.75, 0.5, 0.25]


def test_optimizer_without_lr_allows_only_a_constant_schedule() -> None:
    lora = lora_state_dict()
    optimizer, scheduler = build_training_optimizer(lora.values(), "default/EnhancedAdafactor", steps=3)
    assert scheduler is None
    run_like_comfyui(optimizer, list(lora.values()), 3)
    with pytest.raises(ValueError, match=r"no lr .* schedule 'constant'"):
        build_training_optimizer(lora.values(), "default/EnhancedAdafactor", steps=3, schedule="cosine")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(schedule="step"), "not one of constant, cosine, linear"),
        (dict(steps=0), "steps=0"),
        (dict(warmup_steps=-1), "warmup_steps=-1"),
        (dict(steps=4, warmup_steps=5), "more than steps=4"),
    ],
)
def test_bad_schedule_settings_are_rejected_before_building(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_training_optimizer(lora_state_dict().values(), "fcompass", **{"steps": 10, **settings})


def test_unknown_spec_names_the_problem() -> None:
    with pytest.raises(ValueError, match="Unknown optimizer 'fcompas'"):
        build_training_optimizer(lora_state_dict().values(), "fcompas", steps=1)

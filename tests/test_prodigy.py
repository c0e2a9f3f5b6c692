"""Prodigy: prodigyopt's math bit for bit, plus validation, d and d*lr per group, low precision."""

from __future__ import annotations

import contextlib
import io
import math
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import prodigyopt
import pytest
import torch

import personalized
from personalized.optimizers.prodigy import Prodigy
from personalized.registry import OPTIONAL

from conftest import fill_grads, make_params, record

HALF = [torch.bfloat16, torch.float16]

#: Settings that between them switch on each of prodigyopt's options (FSDP aside).
SETTINGS = {
    "defaults": {},
    "all_features": record("Prodigy").features,
    "coupled_decay": dict(weight_decay=0.1, decouple=False),
    "no_momentum": dict(betas=(0.0, 0.99)),
    "sliced": dict(slice_p=3, growth_rate=1.02, d_coef=2.0, beta3=0.9, d0=1e-4),
}


def fill_pulling_grads(params: list[torch.nn.Parameter], seed: int) -> None:
    """Noisy gradients of ``|p - 1|² / 2``: a steady direction, so d grows."""
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        noise = torch.randn(p.shape, generator=gen)
        p.grad = (p.detach().float() - 1 + 0.1 * noise).to(p.dtype)


def scheduled_run(cls: type, kwargs: dict[str, Any], steps: int, frozen_group: bool = False) -> Iterator[Any]:
    """Yield the optimizer and its parameters after each step (LambdaLR changes lr)."""
    params = make_params()
    groups = [{"params": params[:2]}, {"params": params[2:], **({"lr": 0.0} if frozen_group else {})}]
    optimizer = cls(groups, **kwargs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, 0.2 * (step + 1)))
    for step in range(steps):
        fill_pulling_grads(params, step)
        optimizer.step()
        scheduler.step()
        yield optimizer, params


D_KEYS = ("d", "d_max", "d_numerator", "d_hat", "k")


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality of float32 tensors (NaN included)."""
    return a.dtype == b.dtype == torch.float32 and torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("frozen_group", [False, True])
@pytest.mark.parametrize("setting", SETTINGS)
def test_float32_trajectory_is_bit_identical_to_prodigyopt(setting: str, frozen_group: bool) -> None:
    kwargs = SETTINGS[setting]
    ours = scheduled_run(Prodigy, kwargs, 25, frozen_group)
    theirs = scheduled_run(prodigyopt.Prodigy, kwargs, 25, frozen_group)
    for (optimizer, params), (original, original_params) in zip(ours, theirs):
        assert all(same_bits(p, q) for p, q in zip(params, original_params))
        for group, original_group in zip(optimizer.param_groups, original.param_groups):
            assert [group[key] for key in D_KEYS] == [original_group[key] for key in D_KEYS]
    assert optimizer.param_groups[0]["d"] > optimizer.param_groups[0]["d0"]
    for p, q in zip(params, original_params):
        state, original_state = optimizer.state[p], original.state[q]
        assert state.keys() == original_state.keys() and state["step"] == original_state["step"]
        assert all(same_bits(state[k], original_state[k]) for k in state if k != "step")


def test_d_and_d_lr_are_in_every_group_from_construction_on() -> None:
    params = make_params()
    optimizer = Prodigy([{"params": params[:1], "lr": 0.5}, {"params": params[1:2]}], lr=0.5, d0=1e-5)
    optimizer.add_param_group({"params": params[2:], "lr": 0.0})
    assert [(g["d"], g["d_lr"]) for g in optimizer.param_groups] == [(1e-5, 0.5e-5), (1e-5, 0.5e-5), (1e-5, 0.0)]

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)
    for step in range(5):
        fill_pulling_grads(params, step)
        optimizer.step()
        for group in optimizer.param_groups:
            assert group["d_lr"] == group["d"] * group["lr"]
        scheduler.step()
    assert optimizer.param_groups[0]["d_lr"] > 0.5e-5

    for p in params:  # zero gradients: prodigyopt returns early, lr has changed since
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert [g["d_lr"] for g in optimizer.param_groups] == [g["d"] * g["lr"] for g in optimizer.param_groups]


def test_coupled_weight_decay_leaves_the_callers_gradient_alone() -> None:
    params = make_params()
    optimizer = Prodigy(params, weight_decay=0.1, decouple=False)
    for seed in range(3):
        fill_grads(params, seed)
        given = [p.grad.clone() for p in params]
        optimizer.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(params, given))


def drift(cls: type, dtype: torch.dtype) -> tuple[float, float]:
    """Mean drift of a vector of ones after 60 noisy steps, and the largest single-step change."""
    torch.manual_seed(0)
    start = torch.ones(4096)
    p = torch.nn.Parameter(start.to(dtype, copy=True))
    optimizer = cls([p], lr=1e-4, d0=0.1)
    gen = torch.Generator().manual_seed(1)
    largest = 0.0
    for _ in range(60):
        before = p.detach().float()
        p.grad = (1.0 + 0.1 * torch.randn(start.shape, generator=gen)).to(dtype)
        optimizer.step()
        largest = max(largest, (p.detach().float() - before).abs().max().item())
    return (p.detach().float() - start).mean().item(), largest


@pytest.mark.parametrize("dtype", HALF)
def test_updates_far_below_half_an_ulp_are_not_lost(dtype: torch.dtype) -> None:
    reference, largest_step = drift(Prodigy, torch.float32)
    half_ulp_at_one = 2.0**-8
    assert largest_step < half_ulp_at_one / 10
    assert drift(prodigyopt.Prodigy, dtype)[0] == 0.0  # rounding to nearest loses every update
    assert drift(Prodigy, dtype)[0] == pytest.approx(reference, rel=0.05)


def second_moment(cls: type, dtype: torch.dtype) -> float:
    """The mean of exp_avg_sq after 1000 steps with d fixed at 0.1."""
    p = torch.nn.Parameter(torch.ones(256, dtype=dtype))
    optimizer = cls([p], lr=1e-4, d0=0.1, growth_rate=1.0)
    gen = torch.Generator().manual_seed(1)
    for _ in range(1000):
        p.grad = (1.0 + 0.1 * torch.randn(p.shape, generator=gen)).to(dtype)
        optimizer.step()
    return optimizer.state[p]["exp_avg_sq"].float().mean().item()


def test_bf16_state_is_updated_in_float32() -> None:
    """With beta2=0.999 each update of exp_avg_sq is soon below half a bf16 ulp of it."""
    torch.manual_seed(0)
    reference = second_moment(Prodigy, torch.float32)
    assert second_moment(prodigyopt.Prodigy, torch.bfloat16) < 0.8 * reference  # stalls in bf16 arithmetic
    assert second_moment(Prodigy, torch.bfloat16) == pytest.approx(reference, rel=0.02)


def odd_params(dtype: torch.dtype) -> list[torch.nn.Parameter]:
    shapes = [(), (0,), (7, 1), (6, 5)]
    return [torch.nn.Parameter(torch.randn(s).to(dtype)) for s in shapes] + [
        torch.nn.Parameter(torch.zeros(4, dtype=dtype))
    ]


@pytest.mark.parametrize("dtype", HALF)
def test_low_precision_state_has_prodigyopts_dtype_and_shapes(dtype: torch.dtype) -> None:
    """No float32 copy survives a step: memory between steps is prodigyopt's."""
    ours, theirs = odd_params(dtype), odd_params(dtype)
    optimizer, original = Prodigy(ours, slice_p=2), prodigyopt.Prodigy(theirs, slice_p=2)
    storage = [p.data_ptr() for p in ours]
    for seed in range(3):
        fill_grads(ours, seed)
        fill_grads(theirs, seed)
        grads = [p.grad for p in ours]
        optimizer.step()
        original.step()
        assert all(p.grad is g and p.grad.dtype == dtype for p, g in zip(ours, grads))
    assert [p.data_ptr() for p in ours] == storage and all(p.dtype == dtype for p in ours)
    for p, q in zip(ours, theirs):
        layout = {k: (v.dtype, v.shape) for k, v in optimizer.state[p].items() if torch.is_tensor(v)}
        assert layout == {k: (v.dtype, v.shape) for k, v in original.state[q].items() if torch.is_tensor(v)}
        assert all(torch.isfinite(v.float()).all() for v in optimizer.state[p].values() if torch.is_tensor(v))


SYNC_METHODS = ["item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "cpu"]


@contextlib.contextmanager
def count_host_syncs() -> Iterator[Counter[str]]:
    """Count every Python-level device-to-host read."""
    counts: Counter[str] = Counter()
    saved = {name: getattr(torch.Tensor, name) for name in SYNC_METHODS}

    def counting(name: str) -> Any:
        def method(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return saved[name](*args, **kwargs)

        return method

    try:
        for name in SYNC_METHODS:
            setattr(torch.Tensor, name, counting(name))
        yield counts
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


@pytest.mark.parametrize(
    ("dtype", "kwargs"),
    [(torch.float32, dict(weight_decay=0.1, decouple=False)), (torch.bfloat16, record("Prodigy").features)],
)
def test_step_adds_no_host_sync_to_prodigyopts_own(dtype: torch.dtype, kwargs: dict[str, Any]) -> None:
    ours, theirs = make_params(dtype=dtype), make_params(dtype=dtype)
    optimizer, original = Prodigy(ours, **kwargs), prodigyopt.Prodigy(theirs, **kwargs)
    for seed in range(3):
        fill_grads(ours, seed)
        fill_grads(theirs, seed)
        with count_host_syncs() as our_syncs:
            optimizer.step()
        with count_host_syncs() as their_syncs:
            original.step()
        assert our_syncs == their_syncs and their_syncs["item"] == 2 * len(theirs)


def test_step_hooks_run_once_even_after_a_plain_prodigyopt_was_created() -> None:
    """torch wraps prodigyopt.Prodigy.step with the hooks once one exists; ours must not run them twice."""
    prodigyopt.Prodigy([torch.nn.Parameter(torch.zeros(1))])
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = Prodigy([p])
    calls: list[str] = []
    optimizer.register_step_pre_hook(lambda *args: calls.append("pre"))
    optimizer.register_step_post_hook(lambda *args: calls.append("post"))
    p.grad = torch.ones(3)
    optimizer.step()
    assert calls == ["pre", "post"]


def resumable_run(dtype: torch.dtype, steps: int, resume_at: int | None = None) -> list[torch.Tensor]:
    """A low-precision run with an lr scheduler, optionally saved and reloaded (RNG included) mid-run."""
    torch.manual_seed(0)
    params = make_params(dtype=dtype)
    kwargs = dict(record("Prodigy").features, d0=1e-3)
    optimizer = Prodigy(params, **kwargs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    for step in range(steps):
        if step == resume_at:
            buffer = io.BytesIO()
            saved = [
                [p.detach() for p in params],
                optimizer.state_dict(),
                scheduler.state_dict(),
                torch.get_rng_state(),
            ]
            torch.save(saved, buffer)
            buffer.seek(0)
            saved_params, saved_optimizer, saved_scheduler, rng = torch.load(buffer, weights_only=True)
            params = [torch.nn.Parameter(p.clone()) for p in saved_params]
            optimizer = Prodigy(params, **kwargs)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
            optimizer.load_state_dict(saved_optimizer)
            scheduler.load_state_dict(saved_scheduler)
            torch.set_rng_state(rng)
        fill_pulling_grads(params, step)
        optimizer.step()
        scheduler.step()
    assert all(v.dtype == dtype for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))
    return [p.detach() for p in params]


@pytest.mark.parametrize("dtype", HALF)
def test_low_precision_resume_is_bit_identical(dtype: torch.dtype) -> None:
    straight = resumable_run(dtype, 12)
    assert all(torch.equal(a, b) for a, b in zip(straight, resumable_run(dtype, 12, resume_at=5)))
    assert not all(torch.equal(a, b) for a, b in zip(straight, resumable_run(dtype, 11)))


def test_prodigy_specific_rules() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = Prodigy(params, growth_rate=math.inf, slice_p=11, beta3=None)
    assert optimizer.defaults["growth_rate"] == math.inf and optimizer.defaults["beta3"] is None
    assert type(optimizer.defaults["slice_p"]) is int
    with pytest.raises(ValueError, match=r"growth_rate=0\.5 is not allowed; expected a finite number >= 1, or inf"):
        Prodigy(params, growth_rate=0.5)
    with pytest.raises(ValueError, match=r"slice_p=1\.5 is not allowed; expected a whole number >= 1"):
        Prodigy(params, slice_p=1.5)
    with pytest.raises(ValueError, match=r"eps=0 is not allowed; expected a finite number > 0"):
        Prodigy(params, eps=0)


def test_lr_zero_is_refused_in_the_constructor_but_allowed_in_a_group() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match=r"Prodigy: constructor: lr=0\.0 is not allowed; expected a finite number > 0"):
        Prodigy(params, lr=0)
    assert Prodigy([{"params": params, "lr": 0}]).param_groups[0]["lr"] == 0.0


def test_docstring_first_line_is_the_registry_summary() -> None:
    assert Prodigy.__doc__.splitlines()[0] == OPTIONAL["Prodigy"].summary
    assert personalized.get_optimizer("prodigy") is Prodigy is personalized.Prodigy


def test_missing_prodigyopt_is_an_import_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prodigyopt", None)
    monkeypatch.delitem(sys.modules, "personalized.optimizers.prodigy")
    with pytest.raises(ImportError, match=r"personalized-optimizers\[prodigy\]"):
        personalized.get_optimizer("prodigy")

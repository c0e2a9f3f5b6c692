"""NaNGuard: skipped steps leave everything untouched, fallbacks rescue a real NaN run."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

import personalized

from conftest import fill_grads, make_params, record

PRESET = "advice/FMARSCrop_ExMachina-adaptive-eps"


def fp16_run(guarded: bool, steps: int = 60) -> tuple[list[float], list[torch.Tensor], object]:
    """An fp16 model trained without loss scaling (tiny gradients), every fifth batch masked out.

    With the README's eps_floor=0 the masked (all-zero) gradients make the adaptive
    eps 1e-38 and the update overflows: the run goes NaN at the first masked batch.
    """
    torch.manual_seed(0)
    weight = torch.nn.Parameter((torch.randn(16, 8) * 0.3).half())
    logit_scale = torch.nn.Parameter(torch.full((8,), 4.6).half())
    teacher = torch.randn(16, 8)
    optimizer = personalized.create_optimizer([weight, logit_scale], PRESET)
    if guarded:
        optimizer = personalized.NaNGuard(optimizer, preset=PRESET)
    losses = []
    for step in range(steps):
        x = torch.randn(64, 16)
        keep = 0.0 if step % 5 == 4 else 1.0
        loss = (((x.half() @ weight).float() * logit_scale.float() - 4.6 * (x @ teacher)) ** 2).mean()
        (keep * loss * 1e-6).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses, [weight.detach(), logit_scale.detach()], optimizer


def test_the_original_settings_really_produce_nan() -> None:
    _, params, _ = fp16_run(guarded=False)
    assert not all(torch.isfinite(p).all() for p in params)


def test_guard_skips_and_recovers_with_the_presets_fallbacks() -> None:
    with pytest.warns(RuntimeWarning) as caught:
        losses, params, guard = fp16_run(guarded=True)
    messages = [str(w.message) for w in caught]
    assert messages == [
        f"non-finite values 3 times; applying fallback 1 of 2 from preset {PRESET}: diff_mult=0.0",
        f"non-finite values 3 times; applying fallback 2 of 2 from preset {PRESET}: eps_floor=1e-07",
    ]
    assert all(torch.isfinite(p).all() for p in params)
    assert guard.fallbacks_applied == 2 and guard.skipped_steps == 6
    assert guard.param_groups[0]["eps_floor"] == 1e-7 and guard.param_groups[0]["diff_mult"] == 0.0
    assert losses[-1] < 0.8 * losses[0]


def test_skipped_step_leaves_params_and_state_untouched(optimizer_class: type) -> None:
    params = make_params()
    guard = personalized.NaNGuard(optimizer_class(params, **record(optimizer_class).features))
    for seed in range(3):
        fill_grads(params, seed)
        guard.step()
    before = io.BytesIO()
    torch.save((params, guard.state_dict()), before)
    fill_grads(params, 3)
    params[1].grad[0] = float("nan")
    guard.step()
    after = io.BytesIO()
    torch.save((params, guard.state_dict()), after)
    assert guard.skipped_steps == 1
    saved_params, saved_state = torch.load(io.BytesIO(before.getvalue()), weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(saved_params, params))
    assert str(saved_state["state"]) == str(guard.state_dict()["state"])


def test_guarded_run_is_identical_to_an_unguarded_one_when_nothing_goes_wrong() -> None:
    """The trial update draws no random numbers: bf16 stochastic rounding replays exactly."""
    runs = []
    for guarded in (False, True):
        params = make_params(dtype=torch.bfloat16)
        torch.manual_seed(5)
        optimizer = personalized.FMARSCrop_ExMachina(params, lr=1e-3)
        if guarded:
            optimizer = personalized.NaNGuard(optimizer)
        for seed in range(5):
            fill_grads(params, seed)
            optimizer.step()
        runs.append(params)
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_one_host_sync_per_step_not_per_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    params = make_params() + make_params(1)
    guard = personalized.NaNGuard(personalized.FCompass(params))
    fill_grads(params, 0)
    calls = []
    for name in ("__bool__", "item"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, _o=original, _n=name: calls.append(_n) or _o(self))
    guard.step()
    assert calls == ["__bool__"]


def test_guard_state_survives_a_weights_only_round_trip() -> None:
    params = make_params()
    guard = personalized.NaNGuard(personalized.FCompass(params), preset="default/FCompass", patience=1)
    fill_grads(params, 0)
    params[0].grad[0, 0] = float("inf")
    with pytest.warns(RuntimeWarning, match="applying fallback 1 of 3 from preset default/FCompass: betas"):
        guard.step()
    buffer = io.BytesIO()
    torch.save(guard.state_dict(), buffer)
    buffer.seek(0)
    restored = personalized.NaNGuard(personalized.FCompass(params), preset="default/FCompass", patience=1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert (restored.skipped_steps, restored.fallbacks_applied) == (1, 1)
    assert restored.param_groups[0]["betas"] == (0.9, 0.99)
    with pytest.warns(RuntimeWarning, match="applying fallback 2 of 3"):
        restored.step()


def test_guard_works_with_any_optimizer_and_a_scheduler() -> None:
    params = make_params()
    guard = personalized.NaNGuard(torch.optim.AdamW(params, lr=1e-2))
    scheduler = torch.optim.lr_scheduler.LambdaLR(guard, lambda step: 0.5**step)
    fill_grads(params, 0)
    params[2].grad.fill_(float("nan"))
    before = [p.detach().clone() for p in params]
    guard.step()
    assert guard.skipped_steps == 1 and all(torch.equal(a, b) for a, b in zip(before, params))
    fill_grads(params, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        guard.step()
        scheduler.step()
    assert guard.param_groups[0]["lr"] == 5e-3 and guard.optimizer.param_groups[0]["lr"] == 5e-3


def test_bad_guard_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="patience=0 is not allowed"):
        personalized.NaNGuard(personalized.FCompass(make_params()), patience=0)
    with pytest.raises(TypeError, match=r"wraps a torch\.optim\.Optimizer"):
        personalized.NaNGuard(object())  # type: ignore[arg-type]


def test_meta_parameters_are_refused_with_a_clear_message() -> None:
    p = torch.nn.Parameter(torch.randn(4, 4, device="meta"))
    p.grad = torch.randn(4, 4, device="meta")
    guard = personalized.NaNGuard(personalized.FCompass([p]))
    with pytest.raises(ValueError, match="NaN guard of FCompass: parameter 0 of param group 0 is on the meta device"):
        guard.step()


def test_sparse_gradients_are_checked_for_an_optimizer_that_takes_them() -> None:
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    guard = personalized.NaNGuard(torch.optim.SparseAdam(embedding.parameters(), lr=0.1))
    embedding(torch.tensor([1, 2])).sum().backward()
    before = embedding.weight.detach().clone()
    guard.step()
    assert not torch.equal(before, embedding.weight) and guard.skipped_steps == 0
    guard.zero_grad()
    (embedding(torch.tensor([3])).sum() * float("nan")).backward()
    before = embedding.weight.detach().clone()
    guard.step()
    assert torch.equal(before, embedding.weight) and guard.skipped_steps == 1

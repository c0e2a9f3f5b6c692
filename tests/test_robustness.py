"""Odd inputs, low precision, closures, gradients left alone, no host syncs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

import personalized

from conftest import fill_grads, fixed_lr, make_params, record

HALF = [torch.bfloat16, torch.float16]


def all_finite(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> bool:
    tensors = list(params) + [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return all(torch.isfinite(t.float()).all() for t in tensors)


@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
@pytest.mark.parametrize("features", [False, True])
def test_zero_gradients_keep_params_and_state_finite(optimizer_class: type, dtype: torch.dtype, features: bool) -> None:
    params = make_params(dtype=dtype)
    kwargs = record(optimizer_class).features if features else {}
    optimizer = optimizer_class(params, **kwargs)
    for _ in range(5):
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
    assert all_finite(optimizer, params)


def test_odd_shapes_and_missing_grads(optimizer_class: type) -> None:
    shapes = [(), (0,), (0, 3), (7, 1), (1, 7), (2, 3, 0, 1), (4,)]
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    skipped = torch.nn.Parameter(torch.randn(3, 3))
    optimizer = optimizer_class([*params, skipped], **record(optimizer_class).features)
    before = skipped.detach().clone()
    for seed in range(4):
        fill_grads(params, seed)
        optimizer.step()
    assert skipped.grad is None and torch.equal(skipped, before)
    assert skipped not in optimizer.state
    assert all_finite(optimizer, params)
    assert not torch.equal(params[0].detach(), torch.zeros(())) and params[0].shape == ()


@pytest.mark.parametrize("dtype", [torch.float32, *HALF])
def test_caller_gradient_is_never_modified(optimizer_class: type, dtype: torch.dtype) -> None:
    params = make_params(dtype=dtype)
    optimizer = optimizer_class(params, **record(optimizer_class).features)
    for seed in range(4):
        fill_grads(params, seed)
        given = [p.grad.clone() for p in params]
        optimizer.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(params, given))


def test_closure_runs_with_grad_enabled_and_its_loss_is_returned(optimizer_class: type) -> None:
    params = make_params()
    optimizer = optimizer_class(params)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = sum((p**2).sum() for p in params)
        loss.backward()
        return loss

    with torch.no_grad():
        loss = optimizer.step(closure)
    assert torch.is_tensor(loss) and loss.requires_grad
    assert all(p.grad is not None for p in params)
    assert optimizer.step() is None


@pytest.mark.parametrize("dtype", HALF)
def test_small_low_precision_updates_are_not_lost(optimizer_class: type, dtype: torch.dtype) -> None:
    """At lr 1e-4 each update is far below half an ulp of values near 1; rounding
    to nearest would freeze the parameters, stochastic rounding (or a Kahan
    buffer) keeps the drift."""
    torch.manual_seed(0)
    start = torch.full((4096,), 1.0)  # a vector: centralisation would cancel the mean drift
    reference, low = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone().to(dtype))
    settings = fixed_lr(optimizer_class)
    opt_ref = optimizer_class([reference], **settings)
    opt_low = optimizer_class([low], **settings)
    gen = torch.Generator().manual_seed(1)
    for _ in range(60):
        grad = 1.0 + 0.1 * torch.randn(start.shape, generator=gen)
        reference.grad, low.grad = grad.clone(), grad.to(dtype)
        opt_ref.step()
        opt_low.step()
    drift_ref = (reference.detach() - start).mean().item()
    # A Kahan buffer holds the part of the updates not yet visible in the parameter.
    kahan = opt_low.state[low].get("shift", torch.zeros(()))
    drift_low = (low.detach().float() + kahan.float() - start).mean().item()
    assert abs(drift_ref) > 1e-4
    assert drift_low == pytest.approx(drift_ref, rel=0.1)


@contextlib.contextmanager
def forbid_host_sync() -> Iterator[None]:
    """Make every Python-level device-to-host read raise."""

    def trap(name: str):
        def raiser(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"host sync: Tensor.{name} called inside step()")

        return raiser

    names = ["item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "cpu"]
    saved = {name: getattr(torch.Tensor, name) for name in names}
    try:
        for name in names:
            setattr(torch.Tensor, name, trap(name))
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def test_sync_trap_catches_a_sync() -> None:
    with forbid_host_sync(), pytest.raises(AssertionError, match="host sync"):
        max(1.0, torch.tensor(2.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_step_does_not_synchronise_with_the_host(optimizer_class: type, dtype: torch.dtype) -> None:
    if record(optimizer_class).host_sync:
        pytest.skip(record(optimizer_class).host_sync)
    params = make_params(dtype=dtype) + make_params(seed=1, dtype=dtype)  # same shapes twice: batched
    optimizer = optimizer_class(params, **record(optimizer_class).features)
    for seed in range(3):
        fill_grads(params, seed)
        with forbid_host_sync():
            optimizer.step()


def test_sparse_gradients_are_refused_clearly(optimizer_class: type) -> None:
    p = torch.nn.Parameter(torch.zeros(4, 4))
    p.grad = torch.zeros(4, 4).to_sparse()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        optimizer_class([p]).step()


def test_exmachina_step_counter_is_per_group() -> None:
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    optimizer = personalized.FMARSCrop_ExMachina([{"params": [a]}, {"params": [b]}])
    for _ in range(3):
        a.grad = torch.ones(3)
        optimizer.step()
    assert [g["step"] for g in optimizer.param_groups] == [3, 3]
    assert b not in optimizer.state


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("FishMonger", "diff_amp"),
        ("FARMSCropV2", "diff_mult"),
        ("FMARSCrop", "diff_mult"),
        ("FMARSCrop_ExMachina", "diff_mult"),
    ],
)
def test_difference_term_can_be_switched_on_later(name: str, key: str) -> None:
    """The originals raised KeyError when the difference state appeared after step 1."""
    params = make_params()
    optimizer = personalized.get_optimizer(name)(params, **{key: 0.0})
    fill_grads(params, 0)
    optimizer.step()
    optimizer.param_groups[0][key] = 1.0
    fill_grads(params, 1)
    optimizer.step()
    assert all_finite(optimizer, params)


def copied(value: object) -> object:
    """A deep copy of a state dict's values (meta tensors have no values to copy)."""
    if isinstance(value, dict):
        return {key: copied(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(copied(item) for item in value)
    return value.clone() if torch.is_tensor(value) else value


def same(a: object, b: object) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        if a.is_meta or b.is_meta:
            return (a.shape, a.dtype, a.device) == (b.shape, b.dtype, b.device)
        return a.dtype == b.dtype and torch.equal(a, b)
    return a == b


BAD_INPUTS = {
    "sparse": (RuntimeError, r"does not support sparse gradients: parameter 1 of param group 1 has a torch.sparse_coo"),
    "integer": (TypeError, r"parameter 1 of param group 1 has dtype torch.int64; only floating-point parameters"),
    "state on another device": (
        ValueError,
        r"state '\w+' of parameter 1 of param group 1 is on meta, the parameter on cpu",
    ),
}


@pytest.mark.parametrize("path", ["step", "guarded step", "step_parameter"])
@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_a_refused_step_changes_nothing_and_names_the_parameter(optimizer_class: type, kind: str, path: str) -> None:
    """The bad parameter comes last, in the second group: every other one would have moved before it."""
    if path == "step_parameter" and not optimizer_class.per_parameter_update:
        pytest.skip("Prodigy cannot update one parameter at a time")
    good = [*make_params(), torch.nn.Parameter(torch.randn(2, 2))]
    bad = torch.arange(16).view(4, 4) if kind == "integer" else torch.nn.Parameter(torch.randn(4, 4))
    optimizer = optimizer_class([{"params": good[:3]}, {"params": [good[3], bad]}], **record(optimizer_class).features)
    for seed in range(2):
        fill_grads(good, seed)
        bad.grad = None if kind == "integer" else torch.randn(4, 4)
        optimizer.step()
    fill_grads(good, 2)
    if kind == "sparse":
        bad.grad = torch.randn(4, 4).to_sparse()
    elif kind == "integer":
        bad.grad = torch.ones(4, 4, dtype=torch.int64)
    else:  # the state was left behind when the model moved
        optimizer.state[bad] = {
            key: v.to("meta") if torch.is_tensor(v) else v for key, v in optimizer.state[bad].items()
        }
    before = ([p.detach().clone() for p in [*good, bad]], copied(optimizer.state_dict()))
    error, message = BAD_INPUTS[kind]
    with pytest.raises(error, match=message):
        if path == "step":
            optimizer.step()
        elif path == "guarded step":
            personalized.NaNGuard(optimizer).step()
        else:
            optimizer.step_parameter(bad, optimizer.param_groups[1], 1)
    assert all(torch.equal(a, b) for a, b in zip(before[0], [*good, bad]))
    assert same(before[1], optimizer.state_dict())


def test_complex_parameters_are_refused_at_construction_by_name(optimizer_class: type) -> None:
    named = [
        ("weight", torch.nn.Parameter(torch.randn(3, 2))),
        ("phase", torch.nn.Parameter(torch.randn(3, dtype=torch.cfloat))),
    ]
    settings = record(optimizer_class).features
    with pytest.raises(
        TypeError,
        match=r"parameter 'phase' \(1 of param group 0\) is torch.complex64; complex parameters are not supported",
    ):
        optimizer_class(named, **settings)
    optimizer = optimizer_class(make_params(), **settings)
    with pytest.raises(TypeError, match=r"parameter 0 of param group 1 is torch\.complex64"):
        optimizer.add_param_group({"params": [torch.nn.Parameter(torch.randn(3, dtype=torch.cfloat))]})
    assert len(optimizer.param_groups) == 1


def test_prodigy_says_meta_parameters_are_unsupported() -> None:
    p = torch.nn.Parameter(torch.randn(4, 4, device="meta"))
    p.grad = torch.randn(4, 4, device="meta")
    optimizer = personalized.Prodigy([p])
    with pytest.raises(
        ValueError, match=r"parameter 0 of param group 0 is on the meta device.*Prodigy computes its step size"
    ):
        optimizer.step()
    assert len(optimizer.state) == 0 or not any(optimizer.state[p])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("features", [False, True])
def test_gradients_of_1e20_keep_the_weights_finite(optimizer_class: type, dtype: torch.dtype, features: bool) -> None:
    """Their squares overflow float32 (as torch's AdamW, the weights must stay finite); all but
    FCompass also keep their state finite."""
    params = make_params(dtype=dtype)
    settings = record(optimizer_class).features if features else fixed_lr(optimizer_class, lr=1e-3)
    optimizer = optimizer_class(params, **settings)
    for step in range(3):
        for p in params:
            p.grad = torch.full(p.shape, 1e20 if step % 2 == 0 else -1e20, dtype=dtype)
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in params)
    if record(optimizer_class).finite_state_at_overflow:
        assert all_finite(optimizer, params)

"""The Diffusion-Chroma optimizers: names as the Chroma TOML spells them, and the fixed defects."""

from __future__ import annotations

import pytest
import torch

import personalized

import reference
from conftest import fill_grads, make_params


@pytest.mark.parametrize(
    ("toml_type", "expected"),
    [
        ("adafactor", "EnhancedAdafactor"),
        ("scorn", "SCORN"),
        ("remaster", "REMASTER"),
        ("persona", "PersonaOptimizer"),
        ("adamw8bitkahan", "AdamW8bitKahan"),
        ("prodigy", "Prodigy"),
        ("automagic", "Automagic"),
        ("Automagic", "Automagic"),
    ],
)
def test_chroma_type_names_resolve(toml_type: str, expected: str) -> None:
    assert personalized.get_optimizer(toml_type).__name__ == expected


def test_thirteen_optimizers_are_listed() -> None:
    assert len(personalized.available()) == 13


@pytest.mark.parametrize("name", ["REMASTER", "SCORN", "PersonaOptimizer", "FMARSCrop_ExMachina"])
def test_two_groups_of_equal_size(name: str) -> None:
    """The originals looked groups up with param_groups.index(), which compared tensors and raised."""
    first, second = make_params(0), make_params(1)
    optimizer = personalized.get_optimizer(name)([{"params": first}, {"params": second, "lr": 1e-3}])
    for seed in range(3):
        fill_grads(first + second, seed)
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in first + second)


def test_automagic_bf16_without_weight_decay_runs() -> None:
    """The recorded original raised UnboundLocalError at step 0 with bf16 params and weight_decay=0."""
    case = reference.load("Automagic__bf16_default")
    assert "UnboundLocalError" in case.meta["error"] and case.meta["steps_completed"] == 0
    params = case.initial_params()
    optimizer = personalized.Automagic(params, **case.kwargs)
    for _ in range(5):
        for p, grad in zip(params, case.grads(0)):
            p.grad = grad.clone()
        optimizer.step()
    assert all(p.dtype == torch.bfloat16 and torch.isfinite(p).all() for p in params)
    assert all("shift" in optimizer.state[p] for p in params)
    moved = [not torch.equal(p.detach(), case.tensors[f"init/{n}"]) for p, n in zip(params, reference.NAMES)]
    assert any(moved)


def test_automagic_start_lr_above_limit_warns_and_starts_low() -> None:
    high, low = make_params(), make_params()
    with pytest.warns(UserWarning, match=r"start lr 0\.01 is above 0\.001"):
        optimizer = personalized.Automagic(high, lr=1e-2)
    reference_run = personalized.Automagic(low, lr=1e-6)
    for params, opt in ((high, optimizer), (low, reference_run)):
        fill_grads(params, 0)
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(high, low))


def test_automagic_lr_mask_is_int8_with_a_tensor_scale() -> None:
    params = make_params()
    optimizer = personalized.Automagic(params)
    fill_grads(params, 0)
    optimizer.step()
    state = optimizer.state[params[0]]
    assert state["lr_mask"].dtype == torch.int8 and state["lr_mask_scale"].dim() == 0


def test_automagic_min_lr_above_max_lr_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"min_lr=0\.01 is not allowed; expected at most max_lr=0\.001"):
        personalized.Automagic(make_params(), min_lr=1e-2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(lr=1e-3), "lr=0.001 with relative_step=True is not allowed"),
        (dict(relative_step=False), "lr=None needs relative_step=True"),
        (dict(lr=1e-3, relative_step=False, warmup_init=True), "warmup_init=True needs relative_step=True"),
    ],
)
def test_adafactor_combinations_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        personalized.EnhancedAdafactor(make_params(), **kwargs)


def test_scorn_init_works_and_uses_scale() -> None:
    params = make_params()
    personalized.SCORN(params).init(scale=2.0)
    matrix, vector, conv = params
    assert torch.equal(vector.detach(), torch.zeros(5))
    gram = matrix.detach().T @ matrix.detach()  # (6, 5): orthonormal columns times 2 * sqrt(6/5)
    torch.testing.assert_close(gram, torch.eye(5) * 4 * 6 / 5, atol=1e-5, rtol=1e-5)
    assert conv.abs().sum() > 0


def test_scorn_convolution_updates_are_scaled_by_kernel_area() -> None:
    """Documented quirk kept: the LMO divides convolution updates by k²."""
    from personalized.optimizers.scorn import scion_lmo

    grad = torch.randn(1, 4, 3, 3, 3)  # a batch of one item
    as_matrix = scion_lmo(grad.reshape(1, 4, -1)).view_as(grad) / (4 / 27) ** 0.5  # unscaled orthogonal part
    torch.testing.assert_close(scion_lmo(grad), as_matrix * (4 / 3) ** 0.5 / 3**2)

"""The multi-tensor path (``foreach=True``) runs the same update as the plain one, on stacked batches."""

from __future__ import annotations

import io

import pytest
import torch

import personalized
from personalized.items import FOREACH_MAX_ELEMENTS

from conftest import BATCHED, features, step_with_seeded_grads

#: Same shapes several times (batched), odd ones and a shape that appears once.
SHAPES = [(6, 5), (5,), (6, 5), (3, 2, 3, 3), (), (6, 5), (5,), (3, 2, 3, 3), (7, 1), (1, 7)]


def make_params(dtype: torch.dtype, seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator).to(dtype)) for shape in SHAPES]


def run(cls: type, dtype: torch.dtype, foreach: bool, steps: int = 4) -> tuple[list[torch.Tensor], dict]:
    params = make_params(dtype)
    torch.manual_seed(0)
    optimizer = cls(params, foreach=foreach, **features(cls))
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator).to(dtype)
        optimizer.step()
    return [p.detach().clone() for p in params], optimizer.state_dict()


@pytest.mark.parametrize("cls", BATCHED, ids=lambda cls: cls.__name__)
def test_foreach_equals_the_plain_path_in_float32(cls: type) -> None:
    fast, fast_state = run(cls, torch.float32, foreach=True)
    plain, plain_state = run(cls, torch.float32, foreach=False)
    for ours, expected in zip(fast, plain):
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    for index, state in plain_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                other = fast_state["state"][index][key]
                assert other.shape == value.shape and other.dtype == value.dtype, key
                torch.testing.assert_close(other.float(), value.float(), rtol=1e-4, atol=1e-6)
            else:
                assert fast_state["state"][index][key] == value


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cls", BATCHED, ids=lambda cls: cls.__name__)
def test_foreach_equals_the_plain_path_in_half_precision(cls: type, dtype: torch.dtype) -> None:
    """Stochastic rounding draws in another order, so the results agree to a few of the dtype's steps."""
    fast, _ = run(cls, dtype, foreach=True, steps=2)
    plain, _ = run(cls, dtype, foreach=False, steps=2)
    resolution = torch.finfo(dtype).eps
    for ours, expected in zip(fast, plain):
        assert ours.dtype == dtype
        torch.testing.assert_close(ours.float(), expected.float(), rtol=4 * resolution, atol=1e-3)


def test_same_shape_parameters_share_one_stacked_state() -> None:
    params = make_params(torch.float32)
    optimizer = personalized.FCompass(params)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    storages = {optimizer.state[p]["fim"].untyped_storage().data_ptr() for p in params if p.shape == (6, 5)}
    assert len(storages) == 1
    assert all(optimizer.state[p]["fim"].shape == p.shape for p in params)
    plain = personalized.FCompass(make_params(torch.float32), foreach=False)
    for p in plain.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    plain.step()
    assert len({state["fim"].untyped_storage().data_ptr() for state in plain.state.values()}) == len(SHAPES)


@pytest.mark.parametrize("cls", BATCHED, ids=lambda cls: cls.__name__)
def test_stacked_state_checkpoint_resumes_exactly(cls: type) -> None:
    params = make_params(torch.float32)
    optimizer = cls(params, **features(cls))
    step_with_seeded_grads(optimizer, params, range(3))
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in params], "optimizer": optimizer.state_dict()}, buffer)
    step_with_seeded_grads(optimizer, params, range(3, 6))

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = [torch.nn.Parameter(value.clone()) for value in saved["params"]]
    other = cls(resumed, **features(cls))
    other.load_state_dict(saved["optimizer"])
    step_with_seeded_grads(other, resumed, range(3, 6))
    for ours, expected in zip(resumed, params):
        assert torch.equal(ours, expected)


def test_parameters_without_gradient_and_single_updates_keep_the_batches_right() -> None:
    """Batches change when some gradients are missing; a parameter updated on its own (gradient
    release) writes into the same stacked state; both paths then agree with the plain one."""

    def train(foreach: bool) -> list[torch.Tensor]:
        params = make_params(torch.float32)
        optimizer = personalized.FARMSCropV2(params, lr=1e-2, foreach=foreach)
        generator = torch.Generator().manual_seed(3)
        for step in range(6):
            for index, p in enumerate(params):
                p.grad = None if (step == 2 and index % 2) else torch.randn(p.shape, generator=generator)
            if step == 4:
                for p in params:
                    optimizer.step_parameter(p, optimizer.param_groups[0])
            else:
                optimizer.step()
        return [p.detach() for p in params]

    for ours, expected in zip(train(True), train(False)):
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_large_groups_are_split_and_large_tensors_run_alone() -> None:
    from personalized.items import batches

    small = [torch.nn.Parameter(torch.zeros(4, FOREACH_MAX_ELEMENTS // 16)) for _ in range(9)]
    large = torch.nn.Parameter(torch.zeros(FOREACH_MAX_ELEMENTS + 1))
    for p in [*small, large]:
        p.grad = torch.zeros_like(p)
    sizes = [len(batch) for batch in batches([*small, large], {p: {} for p in [*small, large]}, together=True)]
    assert sizes == [4, 4, 1, 1]
    assert [len(batch) for batch in batches(small, {p: {} for p in small}, together=False)] == [1] * 9


def test_foreach_is_a_validated_keyword() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(TypeError, match="foreach"):
        personalized.FCompass([p], foreach="yes")
    with pytest.raises(TypeError, match="foreach"):
        personalized.FCompass([{"params": [p], "foreach": 1}])
    assert "foreach" not in personalized.get_optimizer("AdamW8bitKahan").hyperparameter_defaults()


def test_a_copied_optimizer_keeps_working() -> None:
    """deepcopy and pickle go through torch's __getstate__; the working memory is rebuilt."""
    import copy
    import pickle

    params = make_params(torch.float32)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer = personalized.FARMSCropV2(params)
    optimizer.step()
    for other in (copy.deepcopy(optimizer), pickle.loads(pickle.dumps(optimizer))):
        other.step()
        assert all(torch.isfinite(p).all() for group in other.param_groups for p in group["params"])

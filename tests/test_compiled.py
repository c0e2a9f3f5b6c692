"""``compile=True``: the same update through torch.compile, without recompiling on lr changes."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_fast_paths import features

import personalized
from personalized import compiling

from conftest import BATCHED

#: Same shapes several times (batches large enough to compile), a shape that appears once,
#: and tiny tensors (which run eager).
SHAPES = [(64, 80), (80,), (64, 80), (32, 16, 3, 3), (32, 16, 3, 3), (64, 80), (80,), (96, 50), (6, 5)]


def train(cls: type, compile: bool, steps: int = 4, **kwargs: object) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in SHAPES]
    optimizer = cls(params, compile=compile, **{**features(cls), **kwargs})
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
        schedule.step()
    return [p.detach() for p in params]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("cls", BATCHED, ids=lambda cls: cls.__name__)
def test_compiled_update_equals_the_eager_one(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cls, "compile_on_cpu", True)  # what a GPU would run, here on the CPU
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = train(cls, compile=True)
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # really compiled
    for ours, expected in zip(compiled, train(cls, compile=False)):
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_an_optimizer_slower_compiled_on_the_cpu_runs_eager_there() -> None:
    assert personalized.Automagic.compile_on_cpu is False
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = train(personalized.Automagic, compile=True)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    for ours, expected in zip(compiled, train(personalized.Automagic, compile=False)):
        assert torch.equal(ours, expected)


def test_a_changing_lr_and_new_steps_do_not_recompile() -> None:
    counts = []
    train(personalized.FCompass, compile=True, steps=3)
    counts.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    train(personalized.FCompass, compile=True, steps=8)  # other lrs, more steps, same shapes
    counts.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert counts[0] > 0
    assert counts[1] == counts[0], f"recompiled: {counts}"


def test_compilation_failure_falls_back_to_eager_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(compiling.torch, "compile", unavailable)
    with pytest.warns(UserWarning, match="compile=True, but torch.compile failed here") as caught:
        optimizer_params = train(personalized.FARMSCropV2, compile=True)
    assert len([w for w in caught if "torch.compile" in str(w.message)]) == 1
    fallback = optimizer_params
    for ours, expected in zip(fallback, train(personalized.FARMSCropV2, compile=False)):
        assert torch.equal(ours, expected)


def test_scalars_reach_the_compiled_code_as_tensors() -> None:
    converted = compiling.as_tensors({"lr": 1e-3, "reset": False})
    assert torch.is_tensor(converted["lr"]) and converted["lr"].dtype == torch.float32
    assert converted["reset"] is False


def test_gradient_release_runs_the_compiled_update() -> None:
    """Single-parameter updates from backward hooks (batches of one) go through the compiled path too."""

    def run(compile: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 64))
        optimizer = personalized.FCompass(model.parameters(), lr=1e-3, compile=compile)
        release = personalized.GradientRelease(optimizer)
        for step in range(3):
            inputs = torch.randn(8, 64, generator=torch.Generator().manual_seed(step))
            model(inputs).square().mean().backward()
        release.remove()
        return [p.detach().clone() for p in model.parameters()]

    compiled = run(True)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    for ours, expected in zip(compiled, run(False)):
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)

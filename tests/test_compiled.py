"""``compile=True``: the same update through torch.compile, without recompiling on lr changes."""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch
from test_fast_paths import features

import personalized
from personalized import compiling

from conftest import BATCHED

#: Same shapes several times (batches large enough to compile), a shape that appears once,
#: and tiny tensors (which run eager).
SHAPES = [(64, 80), (80,), (64, 80), (32, 16, 3, 3), (32, 16, 3, 3), (64, 80), (80,), (96, 50), (6, 5)]


def train(
    cls: type,
    compile: bool,
    steps: int = 4,
    dtype: torch.dtype = torch.float32,
    shapes: list[tuple[int, ...]] = SHAPES,
    **kwargs: object,
) -> list[torch.Tensor]:
    """``steps`` steps under a LambdaLR; the global generator (stochastic rounding's) seeded first."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator).to(dtype)) for shape in shapes]
    optimizer = cls(params, compile=compile, **{**features(cls), **kwargs})
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator).to(dtype)
        optimizer.step()
        schedule.step()
    return [p.detach() for p in params]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """No compiled code and no counts (``reset`` keeps the counters) from earlier tests."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
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


def test_scalars_reach_the_compiled_code_as_tensors_kept_between_steps() -> None:
    inputs = compiling.ScalarInputs()
    first = inputs({"lr": 1e-3, "reset": False})
    lr = first["lr"]
    assert torch.is_tensor(lr) and lr.dtype == torch.float32 and lr.dim() == 0 and lr.device.type == "cpu"
    assert first["reset"] is False
    second = inputs({"lr": 5e-4, "reset": True})
    assert second["lr"] is lr  # refilled, not allocated again
    assert lr.item() == torch.tensor(5e-4, dtype=torch.float32).item()
    assert second["reset"] is True


def fake_compile(monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, object]], list[tuple[str, int, dict]]]:
    """Replace torch.compile with a recorder: the settings of each compilation, and each compiled call
    (device type, elements, scalars)."""
    compilations: list[dict[str, object]] = []
    calls: list[tuple[str, int, dict]] = []

    def compile(update: object, **settings: object) -> object:
        compilations.append(settings)
        return lambda p, grad, state, group, s: calls.append((p.device.type, p.numel(), s))

    monkeypatch.setattr(compiling.torch, "compile", compile)
    return compilations, calls


def test_the_cpu_workarounds_apply_to_the_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """One compiled update per device type: CPU code with the CPU's Inductor options, static first
    and eager below 4096 elements; GPU code (the meta device stands in for CUDA here: every device
    type but the CPU is compiled alike) with Inductor's defaults, dynamic shapes, tiny batches too."""
    compilations, calls = fake_compile(monkeypatch)
    eager: list[tuple[str, int]] = []
    update = compiling.CompiledUpdate(lambda p, grad, state, group, s: eager.append((p.device.type, p.numel())), "X")
    for device, elements in [("cpu", 8192), ("cpu", 30), ("meta", 8192), ("meta", 30), ("cpu", 8192), ("meta", 60)]:
        p = torch.zeros(1, elements, device=device)
        update(p, p, {}, {}, {"lr": 1e-3})
    cpu_options = {"cpp.max_horizontal_fusion_size": 0, "realize_opcount_threshold": 0}
    assert compilations == [{"dynamic": None, "options": cpu_options}, {"dynamic": True, "options": {}}]
    assert [call[:2] for call in calls] == [("cpu", 8192), ("meta", 8192), ("meta", 30), ("cpu", 8192), ("meta", 60)]
    assert eager == [("cpu", 30)]
    assert all(s["lr"] is calls[0][2]["lr"] for *_, s in calls)  # one lr tensor for every call


def test_compile_settings_per_device_type() -> None:
    cpu = compiling.compile_settings("cpu")
    assert cpu.options == {"cpp.max_horizontal_fusion_size": 0, "realize_opcount_threshold": 0}
    assert cpu.dynamic is None and cpu.min_elements == 4096
    for gpu in ("cuda", "xpu"):
        assert compiling.compile_settings(gpu) == compiling.CompileSettings({}, dynamic=True, min_elements=1)


def test_gpu_settings_compile_one_graph_for_batches_of_every_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dynamic=True``, the GPUs' setting, tried on the CPU (with the CPU's Inductor options): batches of
    five shapes share one graph, where the CPU's ``dynamic=None`` compiles a static one first."""
    cpu, gpu = compiling.compile_settings("cpu"), compiling.compile_settings("cuda")
    monkeypatch.setattr(compiling, "compile_settings", lambda device_type: replace(cpu, dynamic=gpu.dynamic))
    shapes = [(64, 80), (96, 50), (40, 128), (128, 40), (50, 96)]
    compiled = train(personalized.FCompass, compile=True, steps=2, shapes=shapes)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    for ours, expected in zip(compiled, train(personalized.FCompass, compile=False, steps=2, shapes=shapes)):
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


#: The write-back orders: state before the parameter, and the parameter first.
WRITE_BACK_ORDERS = [personalized.FCompass, personalized.PersonaOptimizer]


@pytest.mark.parametrize("cls", WRITE_BACK_ORDERS, ids=lambda cls: cls.__name__)
def test_compiled_bf16_steps_equal_eager_ones_bit_for_bit(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stochastic rounding runs after the compiled update, on the global generator: the same draws
    (the generator ends in the same state) and the same bf16 parameters as eager steps."""
    monkeypatch.setattr(cls, "compile_on_cpu", True)
    compiled = train(cls, compile=True, dtype=torch.bfloat16)
    compiled_generator = torch.get_rng_state()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # really compiled
    eager = train(cls, compile=False, dtype=torch.bfloat16)
    assert torch.equal(compiled_generator, torch.get_rng_state())
    for ours, expected in zip(compiled, eager):
        assert ours.dtype == torch.bfloat16 and torch.equal(ours, expected)


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

"""The denoiser bench task: a pretrained flow-matching UNet, LoRA-adapted to digits it never saw."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from personalized.bench.tasks import denoiser
from personalized.bench.tasks.diffusion import flow_matching_loss

#: Pretraining steps in these tests: a weak base, made in a fraction of a second.
STEPS = 100


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as the bench's worker processes run (tiny models are slower on more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """A short pretraining, adopted as the base of the problems built in the test (undone after it)."""
    monkeypatch.setattr(denoiser, "_ADOPTED", None)
    state = denoiser.pretrain(steps=STEPS)
    denoiser.adopt(state)
    return state


def train(problem: denoiser.DenoiserLoRA, steps: int, lr: float = 1e-2) -> list[float]:
    """AdamW on the problem's parameters: the training losses, then the held-out loss."""
    optimizer = torch.optim.AdamW(problem.params, lr=lr)
    losses = []
    for step in range(1, steps + 1):
        loss = problem.train_loss(step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return [*losses, problem.eval_loss()]


def test_a_seed_gives_the_same_run_and_another_seed_a_different_one(base: dict[str, torch.Tensor]) -> None:
    first = train(denoiser.DenoiserLoRA(0), 5)
    assert first == train(denoiser.DenoiserLoRA(0), 5)
    assert first != train(denoiser.DenoiserLoRA(1), 5)


def test_the_held_out_loss_is_a_fixed_draw_the_seed_does_not_change(base: dict[str, torch.Tensor]) -> None:
    problem = denoiser.DenoiserLoRA(0)
    start = problem.eval_loss()
    assert problem.eval_loss() == start
    assert denoiser.DenoiserLoRA(1).eval_loss() == start  # same base (zero updates), same t and noise


def test_only_the_adapters_train_and_the_adapted_model_starts_as_the_base(base: dict[str, torch.Tensor]) -> None:
    problem = denoiser.DenoiserLoRA(0)
    trainable = {name: p for name, p in problem.model.named_parameters() if p.requires_grad}
    assert {name.rsplit(".", 1)[-1] for name in trainable} == {"lora_down", "lora_up", "lora_A", "lora_B"}
    assert {id(p) for p in problem.params} == {id(p) for p in trainable.values()}
    assert all(not p.any() for name, p in trainable.items() if name.endswith(("lora_up", "lora_B")))
    plain = denoiser.Denoiser()
    plain.load_state_dict(base)
    x_t, t = torch.randn(8, 1, 8, 8), torch.rand(8)
    with torch.no_grad():
        assert torch.equal(problem.model(x_t, t), plain(x_t, t))


def test_the_lora_convolution_is_a_down_convolution_then_a_1x1_up_convolution() -> None:
    stream = torch.Generator().manual_seed(0)
    layer = denoiser.LoRAConv2d(torch.nn.Conv2d(6, 10, 3, stride=2, padding=1), rank=2, alpha=3.0, stream=stream)
    with torch.no_grad():
        layer.lora_up.normal_(generator=stream)
    x = torch.randn(4, 6, 8, 8)
    down = F.conv2d(x, layer.lora_down, stride=2, padding=1)
    expected = layer.base(x) + 1.5 * F.conv2d(down, layer.lora_up)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected)


def test_pretraining_is_deterministic_and_runs_once_per_process() -> None:
    state = denoiser.pretrain(steps=3)
    misses = denoiser.pretrain.cache_info().misses
    assert denoiser.pretrain(steps=3) is state
    assert denoiser.pretrain.cache_info().misses == misses
    again = denoiser.pretrain.__wrapped__(steps=3)
    assert all(torch.equal(again[key], value) for key, value in state.items())


def test_workers_build_every_seed_on_the_shared_base_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(denoiser, "_ADOPTED", None)
    monkeypatch.setattr(denoiser, "pretrain", functools.partial(denoiser.pretrain, STEPS))
    shared = denoiser.share([0, 1])  # in the parent
    assert shared is denoiser.share([2])
    monkeypatch.setattr(denoiser, "pretrain", lambda: pytest.fail("a worker pretrained again"))
    denoiser.adopt(shared)  # in a worker
    for seed in (0, 1):
        weights = {
            key: value for key, value in denoiser.DenoiserLoRA(seed).model.state_dict().items() if "lora" not in key
        }
        assert {key.replace(".base.", ".") for key in weights} == set(shared)
        assert all(torch.equal(value, shared[key.replace(".base.", ".")]) for key, value in weights.items())


def test_the_base_knows_digits_0_to_4_better_and_a_few_adapter_steps_lower_the_5_to_9_loss(
    base: dict[str, torch.Tensor],
) -> None:
    seen = denoiser.pretraining()
    seen.model.load_state_dict(base)
    problem = denoiser.DenoiserLoRA(0)
    start = problem.eval_loss()
    assert seen.eval_loss() < start - 0.05
    assert train(problem, 20)[-1] < start - 0.03


def test_flow_matching_on_images_mixes_each_sample_with_its_own_time() -> None:
    x0, noise, t = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.tensor([0.0, 0.5, 1.0])
    seen = []

    class Oracle(torch.nn.Module):
        def forward(self, x_t: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
            seen.append(x_t)
            return noise - x0

    assert flow_matching_loss(Oracle(), x0, t, noise).item() == 0.0
    torch.testing.assert_close(seen[0], torch.stack([x0[0], (x0[1] + noise[1]) / 2, noise[2]]))

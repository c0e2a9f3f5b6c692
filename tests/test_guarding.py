"""The NaN guard switched on by keywords (``nan_guard=...``), and OneTrainer's route to them.

kohya, RVC and diffusion-pipe have their own tests of the switch in their files; OneTrainer's is
here, driven through the stand-in of ``test_onetrainer`` (its side channel and its fused back pass).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
import test_onetrainer as ot_tests
import torch
from test_onetrainer import ot, patched  # noqa: F401 - fixtures

import personalized
from personalized import guarding
from personalized.nan_guard import NonFiniteTraining

from conftest import fill_grads, make_params


@pytest.fixture(autouse=True)
def fresh_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each console line is printed once per process: start every test with none printed."""
    monkeypatch.setattr(guarding, "_printed", set())


def fallback_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "applying fallback" in line]


def test_a_guard_keyword_builds_the_same_class_with_the_guard_built_in() -> None:
    params = make_params()
    optimizer = personalized.FCompass(params, lr=1e-3, nan_guard=True)
    assert isinstance(optimizer, personalized.FCompass) and type(optimizer) is not personalized.FCompass
    assert type(optimizer).__name__ == "FCompass"
    assert inspect.signature(type(optimizer)) == inspect.signature(personalized.FCompass)
    assert optimizer.nan_guard.preset_name == "default/FCompass" and not optimizer.nan_guard.stop
    assert "nan_guard" not in optimizer.defaults
    assert personalized.FCompass(params, nan_guard="off").nan_guard is None
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        personalized.FCompass(params, nan_guard_patiense=2)


def test_step_hooks_run_once_per_guarded_step() -> None:
    params = make_params()
    personalized.FCompass(make_params())  # torch wraps FCompass.step for its hooks on first use
    optimizer = personalized.FCompass(params, nan_guard="stop")
    calls = []
    optimizer.register_step_post_hook(lambda *args: calls.append("post"))
    fill_grads(params, 0)
    optimizer.step()
    assert calls == ["post"]


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"nan_guard": "sotp"}, ValueError, r"FCompass: nan_guard='sotp' is not allowed; expected True, False, 'fall"),
        ({"nan_guard": 1}, ValueError, "nan_guard=1 is not allowed"),
        ({"nan_guard": True, "nan_guard_patience": 0}, ValueError, "nan_guard_patience=0 is not allowed; expected a"),
        ({"nan_guard": True, "nan_guard_preset": 3}, TypeError, "nan_guard_preset=3 is not allowed; expected a preset"),
        ({"nan_guard": True, "nan_guard_patiense": 2}, TypeError, "unknown NaN guard setting.*nan_guard_patiense"),
        ({"nan_guard": True, "nan_guard_preset": "rvc/FishMonger"}, ValueError, "is a preset for FishMonger, not FC"),
    ],
)
def test_bad_guard_settings_name_the_field_the_value_and_what_is_allowed(
    settings: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        personalized.FCompass(make_params(), **settings)


def test_checkpoints_load_with_the_guard_switched_on_or_off() -> None:
    params = make_params()
    guarded = personalized.FCompass(params, nan_guard=True, nan_guard_patience=1)
    fill_grads(params, 0)
    params[0].grad[0, 0] = float("nan")
    guarded.step()
    saved = guarded.state_dict()
    assert saved["nan_guard"] == {"skipped_steps": 1, "fallbacks_applied": 1, "since_fallback": 0}
    plain = personalized.FCompass(make_params())
    plain.load_state_dict(saved)
    assert plain.param_groups[0]["betas"] == (0.9, 0.99)  # the fallback travels in the groups
    again = personalized.FCompass(make_params(), nan_guard=True, nan_guard_patience=1)
    again.load_state_dict(plain.state_dict())
    again.load_state_dict(saved)
    assert again.nan_guard.fallbacks_applied == 1


# -- OneTrainer: the side channel and the fused back pass ---------------------------------------


def guarded_config(modules: SimpleNamespace, **guard: object) -> object:
    return ot_tests.with_side_channel(modules, ot_tests.FCOMPASS, {"nan_guard": "stop", **guard})


def nan_train(optimizer: torch.optim.Optimizer, params: dict[str, torch.nn.Parameter], steps: int) -> None:
    """OneTrainer's loop with a NaN loss: step, then zero_grad(set_to_none=True)."""
    for _ in range(steps):
        (sum(p.sum() for p in params.values()) * float("nan")).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def test_onetrainer_side_channel_guards_and_resumes_with_the_guard(
    patched: SimpleNamespace,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    params = ot_tests.make_params()
    model = ot_tests.new_model(guarded_config(patched, nan_guard_patience=1))
    lrs = {"unet": 1e-4, "te": 5e-5}
    optimizer = ot_tests.init(patched, model, ot_tests.collection(patched, params, lrs))
    assert type(optimizer).__name__ == "FCompass" and optimizer.nan_guard.stop
    before = {name: p.detach().clone() for name, p in params.items()}
    nan_train(optimizer, {"unet": params["unet"], "te": params["te"]}, steps=2)
    assert fallback_lines(capsys) == [
        "personalized: non-finite values 1 time; applying fallback 1 of 3 from preset default/FCompass: "
        "betas=(0.9, 0.99)",
        "personalized: non-finite values 1 time; applying fallback 2 of 3 from preset default/FCompass: "
        "centralization=0.0",
    ]
    saved = ot_tests.save_and_load(patched, model, tmp_path)
    resumed = ot_tests.init(
        patched, ot_tests.new_model(model.train_config, saved), ot_tests.collection(patched, params, lrs)
    )
    assert resumed.nan_guard.fallbacks_applied == 2 and resumed.param_groups[0]["centralization"] == 0.0
    nan_train(resumed, {"unet": params["unet"], "te": params["te"]}, steps=1)
    with pytest.raises(NonFiniteTraining, match="after all 3 fallbacks from preset default/FCompass were applied"):
        nan_train(resumed, {"unet": params["unet"], "te": params["te"]}, steps=1)
    assert all(torch.equal(before[name], p) for name, p in params.items())


def test_onetrainer_fused_back_pass_skips_bad_parameters_once_per_round(patched: SimpleNamespace) -> None:  # noqa: F811
    params = ot_tests.make_params()
    config = guarded_config(patched, nan_guard="fallbacks")
    config.optimizer.fused_back_pass = True
    optimizer = ot_tests.init(patched, ot_tests.new_model(config), ot_tests.collection(patched, params, {"unet": None}))
    unet = params["unet"]

    # GenericTrainer: each parameter steps from its hook, then drops its gradient
    def hook(group: dict, i: int) -> object:
        def step(tensor: torch.Tensor) -> None:
            optimizer.step_parameter(tensor, group, i)
            tensor.grad = None

        return step

    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            p.register_post_accumulate_grad_hook(hook(group, i))
    (unet.square().sum()).backward()
    stepped = unet.detach().clone()
    assert optimizer.state[unet]["step"] == 1
    for _ in range(2):
        (unet.sum() * float("nan")).backward()
        optimizer.zero_grad(set_to_none=True)
    assert torch.equal(stepped, unet) and optimizer.nan_guard.skipped_steps == 2
    assert optimizer.state[unet]["step"] == 1

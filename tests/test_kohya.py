"""kohya sd-scripts' optimizer resolution, replayed against our classes.

kohya's side (``--optimizer_args`` parsing, the dotted type, the kohya_ss GUI and
FluxTrainer) is re-stated in ``kohya_standin``; every preset's export is run
through it in ``test_exports.py``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import kohya_standin as standin
import pytest
import torch

import personalized
from personalized import guarding
from personalized.cli import main
from personalized.integrations import kohya

from conftest import make_params, record


def lora_groups(text_encoder_lr: float = 5e-5) -> list[dict]:
    """What a LoRA network's prepare_optimizer_params hands over: groups with their own lr."""
    params = make_params()
    return [{"params": params[:2], "lr": 1e-4}, {"params": params[2:], "lr": text_encoder_lr}]


@pytest.mark.parametrize("name", personalized.available())
def test_every_class_resolves_through_the_dotted_path(name: str) -> None:
    # Prodigy (as prodigyopt) needs one lr for all groups; Adafactor a fixed-lr setting.
    groups = lora_groups(1e-4 if record(name).one_lr else 5e-5)
    args = [f"{key}={value!r}" for key, value in record(name).fixed_lr.items()]
    optimizer = standin.get_optimizer(f"personalized.{name}", args, 1e-4, groups)
    assert type(optimizer).__name__ == name
    assert not hasattr(optimizer, "train")  # kohya would then also swap in a DummyScheduler
    for group in groups:
        for p in group["params"]:
            p.grad = torch.ones_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_names_avoid_kohyas_routing_and_logging_traps() -> None:
    for name in personalized.available():
        lowered = f"personalized.{name}".lower()
        assert not standin.builtin_branch(lowered)
        assert not name.endswith("ScheduleFree")
        if "prodigy" in lowered:  # musubi-tuner then logs group["d"]
            optimizer = personalized.get_optimizer(name)(make_params())
            assert "d" in optimizer.param_groups[0]


def test_optimizer_args_tuple_and_list_betas() -> None:
    optimizer = standin.get_optimizer(
        "personalized.FCompass", ["betas=0.9,0.99", "weight_decay=0.01"], 1e-4, make_params()
    )
    assert optimizer.defaults["betas"] == (0.9, 0.99) and optimizer.defaults["weight_decay"] == 0.01
    betas = "betas=[0.95,0.98]"
    optimizer = standin.get_optimizer("personalized.FCompass", [betas, "centralization=0.0"], 1e-4, make_params())
    assert optimizer.defaults["betas"] == (0.95, 0.98)


def test_a_mistyped_argument_names_the_allowed_ones() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'weightdecay'; allowed keywords"):
        standin.get_optimizer("personalized.FCompass", ["weightdecay=0.1"], 1e-4, make_params())


def test_exported_kohya_args_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "chroma/scorn-full", "--to", "kohya-args"]) == 0
    optimizer, _ = standin.from_command_line(shlex.split(capsys.readouterr().out), make_params())
    assert optimizer.defaults["focus_ratio"] == 0.1


def test_copied_plugin_folder_works_in_an_sd_scripts_root(tmp_path: Path) -> None:
    (tmp_path / "train_network.py").write_text(
        "import importlib, sys, torch\n"
        "module = importlib.import_module('personalized')\n"
        "params = [torch.nn.Parameter(torch.zeros(4, 4))]\n"
        "optimizer = getattr(module, 'FCompass')(params, lr=1e-4, betas=(0.9, 0.99))\n"
        "params[0].grad = torch.ones(4, 4)\n"
        "optimizer.step()\n"
        "print(module.__file__)\n"
    )
    assert kohya.install(tmp_path, None)[0].startswith("copied the personalized package")
    result = subprocess.run(
        [sys.executable, "train_network.py"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(tmp_path / "personalized")
    assert kohya.uninstall(tmp_path, None) == [f"removed {tmp_path / 'personalized'}"]
    assert not (tmp_path / "personalized").exists()


def test_install_refuses_a_folder_that_is_not_a_kohya_trainer(tmp_path: Path) -> None:
    assert main(["install", "kohya", str(tmp_path)]) == 2
    with pytest.raises(ValueError, match="is not a copy of the personalized package"):
        kohya.uninstall(tmp_path, None)


@pytest.mark.parametrize("name", ["rvc/FCompass", "chroma/scorn-full", "default/FMARSCrop_ExMachina"])
def test_kohya_ss_gui_preset_is_written_and_survives_the_gui(tmp_path: Path, name: str) -> None:
    (tmp_path / "kohya_gui").mkdir()
    assert main(["export", name, "--to", "kohya_ss-json", "--write", str(tmp_path)]) == 0
    written = list((tmp_path / "presets" / "lora" / "user_presets").glob("personalized-*.json"))
    assert len(written) == 1
    optimizer, _ = standin.from_gui_preset(written[0].read_text(), make_params())
    assert type(optimizer).__name__ == json.loads(written[0].read_text())["optimizer"].split(".")[-1]


def test_write_needs_a_kohya_ss_folder(tmp_path: Path) -> None:
    assert main(["export", "rvc/FCompass", "--to", "kohya_ss-json", "--write", str(tmp_path)]) == 2


def test_fluxtrainer_args_split_on_bars(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "rvc/FCompass", "--to", "fluxtrainer"]) == 0
    out = capsys.readouterr().out.strip()
    optimizer, _ = standin.from_fluxtrainer(out, "personalized.FCompass", 1e-4, make_params())
    assert optimizer.defaults["betas"] == (0.9, 0.99)


# -- the NaN guard from --optimizer_args -----------------------------------------------------------


def nan_step(optimizer: torch.optim.Optimizer, scheduler: object, params: list[torch.nn.Parameter]) -> None:
    """One step of kohya's loop (step, lr_scheduler.step, zero_grad) with NaN gradients."""
    for p in params:
        p.grad = torch.full_like(p, float("nan"))
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def test_nan_guard_from_optimizer_args_applies_fallbacks_then_stops(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guarding, "_printed", set())  # each line is printed once per process
    params = make_params()
    before = [p.detach().clone() for p in params]
    words = ["--optimizer_type", "personalized.FCompass", "--learning_rate", "1e-4", "--optimizer_args"]
    words += ["betas=0.9,0.99", "nan_guard='stop'", "nan_guard_preset='rvc/FCompass'", "nan_guard_patience=1"]
    optimizer, scheduler = standin.from_command_line(words, params)
    assert type(optimizer).__name__ == "FCompass" and not hasattr(optimizer, "train")
    for _ in range(2):
        nan_step(optimizer, scheduler, params)
    assert [line for line in capsys.readouterr().err.splitlines() if "applying fallback" in line] == [
        "personalized: non-finite values 1 time; applying fallback 1 of 2 from preset rvc/FCompass: centralization=0.0",
        "personalized: non-finite values 1 time; applying fallback 2 of 2 from preset rvc/FCompass: clip=0.0",
    ]
    # accelerate's save_state / load_state: the optimizer's state_dict, loaded into a fresh one
    saved = optimizer.state_dict()
    resumed, resumed_scheduler = standin.from_command_line(words, params)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["clip"] == 0.0 and resumed.nan_guard.fallbacks_applied == 2
    with pytest.raises(personalized.nan_guard.NonFiniteTraining, match="stopping training so that no NaN weights"):
        nan_step(resumed, resumed_scheduler, params)
    assert all(torch.equal(a, b) for a, b in zip(before, params))


def fused_step(optimizer: torch.optim.Optimizer) -> object:
    """sdxl_train's hook: the group's optimizer steps once every parameter of the group has its gradient."""
    count = [0]

    def hook(p: torch.Tensor) -> None:
        count[0] += 1
        if count[0] == len(optimizer.param_groups[0]["params"]):
            count[0] = 0
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return hook


def test_nan_guard_survives_the_gui_and_guards_fused_optimizer_groups() -> None:
    """kohya_ss's args field (single quotes), and --fused_optimizer_groups: one optimizer per group, stepped
    from gradient hooks."""
    params = make_params()
    args = "nan_guard='fallbacks' nan_guard_patience=2".replace('"', "").split()
    groups = standin.lora_groups(params, 1e-4, 5e-5)
    optimizers = [standin.get_optimizer("personalized.FishMonger", args, 1e-4, [group]) for group in groups]
    assert all(o.nan_guard.preset_name == "default/FishMonger" and not o.nan_guard.stop for o in optimizers)
    for optimizer in optimizers:
        hook = fused_step(optimizer)
        for p in optimizer.param_groups[0]["params"]:
            p.register_post_accumulate_grad_hook(hook)
    sum(p.sum() for p in params).backward()
    stepped = [p.detach().clone() for p in params]
    for _ in range(2):
        (sum(p.sum() for p in params) * float("inf")).backward()
    assert all(torch.equal(a, b) for a, b in zip(stepped, params))
    assert [o.nan_guard.fallbacks_applied for o in optimizers] == [1, 1]

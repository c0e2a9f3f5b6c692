"""kohya sd-scripts' optimizer resolution, replayed against our classes.

``kohya_get_optimizer`` follows ``library/train_util.py :: get_optimizer`` of
kohya-ss/sd-scripts 48d368f step by step (our own code, not a copy): the
optimizer type is lower-cased only to match the built-in branches; each
``--optimizer_args`` item is ``key, value = arg.split("=")`` with
``ast.literal_eval(value)``; an unmatched dotted type is imported with
``importlib`` and the case-sensitive last part taken with ``getattr``; the
class is built as ``Class(params, lr=lr, **kwargs)``; ``train()`` is called if
the instance has one.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import personalized
from personalized.cli import main
from personalized.integrations import kohya

from conftest import FIXED_LR, make_params

BUILT_IN_EXACT = {"lion", "pagedadamw", "pagedadamw32bit", "sgdnesterov", "prodigy", "adafactor", "adamw"}


def kohya_builtin_branch(optimizer_type: str) -> bool:
    """Whether sd-scripts would route this (lower-cased) type into one of its own branches."""
    return (
        optimizer_type in BUILT_IN_EXACT
        or optimizer_type.endswith("8bit")
        or optimizer_type.startswith("dadapt")
        or optimizer_type.endswith("schedulefree")
    )


def kohya_get_optimizer(optimizer_type: str, optimizer_args: list[str], lr: float, params: list) -> object:
    assert not kohya_builtin_branch(optimizer_type.lower()), optimizer_type
    kwargs = {}
    for arg in optimizer_args:
        key, value = arg.split("=")
        kwargs[key] = ast.literal_eval(value)
    module_name, _, class_name = optimizer_type.rpartition(".")
    optimizer_class = getattr(importlib.import_module(module_name), class_name)
    optimizer = optimizer_class(params, lr=lr, **kwargs)
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()
    return optimizer


def lora_groups(text_encoder_lr: float = 5e-5) -> list[dict]:
    """What a LoRA network's prepare_optimizer_params hands over: groups with their own lr."""
    params = make_params()
    return [{"params": params[:2], "lr": 1e-4}, {"params": params[2:], "lr": text_encoder_lr}]


@pytest.mark.parametrize("name", personalized.available())
def test_every_class_resolves_through_the_dotted_path(name: str) -> None:
    # Prodigy (as prodigyopt) needs one lr for all groups; Adafactor a fixed-lr setting.
    groups = lora_groups(1e-4 if name == "Prodigy" else 5e-5)
    args = [f"{key}={value!r}" for key, value in FIXED_LR.get(name, {}).items()]
    optimizer = kohya_get_optimizer(f"personalized.{name}", args, 1e-4, groups)
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
        assert not kohya_builtin_branch(lowered)
        assert not name.endswith("ScheduleFree")
        if "prodigy" in lowered:  # musubi-tuner then logs group["d"]
            optimizer = personalized.get_optimizer(name)(make_params())
            assert "d" in optimizer.param_groups[0]


def test_optimizer_args_tuple_and_list_betas() -> None:
    optimizer = kohya_get_optimizer(
        "personalized.FCompass", ["betas=0.9,0.99", "weight_decay=0.01"], 1e-4, make_params()
    )
    assert optimizer.defaults["betas"] == (0.9, 0.99) and optimizer.defaults["weight_decay"] == 0.01
    betas = "betas=[0.95,0.98]"
    optimizer = kohya_get_optimizer("personalized.FCompass", [betas, "centralization=0.0"], 1e-4, make_params())
    assert optimizer.defaults["betas"] == (0.95, 0.98)


def test_a_mistyped_argument_names_the_allowed_ones() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'weightdecay'; allowed keywords"):
        kohya_get_optimizer("personalized.FCompass", ["weightdecay=0.1"], 1e-4, make_params())


def test_exported_kohya_args_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "chroma/scorn-full", "--to", "kohya-args"]) == 0
    words = shlex.split(capsys.readouterr().out)
    args = words[words.index("--optimizer_args") + 1 :]
    optimizer = kohya_get_optimizer(words[1], args, float(words[3]), make_params())
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


GUI_ARGS_PATTERN = r"^(\S+=\S+)( \S+=\S+)*$|^$"  # kohya_ss common_gui.validate_args_setting


@pytest.mark.parametrize("name", ["rvc/FCompass", "chroma/scorn-full", "default/FMARSCrop_ExMachina"])
def test_kohya_ss_gui_preset_is_written_and_survives_the_gui(tmp_path: Path, name: str) -> None:
    (tmp_path / "kohya_gui").mkdir()
    assert main(["export", name, "--to", "kohya_ss-json", "--write", str(tmp_path)]) == 0
    written = list((tmp_path / "presets" / "lora" / "user_presets").glob("personalized-*.json"))
    assert len(written) == 1
    data = json.loads(written[0].read_text())
    assert re.match(GUI_ARGS_PATTERN, data["optimizer_args"])
    # The GUI strips double quotes and splits on spaces into the TOML optimizer_args list.
    args = str(data["optimizer_args"]).replace('"', "").split()
    kohya_get_optimizer(data["optimizer"], args, data["learning_rate"], make_params())


def test_write_needs_a_kohya_ss_folder(tmp_path: Path) -> None:
    assert main(["export", "rvc/FCompass", "--to", "kohya_ss-json", "--write", str(tmp_path)]) == 2


def test_fluxtrainer_args_split_on_bars(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "rvc/FCompass", "--to", "fluxtrainer"]) == 0
    out = capsys.readouterr().out.strip()
    # FluxTrainer: [arg.strip() for arg in extra_optimizer_args.strip().split('|') if arg.strip()]
    args = [arg.strip() for arg in out.strip().split("|") if arg.strip()]
    optimizer = kohya_get_optimizer("personalized.FCompass", args, 1e-4, make_params())
    assert optimizer.defaults["betas"] == (0.9, 0.99)

"""OneTrainer: our optimizers as ``PERSONALIZED_*`` members of its ``Optimizer`` enum.

OneTrainer's side of the contract is re-stated in ``onetrainer_standin/`` (see its README: the
files and commit it mirrors); these tests patch that stand-in the way the start-up hook patches
OneTrainer and drive it as OneTrainer does: config loading, the UI's dropdown and defaults,
``init_model_parameters`` -> ``create_optimizer``, the saver's state file and the restore.
"""

from __future__ import annotations

import enum
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import venv
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch

import personalized
from personalized import cli, exporters
from personalized.integrations import onetrainer, pth
from personalized.integrations.onetrainer import fields, patch
from personalized.integrations.onetrainer.patch import OneTrainerChanged

STANDIN = Path(__file__).parent / "onetrainer_standin"
FCOMPASS = "PERSONALIZED_FCOMPASS"


def forget_standin() -> None:
    for name in [name for name in sys.modules if name.split(".")[0] == "modules"]:
        del sys.modules[name]


@pytest.fixture
def ot(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """Freshly imported, unpatched stand-in modules."""
    forget_standin()
    monkeypatch.syspath_prepend(str(STANDIN))
    yield SimpleNamespace(
        enum=importlib.import_module("modules.util.enum.Optimizer"),
        config=importlib.import_module("modules.util.config.TrainConfig"),
        groups=importlib.import_module("modules.util.NamedParameterGroup"),
        util=importlib.import_module("modules.util.optimizer_util"),
        create=importlib.import_module("modules.util.create"),
        saver=importlib.import_module("modules.modelSaver.mixin.InternalModelSaverMixin"),
        trainer=importlib.import_module("modules.trainer.GenericTrainer"),
        window=importlib.import_module("modules.ui.BaseOptimizerParamsWindowView"),
        top_bar=importlib.import_module("modules.ui.TopBarController"),
    )
    forget_standin()


@pytest.fixture
def patched(ot: SimpleNamespace) -> SimpleNamespace:
    patch.patch(ot.enum, ot.util, ot.create)
    return ot


@pytest.fixture
def site_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary site-packages folder that ``personalized install`` writes into."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.setattr(pth, "site_packages", lambda python=None: folder)
    return folder


def train_config(ot: SimpleNamespace, optimizer: dict[str, Any], learning_rate: float = 1e-3) -> Any:
    """A config as OneTrainer loads it from JSON."""
    return ot.config.TrainConfig.default_values().from_dict({"learning_rate": learning_rate, "optimizer": optimizer})


def picked_in_ui(ot: SimpleNamespace, member: str, learning_rate: float = 1e-3) -> Any:
    """A config after picking ``member`` in the dropdown: the UI applies ``change_optimizer``."""
    config = train_config(ot, {"optimizer": member}, learning_rate)
    config.optimizer = ot.util.change_optimizer(config)
    return config


def make_params(seed: int = 0) -> dict[str, torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"unet": (6, 5), "te": (5,), "lora": (3, 4)}
    return {name: torch.nn.Parameter(torch.randn(shape, generator=gen)) for name, shape in shapes.items()}


def collection(ot: SimpleNamespace, params: dict[str, torch.nn.Parameter], lrs: dict[str, float | None]) -> Any:
    """OneTrainer's named parameter groups, in the order of ``lrs`` (None: the config's lr)."""
    groups = ot.groups.NamedParameterGroupCollection()
    for name, lr in lrs.items():
        groups.add_group(ot.groups.NamedParameterGroup(name, [params[name]], lr))
    return groups


def new_model(config: Any, state_dict: dict[str, Any] | None = None) -> SimpleNamespace:
    return SimpleNamespace(train_config=config, optimizer_state_dict=state_dict, optimizer=None, parameters=None)


def init(ot: SimpleNamespace, model: SimpleNamespace, groups: Any) -> torch.optim.Optimizer:
    """What the trainer does: ``init_model_parameters``, which calls ``create.create_optimizer``."""
    ot.util.init_model_parameters(model, groups, torch.device("cpu"))
    return model.optimizer


def train(optimizer: torch.optim.Optimizer, params: dict[str, torch.nn.Parameter], steps: int = 3) -> None:
    """OneTrainer's loop: step, then zero_grad(set_to_none=True)."""
    for step in range(steps):
        loss = sum(((p - 0.1 * step) ** 2).sum() for p in params.values() if p.requires_grad)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def save_and_load(ot: SimpleNamespace, model: SimpleNamespace, folder: Path) -> dict[str, Any]:
    """The saver's ``optimizer/optimizer.pt``, loaded back as OneTrainer's loader does (weights_only)."""
    ot.saver.InternalModelSaverMixin()._save_internal_data(model, str(folder))
    return torch.load(folder / "optimizer" / "optimizer.pt", weights_only=True)


def tensor_state(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in optimizer.state[p].items() if torch.is_tensor(value)}


# -- before the patch: what OneTrainer does with our names ---------------------------------------


def test_before_the_patch_our_name_silently_becomes_adamw(
    ot: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    config = train_config(ot, {"optimizer": FCOMPASS})
    assert "Could not set optimizer as PERSONALIZED_FCOMPASS" in capsys.readouterr().out
    assert config.optimizer.optimizer is ot.enum.Optimizer.ADAMW
    params = make_params()
    optimizer = init(ot, new_model(config), collection(ot, params, {"unet": None}))
    assert type(optimizer) is torch.optim.AdamW


# -- the enum ----------------------------------------------------------------------------------


def test_every_optimizer_joins_the_enum_and_the_dropdown(patched: SimpleNamespace) -> None:
    Optimizer = patched.enum.Optimizer
    ours = [exporters.onetrainer_member(name) for name in personalized.available()]
    dropdown = [str(x) for x in list(Optimizer)]
    assert dropdown == ["ADAMW", "SGD", "PRODIGY", "SCHEDULE_FREE_ADAMW", *ours]
    assert len(Optimizer) == len(dropdown)
    member = Optimizer[FCOMPASS]
    assert Optimizer(FCOMPASS) is member
    assert Optimizer.PERSONALIZED_FCOMPASS is member
    assert Optimizer.__members__[FCOMPASS] is member
    assert (member.name, member.value, str(member)) == (FCOMPASS, FCOMPASS, FCOMPASS)
    assert member in Optimizer and isinstance(member, Optimizer)
    assert {member: "x"}[Optimizer[FCOMPASS]] == "x" and hash(member) == hash(Optimizer(FCOMPASS))
    assert member != Optimizer.ADAMW


def test_match_on_our_member(patched: SimpleNamespace) -> None:
    Optimizer = patched.enum.Optimizer

    def pick(member: enum.Enum) -> str:
        match member:
            case Optimizer.ADAMW:
                return "adamw"
            case Optimizer.PERSONALIZED_FCOMPASS:
                return "fcompass"
        return "none"

    assert [pick(Optimizer[FCOMPASS]), pick(Optimizer.ADAMW), pick(Optimizer.PERSONALIZED_SCORN)] == [
        "fcompass",
        "adamw",
        "none",
    ]


def test_capability_flags(patched: SimpleNamespace) -> None:
    """Only Prodigy is adaptive (OneTrainer logs lr * d); none is schedule-free; all but Prodigy
    support OneTrainer's fused back pass (step_parameter)."""
    Optimizer = patched.enum.Optimizer
    ours = [member for member in Optimizer if member.name.startswith("PERSONALIZED_")]
    assert [m.name for m in ours if m.is_adaptive] == ["PERSONALIZED_PRODIGY"]
    assert not any(m.is_schedule_free for m in ours)
    assert [m.name for m in ours if not m.supports_fused_back_pass()] == ["PERSONALIZED_PRODIGY"]
    assert Optimizer.ADAMW.supports_fused_back_pass() and not Optimizer.SGD.supports_fused_back_pass()
    assert Optimizer.PRODIGY.is_adaptive and not Optimizer.ADAMW.is_adaptive


def test_config_loads_our_member_and_round_trips(patched: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    config = train_config(patched, {"optimizer": FCOMPASS, "beta1": 0.9})
    assert "Could not set" not in capsys.readouterr().out
    assert config.optimizer.optimizer is patched.enum.Optimizer[FCOMPASS]
    data = config.to_dict()
    assert data["optimizer"]["optimizer"] == FCOMPASS
    again = patched.config.TrainConfig.default_values().from_dict(json.loads(json.dumps(data)))
    assert again.optimizer.optimizer is config.optimizer.optimizer and again.optimizer.beta1 == 0.9


# -- the defaults table ------------------------------------------------------------------------


def test_defaults_table_has_our_defaults_in_onetrainer_fields(patched: SimpleNamespace) -> None:
    table = patched.util.OPTIMIZER_DEFAULT_PARAMETERS
    Optimizer = patched.enum.Optimizer
    assert table[Optimizer[FCOMPASS]] == {
        "beta1": 0.99,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.1,
        "fused_back_pass": False,
    }
    assert table[Optimizer.PERSONALIZED_FISHMONGER]["beta3"] == 0.999
    schema = fields.Schema.of(patched.config.TrainOptimizerConfig.default_values())
    for name in personalized.available():
        defaults = table[Optimizer[exporters.onetrainer_member(name)]]
        assert all(schema.fits(field, value) for field, value in defaults.items()), name
    assert table[Optimizer.ADAMW]["beta1"] == 0.9  # OneTrainer's own entries are left alone


def test_defaults_are_what_the_exporter_writes(patched: SimpleNamespace) -> None:
    """One definition of the field names: the table equals the exported default preset (and the
    Fused Back Pass switch, which is OneTrainer's own setting)."""
    pytest.importorskip("yaml")
    from personalized import presets

    preset = presets.load("default/FCompass")
    exported = exporters.onetrainer_settings(preset)
    exported.pop("optimizer")
    table = patched.util.OPTIMIZER_DEFAULT_PARAMETERS[patched.enum.Optimizer[FCOMPASS]]
    assert table == {**exported, "fused_back_pass": False}


def test_picking_our_optimizer_in_the_ui_fills_in_our_defaults(patched: SimpleNamespace) -> None:
    config = picked_in_ui(patched, FCOMPASS)
    assert (config.optimizer.beta1, config.optimizer.beta2, config.optimizer.weight_decay) == (0.99, 0.999, 0.1)
    saved = patched.config.TrainOptimizerConfig.default_values().from_dict({"optimizer": FCOMPASS, "beta1": 0.5})
    config.optimizer_defaults[FCOMPASS] = saved  # what the user changed last time
    assert patched.util.change_optimizer(config).beta1 == 0.5


class Widgets:
    """OneTrainer's UI components (Qt or CTk), recording the widgets the settings window builds."""

    def __init__(self) -> None:
        self.titles: list[str] = []
        self.switches: list[str] = []

    def label(self, master: Any, row: int, column: int, text: str, **options: Any) -> None:
        self.titles.append(text)

    def switch(self, master: Any, row: int, column: int, ui_state: Any, key: str, **options: Any) -> None:
        self.switches.append(key)

    def entry(self, master: Any, row: int, column: int, ui_state: Any, key: str, **options: Any) -> None:
        pass


def settings_window(ot: SimpleNamespace, member: str) -> Widgets:
    """The widgets of the optimizer settings window ("..." next to the dropdown) for ``member``."""
    widgets = Widgets()
    controller = SimpleNamespace(config=picked_in_ui(ot, member))
    ot.window.BaseOptimizerParamsWindowView(widgets).build_dynamic_content(None, controller, None, None, None)
    return widgets


def test_settings_window_has_the_fused_back_pass_switch_for_all_but_prodigy(patched: SimpleNamespace) -> None:
    """The window shows a widget per key of the defaults table: the switch needs the key."""
    assert "Fused Back Pass" in settings_window(patched, "ADAMW").titles  # as for OneTrainer's own
    for name in personalized.available():
        member = exporters.onetrainer_member(name)
        widgets = settings_window(patched, member)
        assert ("Fused Back Pass" in widgets.titles) == (name != "Prodigy"), name
        assert ("fused_back_pass" in widgets.switches) == (name != "Prodigy"), name
    config = picked_in_ui(patched, FCOMPASS)
    assert config.optimizer.fused_back_pass is False  # picking the optimizer (or Load Defaults): off
    assert patched.enum.Optimizer[FCOMPASS].supports_fused_back_pass()


# -- create_optimizer --------------------------------------------------------------------------


def test_create_optimizer_builds_our_class_on_onetrainer_groups(patched: SimpleNamespace) -> None:
    config = train_config(patched, {"optimizer": FCOMPASS, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.01})
    params = make_params()
    before = {name: p.detach().clone() for name, p in params.items()}
    optimizer = init(patched, new_model(config), collection(patched, params, {"unet": 1e-4, "te": None}))
    assert type(optimizer) is personalized.FCompass
    groups = [(g["name"], g["lr"], g["initial_lr"], g["betas"], g["weight_decay"]) for g in optimizer.param_groups]
    assert groups == [("unet", 1e-4, 1e-4, (0.9, 0.99), 0.01), ("te", 1e-3, 1e-3, (0.9, 0.99), 0.01)]
    assert type(optimizer.param_groups[0]["betas"]) is tuple
    assert optimizer.param_groups[0]["eps"] == 1e-8  # empty field: our default
    train(optimizer, {"unet": params["unet"], "te": params["te"]})
    assert not torch.equal(params["unet"], before["unet"]) and not torch.equal(params["te"], before["te"])


def test_empty_fields_take_our_defaults_element_by_element(patched: SimpleNamespace) -> None:
    config = train_config(patched, {"optimizer": "PERSONALIZED_FISHMONGER", "beta1": 0.8})
    optimizer = init(patched, new_model(config), collection(patched, make_params(), {"unet": None}))
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.99, 0.999)


def test_builtin_members_still_build_their_own_optimizer(patched: SimpleNamespace) -> None:
    params = make_params()
    adamw = init(patched, new_model(picked_in_ui(patched, "ADAMW")), collection(patched, params, {"unet": None}))
    sgd = init(patched, new_model(picked_in_ui(patched, "SGD")), collection(patched, params, {"unet": None}))
    assert (type(adamw), type(sgd)) == (torch.optim.AdamW, torch.optim.SGD)
    assert adamw.param_groups[0]["betas"] == (0.9, 0.999)


def test_layer_offloading_needs_the_fused_back_pass_which_ours_support(patched: SimpleNamespace) -> None:
    """OneTrainer's check before its match: offloading a fine-tune needs fused back pass."""
    config = picked_in_ui(patched, FCOMPASS)
    config.unet.offload_fraction = 0.5
    groups = collection(patched, make_params(), {"unet": None})
    with pytest.raises(RuntimeError, match="layer offloading"):
        patched.create.create_optimizer(groups, None, config)
    config.optimizer.fused_back_pass = True
    assert type(patched.create.create_optimizer(groups, None, config)) is personalized.FCompass
    prodigy = picked_in_ui(patched, "PERSONALIZED_PRODIGY")
    prodigy.unet.offload_fraction = 0.5
    prodigy.optimizer.fused_back_pass = True
    with pytest.raises(RuntimeError, match="layer offloading"):
        patched.create.create_optimizer(groups, None, prodigy)


def fused_run(ot: SimpleNamespace, member: str, fused: bool) -> dict[str, torch.Tensor]:
    """Three steps of OneTrainer's trainer, with a learning rate per model part; the trained tensors."""
    config = picked_in_ui(ot, member)
    config.optimizer.fused_back_pass = fused
    config.clip_grad_norm = None
    params = make_params()
    model = new_model(config)
    init(ot, model, collection(ot, params, {"unet": 1e-2, "te": 1e-5, "lora": 1e-3}))

    def loss(step: int) -> torch.Tensor:
        return sum(((p - 0.1 * (step + 1) * (index + 1)) ** 2).sum() for index, p in enumerate(params.values()))

    ot.trainer.GenericTrainer(config, model).train(loss, steps=3)
    return {name: p.detach().clone() for name, p in params.items()}


def test_onetrainers_fused_back_pass_hands_every_tensor_the_last_group(patched: SimpleNamespace) -> None:
    """The call pattern: OneTrainer's hooks pass the last group and index, whatever the tensor."""
    calls: list[tuple[str, str, int]] = []

    class Recorder(torch.optim.SGD):
        def step_parameter(self, tensor: torch.Tensor, group: dict[str, Any], i: int) -> None:
            owner = next(g["name"] for g in self.param_groups if any(tensor is q for q in g["params"]))
            calls.append((owner, group["name"], i))

    config = picked_in_ui(patched, "ADAMW")
    config.optimizer.fused_back_pass = True
    params = make_params()
    groups = collection(patched, params, {"unet": 1e-2, "te": 1e-5, "lora": 1e-3}).parameters_for_optimizer(config)
    model = SimpleNamespace(optimizer=Recorder(groups, lr=0.1))
    patched.trainer.GenericTrainer(config, model).train(lambda step: sum((p**2).sum() for p in params.values()), 1)
    assert sorted(calls) == [("lora", "lora", 0), ("te", "lora", 0), ("unet", "lora", 0)]


@pytest.mark.parametrize("member", [FCOMPASS, "PERSONALIZED_FMARSCROP_EXMACHINA", "PERSONALIZED_AUTOMAGIC"])
def test_fused_back_pass_steps_each_tensor_with_its_own_group(patched: SimpleNamespace, member: str) -> None:
    """Through OneTrainer's fused back pass, each model part keeps its own learning rate: the
    same weights as OneTrainer's ordinary step (group-level step counters included)."""
    ordinary = fused_run(patched, member, fused=False)
    fused = fused_run(patched, member, fused=True)
    for name in ordinary:
        torch.testing.assert_close(fused[name], ordinary[name], rtol=1e-5, atol=1e-6, msg=name)


def test_the_group_lookup_follows_groups_replaced_on_resume(patched: SimpleNamespace) -> None:
    params = make_params()
    optimizer = init(patched, new_model(picked_in_ui(patched, FCOMPASS)), collection(patched, params, {"te": 1e-5}))
    assert optimizer.step_parameter.owner(params["te"])[0] is optimizer.param_groups[0]
    optimizer.load_state_dict(optimizer.state_dict())  # torch puts new group dicts in place
    assert optimizer.step_parameter.owner(params["te"]) == (optimizer.param_groups[0], 0)
    assert optimizer.step_parameter.owner(params["te"])[0] is optimizer.param_groups[0]


def test_relative_step_drops_the_learning_rates_as_onetrainer_does_for_adafactor(patched: SimpleNamespace) -> None:
    config = picked_in_ui(patched, "PERSONALIZED_ENHANCEDADAFACTOR")
    params = make_params()
    optimizer = init(patched, new_model(config), collection(patched, params, {"unet": 1e-4}))
    assert type(optimizer) is personalized.EnhancedAdafactor
    group = optimizer.param_groups[0]
    assert (group["lr"], group["initial_lr"], group["relative_step"]) == (None, 1e-4, True)
    before = params["unet"].detach().clone()
    train(optimizer, {"unet": params["unet"]})
    assert not torch.equal(params["unet"], before)


@pytest.mark.parametrize("name", personalized.available())
def test_every_optimizer_trains_saves_and_resumes_through_onetrainer(
    patched: SimpleNamespace, name: str, tmp_path: Path
) -> None:
    """From the UI's defaults: build, 3 steps, save, load with weights_only, restore, step on."""
    try:
        cls = personalized.get_optimizer(name)
    except ImportError as error:
        pytest.skip(str(error))
    member = exporters.onetrainer_member(name)
    config = picked_in_ui(patched, member, learning_rate=1e-4)
    params = make_params()
    model = new_model(config)
    lrs = {"unet": None, "te": None if name == "Prodigy" else 5e-5}  # prodigyopt takes one lr for all groups
    optimizer = init(patched, model, collection(patched, params, lrs))
    assert type(optimizer) is cls
    train(optimizer, {"unet": params["unet"], "te": params["te"]})
    # OneTrainer moves the tensors that state_dict() returns in place: they must be the live ones
    live = optimizer.state_dict()["state"]
    for index, p in enumerate([params["unet"], params["te"]]):
        for key, value in optimizer.state[p].items():
            if torch.is_tensor(value):
                assert live[index][key] is value, (name, key)
    saved_state = tensor_state(optimizer, params["unet"])
    assert saved_state, name
    saved = save_and_load(patched, model, tmp_path)
    resumed = init(patched, new_model(config, saved), collection(patched, params, lrs))
    restored = tensor_state(resumed, params["unet"])
    assert restored.keys() == saved_state.keys()
    assert all(torch.equal(restored[key], saved_state[key]) for key in saved_state)
    train(resumed, {"unet": params["unet"], "te": params["te"]}, steps=1)


# -- the state restore -------------------------------------------------------------------------


def restore_scenario(ot: SimpleNamespace, member: str, tmp_path: Path) -> list[tuple[str, float, float, int]]:
    """Train two groups, save; resume with a new group first, a changed lr, and one group dropped."""
    params = make_params()
    config = picked_in_ui(ot, member)
    model = new_model(config)
    optimizer = init(ot, model, collection(ot, params, {"unet": 1e-4, "te": 5e-5}))
    train(optimizer, {"unet": params["unet"], "te": params["te"]})
    saved = save_and_load(ot, model, tmp_path)
    assert saved["param_group_mapping"] == ["unet", "te"]
    assert saved["param_group_optimizer_mapping"] == [member, member]
    resumed = init(ot, new_model(config, saved), collection(ot, params, {"lora": 3e-4, "unet": 2e-4}))
    train(resumed, {"lora": params["lora"], "unet": params["unet"]}, steps=1)
    return [
        (group["name"], group["lr"], group["initial_lr"], int(resumed.state[group["params"][0]]["step"]))
        for group in resumed.param_groups
    ]


def test_restore_by_group_name_refreshes_only_the_learning_rate(patched: SimpleNamespace, tmp_path: Path) -> None:
    params = make_params()
    config = train_config(patched, {"optimizer": FCOMPASS, "beta1": 0.9, "beta2": 0.99})
    model = new_model(config)
    optimizer = init(patched, model, collection(patched, params, {"unet": 1e-4, "te": 5e-5}))
    train(optimizer, {"unet": params["unet"], "te": params["te"]})
    saved_state = tensor_state(optimizer, params["unet"])
    saved = save_and_load(patched, model, tmp_path)

    changed = train_config(patched, {"optimizer": FCOMPASS, "beta1": 0.5, "beta2": 0.6})
    groups = collection(patched, params, {"lora": 3e-4, "unet": 2e-4})
    resumed = init(patched, new_model(changed, saved), groups)
    lora, unet = resumed.param_groups
    assert (lora["name"], lora["lr"], lora["initial_lr"], lora["betas"]) == ("lora", 3e-4, 3e-4, (0.5, 0.6))
    assert (unet["name"], unet["lr"], unet["initial_lr"], unet["betas"]) == ("unet", 2e-4, 2e-4, (0.9, 0.99))
    assert not resumed.state[params["lora"]]
    assert all(torch.equal(resumed.state[params["unet"]][key], value) for key, value in saved_state.items())


def test_restore_matches_onetrainers_own_restore(patched: SimpleNamespace, tmp_path: Path) -> None:
    """The same resume through ADAMW (OneTrainer's code) and through ours: the same groups restored."""
    theirs = restore_scenario(patched, "ADAMW", tmp_path / "adamw")
    ours = restore_scenario(patched, FCOMPASS, tmp_path / "ours")
    assert ours == theirs == [("lora", 3e-4, 3e-4, 1), ("unet", 2e-4, 2e-4, 4)]


def test_state_saved_by_another_optimizer_is_not_restored(patched: SimpleNamespace, tmp_path: Path) -> None:
    params = make_params()
    model = new_model(picked_in_ui(patched, "ADAMW"))
    train(init(patched, model, collection(patched, params, {"unet": None})), {"unet": params["unet"]})
    saved = save_and_load(patched, model, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # decided by the optimizer string, not by the base class's safety net
        ours = init(
            patched, new_model(picked_in_ui(patched, FCOMPASS), saved), collection(patched, params, {"unet": None})
        )
    assert type(ours) is personalized.FCompass and not ours.state[params["unet"]]
    assert ours.param_groups[0]["betas"] == (0.99, 0.999)
    train(ours, {"unet": params["unet"]}, steps=1)


def test_same_keys_under_another_optimizer_string_are_not_restored(patched: SimpleNamespace, tmp_path: Path) -> None:
    """Only the optimizer string decides: even a state our class could read starts fresh."""
    params = make_params()
    model = new_model(picked_in_ui(patched, FCOMPASS))
    train(init(patched, model, collection(patched, params, {"unet": None})), {"unet": params["unet"]})
    saved = save_and_load(patched, model, tmp_path)
    saved["param_group_optimizer_mapping"] = ["PERSONALIZED_FISHMONGER"]
    resumed = init(patched, new_model(model.train_config, saved), collection(patched, params, {"unet": None}))
    assert not resumed.state[params["unet"]]


def test_older_state_without_group_names_gets_only_the_learning_rates(patched: SimpleNamespace) -> None:
    params = make_params()
    model = new_model(picked_in_ui(patched, FCOMPASS))
    optimizer = init(patched, model, collection(patched, params, {"unet": 1e-4}))
    train(optimizer, {"unet": params["unet"]})
    saved_state = tensor_state(optimizer, params["unet"])
    older = optimizer.state_dict()  # no param_group_mapping: saved by an older OneTrainer
    resumed = init(patched, new_model(model.train_config, older), collection(patched, params, {"unet": 7e-4}))
    assert (resumed.param_groups[0]["lr"], resumed.param_groups[0]["initial_lr"]) == (7e-4, 7e-4)
    assert all(torch.equal(resumed.state[params["unet"]][key], value) for key, value in saved_state.items())


# -- settings without a OneTrainer field -------------------------------------------------------


def with_side_channel(ot: SimpleNamespace, member: str, extras: Any) -> Any:
    config = picked_in_ui(ot, member)
    config.optimizer.from_dict({"muon_adam_config": {"personalized": extras}})
    return config


def test_unmapped_settings_keep_our_defaults_or_come_from_the_side_channel(patched: SimpleNamespace) -> None:
    groups = collection(patched, make_params(), {"unet": None})
    plain = patched.create.create_optimizer(groups, None, picked_in_ui(patched, FCOMPASS))
    assert (plain.param_groups[0]["clip"], plain.param_groups[0]["centralization"]) == (1.0, 1.0)
    config = with_side_channel(patched, FCOMPASS, {"clip": 0.0, "centralization": 0.5})
    configured = patched.create.create_optimizer(groups, None, config)
    assert (configured.param_groups[0]["clip"], configured.param_groups[0]["centralization"]) == (0.0, 0.5)
    assert configured.param_groups[0]["betas"] == (0.99, 0.999)


def test_side_channel_refuses_settings_that_have_a_field(patched: SimpleNamespace) -> None:
    groups = collection(patched, make_params(), {"unet": None})
    with pytest.raises(ValueError, match=r"betas \(use OneTrainer's field beta1, beta2\); lr .*optimizer settings"):
        patched.create.create_optimizer(
            groups, None, with_side_channel(patched, FCOMPASS, {"betas": [0.9, 0.9], "lr": 1})
        )
    with pytest.raises(ValueError, match="JSON object"):
        patched.create.create_optimizer(groups, None, with_side_channel(patched, FCOMPASS, [1, 2]))
    with pytest.raises(TypeError, match="clipp"):
        patched.create.create_optimizer(groups, None, with_side_channel(patched, FCOMPASS, {"clipp": 0.0}))


def test_side_channel_refuses_onetrainers_own_field_names(patched: SimpleNamespace) -> None:
    groups = collection(patched, make_params(), {"unet": None})
    config = with_side_channel(patched, FCOMPASS, {"beta1": 0.9, "eps": 1e-6, "clip": 0.0})
    expected = (
        r"sets beta1 \(use OneTrainer's field beta1, which sets our betas\); eps \(use OneTrainer's field eps\)\. "
        r"OneTrainer has its own field for these: use OneTrainer's field"
    )
    with pytest.raises(ValueError, match=expected):
        patched.create.create_optimizer(groups, None, config)


def test_field_plan_follows_the_exporter(patched: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A field the exporter adds shows up in the table and is read back; one OneTrainer lacks is not used."""
    schema = fields.Schema.of(patched.config.TrainOptimizerConfig.default_values())
    monkeypatch.setitem(exporters.ONETRAINER_FIELDS, "clip_threshold", "clip_threshold")
    monkeypatch.setitem(exporters.ONETRAINER_FIELDS, "clip", "no_such_onetrainer_field")
    adafactor = fields.plan(personalized.EnhancedAdafactor, schema)
    assert adafactor.fields["clip_threshold"] == ("clip_threshold",)
    assert adafactor.onetrainer_defaults()["clip_threshold"] == 1.0
    config = patched.config.TrainOptimizerConfig.default_values().from_dict({"clip_threshold": 2.0})
    assert adafactor.kwargs(config)["clip_threshold"] == 2.0
    assert "clip" in fields.plan(personalized.FCompass, schema).unmapped


def test_a_pair_in_one_field_is_unmapped_and_a_pair_over_two_fields_is_put_back_together(
    patched: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adafactor's eps pair: no OneTrainer field holds a pair, but eps/eps2 together can."""
    original = exporters.onetrainer_settings

    def exporter(spread: bool) -> Any:
        def onetrainer_settings(preset: Any) -> dict[str, Any]:
            settings = original(preset)
            pair = preset.hyperparameters.get("eps")
            if isinstance(pair, (tuple, list)):
                settings.pop("eps2", None)
                if spread:
                    settings["eps"], settings["eps2"] = pair
                else:
                    settings["eps"] = list(pair)
            return settings

        return onetrainer_settings

    schema = fields.Schema.of(patched.config.TrainOptimizerConfig.default_values())
    monkeypatch.setattr(exporters, "onetrainer_settings", exporter(spread=False))
    assert "eps" in fields.plan(personalized.EnhancedAdafactor, schema).unmapped
    monkeypatch.setattr(exporters, "onetrainer_settings", exporter(spread=True))
    adafactor = fields.plan(personalized.EnhancedAdafactor, schema)
    assert adafactor.fields["eps"] == ("eps", "eps2")
    assert (adafactor.onetrainer_defaults()["eps"], adafactor.onetrainer_defaults()["eps2"]) == (1e-30, 1e-3)
    config = patched.config.TrainOptimizerConfig.default_values().from_dict({"eps2": 1e-2})
    assert adafactor.kwargs(config)["eps"] == (1e-30, 1e-2)


# -- OneTrainer's Load Preset menu ----------------------------------------------------------------

SDXL_LORA = {
    "base_model_name": "stabilityai/stable-diffusion-xl-base-1.0",
    "model_type": "STABLE_DIFFUSION_XL_10_BASE",
    "training_method": "LORA",
    "learning_rate": 0.0003,
    "text_encoder": {"train": False, "learning_rate": 5e-5},
    "optimizer": {"optimizer": "ADAMW"},
    "optimizer_defaults": {"ADAMW": {"optimizer": "ADAMW", "fused_back_pass": True, "beta1": 0.9}},
}


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A OneTrainer folder with a built-in preset in a sub-folder, as OneTrainer ships them."""
    folder = tmp_path / "OneTrainer"
    shutil.copytree(STANDIN, folder)
    (folder / "training_presets" / "SDXL").mkdir(parents=True)
    (folder / "training_presets" / "SDXL" / "#sdxl 1.0 LoRA.json").write_text(json.dumps(SDXL_LORA), encoding="utf-8")
    return folder


def export_onto(folder: Path, onto: str, preset: str = "rvc/FCompass") -> int:
    return cli.main(["export", preset, "--to", "onetrainer-json", "--write", str(folder), "--onto", onto])


def test_merged_preset_is_in_the_menu_and_keeps_the_base(
    patched: SimpleNamespace, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("yaml")
    from personalized import presets

    assert export_onto(checkout, "#SDXL 1.0 lora") == 0  # the name as the menu shows it, any case
    out = capsys.readouterr().out
    assert "text_encoder (5e-05)" in out and "restart OneTrainer" in out
    controller = patched.top_bar.TopBarController(patched.config.TrainConfig.default_values())
    tree = controller.load_preset_tree(str(checkout / "training_presets"))
    (group, entries), (sdxl, _) = tree
    assert (group, sdxl) == ("personalized", "SDXL")
    [(label, path)] = entries
    assert label == "#sdxl 1.0 LoRA with rvc-FCompass"

    controller.load_preset(path)  # picking it in the menu
    config, preset = controller.train_config, presets.load("rvc/FCompass")
    assert (str(config.model_type), str(config.training_method)) == ("STABLE_DIFFUSION_XL_10_BASE", "LORA")
    assert config.base_model_name == SDXL_LORA["base_model_name"] and config.text_encoder.learning_rate == 5e-5
    assert config.learning_rate == preset.lr
    assert str(config.optimizer.optimizer) == FCOMPASS
    assert (config.optimizer.beta1, config.optimizer.beta2, config.optimizer.weight_decay) == (0.9, 0.99, 0.1)
    assert config.optimizer.fused_back_pass is True  # the base's low-VRAM setting carries over
    optimizer = init(patched, new_model(config), collection(patched, make_params(), {"unet": None}))
    assert type(optimizer) is personalized.FCompass and optimizer.param_groups[0]["betas"] == (0.9, 0.99)
    assert optimizer.param_groups[0]["lr"] == preset.lr


def test_the_exported_fragment_alone_resets_the_model_in_the_menu(patched: SimpleNamespace, checkout: Path) -> None:
    """Why the merge: a fragment loaded from the menu leaves OneTrainer's defaults everywhere else."""
    pytest.importorskip("yaml")
    from personalized import presets

    fragment = checkout / "training_presets" / "#fragment.json"
    fragment.write_text(exporters.onetrainer_json(presets.load("rvc/FCompass")), encoding="utf-8")
    controller = patched.top_bar.TopBarController(patched.config.TrainConfig.default_values())
    controller.train_config.from_dict(SDXL_LORA)  # what was on screen
    controller.load_preset(str(fragment))
    assert str(controller.train_config.model_type) == "STABLE_DIFFUSION_15"
    assert str(controller.train_config.optimizer.optimizer) == FCOMPASS


def test_merge_onto_a_saved_config_path_and_for_prodigy(
    patched: SimpleNamespace, checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("yaml")
    saved = patched.config.TrainConfig.default_values().from_dict(SDXL_LORA).to_dict()  # "Save config"
    (checkout / "training_configs").mkdir()
    (checkout / "training_configs" / "mine.json").write_text(json.dumps(saved), encoding="utf-8")
    assert export_onto(checkout, "training_configs/mine.json", "default/Prodigy") == 0
    written = checkout / "training_presets" / "personalized" / "#mine with default-Prodigy.json"
    merged = json.loads(written.read_text(encoding="utf-8"))
    assert merged["__version"] == 11 and merged["model_type"] == "STABLE_DIFFUSION_XL_10_BASE"
    assert "fused_back_pass" not in merged["optimizer"]
    assert "Prodigy cannot do" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--onto", "#nothing like it"], r"neither a file nor a preset .* e\.g\. '#sdxl 1\.0 LoRA'"),
        (["--onto", "old.json"], r"older OneTrainer \(config version 9; this one writes 11\).*Save config"),
        ([], "needs --onto"),
    ],
)
def test_menu_preset_refusals_say_what_to_do(
    checkout: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    pytest.importorskip("yaml")
    (checkout / "old.json").write_text(json.dumps({**SDXL_LORA, "__version": 9}), encoding="utf-8")
    command = ["export", "rvc/FCompass", "--to", "onetrainer-json", "--write", str(checkout), *arguments]
    assert cli.main(command) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the note on settings without a field
    assert error.startswith("personalized: error: ") and re.search(message, error)
    assert not (checkout / "training_presets" / "personalized").exists()
    assert cli.main(["export", "rvc/FCompass", "--to", "onetrainer-json", "--onto", "x"]) == 2


# -- the patch itself --------------------------------------------------------------------------


def test_patching_twice_is_harmless(patched: SimpleNamespace) -> None:
    Optimizer = patched.enum.Optimizer
    count, create = len(Optimizer), patched.create.create_optimizer
    table = dict(patched.util.OPTIMIZER_DEFAULT_PARAMETERS)
    patch.patch(patched.enum, patched.util, patched.create)
    assert len(Optimizer) == count and patched.create.create_optimizer is create
    assert patched.util.OPTIMIZER_DEFAULT_PARAMETERS == table
    assert Optimizer.PERSONALIZED_PRODIGY.is_adaptive and not Optimizer[FCOMPASS].is_adaptive


class Optimizer(enum.Enum):
    """Only for the fake ``create_optimizer`` functions below (they are parsed, never called)."""

    ADAMW = "ADAMW"


def create_with_default_case(parameter_group_collection, state_dict, config, layer_key_fn=None):
    """Restores with param_group_mapping, param_group_optimizer_mapping, unique_name_mapping."""
    match config.optimizer.optimizer:
        case Optimizer.ADAMW:
            return torch.optim.AdamW(parameter_group_collection)
        case _:
            raise ValueError("unknown optimizer")


def create_building_ours(parameter_group_collection, state_dict, config, layer_key_fn=None):
    """Restores with param_group_mapping, param_group_optimizer_mapping, unique_name_mapping."""
    match config.optimizer.optimizer:
        case Optimizer.ADAMW | Optimizer.PERSONALIZED_FCOMPASS:
            return torch.optim.AdamW(parameter_group_collection)


def create_with_new_parameter(parameter_group_collection, state_dict, config, layer_key_fn=None, device=None):
    """Restores with param_group_mapping, param_group_optimizer_mapping, unique_name_mapping."""
    match config.optimizer.optimizer:
        case Optimizer.ADAMW:
            return torch.optim.AdamW(parameter_group_collection)


def create_restoring_differently(parameter_group_collection, state_dict, config, layer_key_fn=None):
    match config.optimizer.optimizer:
        case Optimizer.ADAMW:
            return torch.optim.AdamW(parameter_group_collection)


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        (create_with_default_case, "default case"),
        (create_building_ours, "builds PERSONALIZED_FCOMPASS itself"),
        (create_with_new_parameter, "now takes"),
        (create_restoring_differently, "restores state differently"),
        (None, "no longer has create_optimizer"),
    ],
)
def test_a_changed_create_optimizer_fails_loudly(ot: SimpleNamespace, fake: Any, message: str) -> None:
    module = ModuleType("modules.util.create")
    if fake is not None:
        module.create_optimizer = fake
    with pytest.raises(OneTrainerChanged, match=message) as raised:
        patch.patch_create(module)
    assert "PERSONALIZED_ONETRAINER=off" in str(raised.value)
    patch.patch_create(ot.create)  # the stand-in itself passes


def test_create_optimizer_building_our_member_at_run_time_fails_loudly(patched: SimpleNamespace) -> None:
    wrapped = patch._wrap(lambda *args: torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    groups = collection(patched, make_params(), {"unet": None})
    with pytest.raises(OneTrainerChanged, match="builds PERSONALIZED_FCOMPASS itself"):
        wrapped(groups, None, picked_in_ui(patched, FCOMPASS))


def enum_module(members: dict[str, str], mixin: type | None = None) -> ModuleType:
    module = ModuleType("modules.util.enum.Optimizer")
    module.Optimizer = enum.Enum("Optimizer", members, type=mixin)  # type: ignore[attr-defined]
    module.Optimizer.__str__ = lambda self: self.value  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (enum_module({"ADAMW": "ADAMW", FCOMPASS: FCOMPASS}), "member PERSONALIZED_FCOMPASS of its own"),
        (enum_module({"ADAM": "ADAM"}), "no longer has ADAMW"),
        (enum_module({"ADAMW": "ADAMW"}, mixin=str), "mixes in a data type"),
        (ModuleType("modules.util.enum.Optimizer"), "no longer an Enum"),
    ],
)
def test_a_changed_enum_fails_loudly(module: ModuleType, message: str) -> None:
    with pytest.raises(OneTrainerChanged, match=message):
        patch.patch_enum(module)


def test_a_changed_defaults_table_fails_loudly(ot: SimpleNamespace) -> None:
    module = ModuleType("modules.util.optimizer_util")
    with pytest.raises(OneTrainerChanged, match="OPTIMIZER_DEFAULT_PARAMETERS"):
        patch.patch_defaults(module)
    module.__dict__.update(vars(ot.util))
    module.OPTIMIZER_DEFAULT_PARAMETERS = {"ADAMW": {}}
    with pytest.raises(OneTrainerChanged, match="keyed by Optimizer members"):
        patch.patch_defaults(module)


def test_checkout_check_reads_the_files_without_importing_them(tmp_path: Path) -> None:
    folder = tmp_path / "OneTrainer"
    shutil.copytree(STANDIN, folder)
    patch.check_checkout(folder)
    create = folder / "modules/util/create.py"
    create.write_text(create.read_text().replace("case Optimizer.SCHEDULE_FREE_ADAMW:", "case _:"))
    with pytest.raises(OneTrainerChanged, match="default case"):
        patch.check_checkout(folder)
    assert not [name for name in sys.modules if name.split(".")[0] == "modules"]


# -- activation: the .pth in a fresh interpreter -----------------------------------------------

PROBE = """
import json, os, site, sys
site_dir, standin = sys.argv[1], sys.argv[2]
site.addsitedir(site_dir)
report = {
    "hook": "personalized_hooks.onetrainer" in sys.modules,
    "torch at start": "torch" in sys.modules,
    "personalized at start": "personalized" in sys.modules,
}
if "personalized_hooks.onetrainer" in sys.modules:
    report["markers"] = list(sys.modules["personalized_hooks.onetrainer"].MARKERS)
if standin:
    sys.path.insert(0, standin)
    import modules.util.enum.Optimizer as optimizer_enum
    report["patched after the enum import"] = "personalized.integrations.onetrainer.patch" in sys.modules
    report["member"] = "PERSONALIZED_FCOMPASS" in optimizer_enum.Optimizer.__members__
if standin and report["member"]:
    from modules.util.config.TrainConfig import TrainConfig
    from modules.util.NamedParameterGroup import NamedParameterGroup, NamedParameterGroupCollection
    from modules.util import create, optimizer_util
    import torch
    config = TrainConfig.default_values().from_dict({"optimizer": {"optimizer": "PERSONALIZED_FCOMPASS"}})
    report["config"] = str(config.optimizer.optimizer)
    report["defaults"] = optimizer_util.OPTIMIZER_DEFAULT_PARAMETERS[config.optimizer.optimizer]
    groups = NamedParameterGroupCollection()
    groups.add_group(NamedParameterGroup("unet", [torch.nn.Parameter(torch.ones(2))], None))
    report["built"] = type(create.create_optimizer(groups, None, config)).__name__
print(json.dumps(report))
"""


def run_probe(site: Path, standin: Path | str, tmp_path: Path, **env: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(site), str(standin)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_pth_does_nothing_heavy_when_onetrainer_is_not_running(site_dir: Path, tmp_path: Path) -> None:
    onetrainer.install(None, sys.executable)
    report = run_probe(site_dir, "", tmp_path)
    assert report == {
        "hook": True,
        "torch at start": False,
        "personalized at start": False,
        "markers": list(onetrainer.MARKERS),
    }


def test_pth_patches_onetrainer_when_its_modules_are_imported(site_dir: Path, tmp_path: Path) -> None:
    onetrainer.install(STANDIN, sys.executable)
    report = run_probe(site_dir, STANDIN, tmp_path)
    assert report["torch at start"] is False and report["personalized at start"] is False
    assert report["patched after the enum import"] is True and report["member"] is True
    assert report["config"] == FCOMPASS
    assert report["defaults"] == {
        "beta1": 0.99,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.1,
        "fused_back_pass": False,
    }
    assert report["built"] == "FCompass"


def test_pth_leaves_other_modules_packages_alone(site_dir: Path, tmp_path: Path) -> None:
    """A ``modules.util.enum.Optimizer`` outside a OneTrainer checkout is not patched."""
    other = tmp_path / "other"
    (other / "modules/util/enum").mkdir(parents=True)
    shutil.copy(STANDIN / "modules/util/enum/Optimizer.py", other / "modules/util/enum/Optimizer.py")
    onetrainer.install(None, sys.executable)
    report = run_probe(site_dir, other, tmp_path)
    assert report["patched after the enum import"] is False and report["member"] is False


def test_pth_can_be_switched_off_for_one_run(site_dir: Path, tmp_path: Path) -> None:
    onetrainer.install(None, sys.executable)
    report = run_probe(site_dir, STANDIN, tmp_path, PERSONALIZED_ONETRAINER="off")
    assert report["hook"] is True and report["member"] is False


# -- personalized install / uninstall onetrainer -----------------------------------------------


def test_cli_install_and_uninstall(site_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["install", "onetrainer", str(STANDIN), "--python", sys.executable]) == 0
    written = site_dir / "personalized-onetrainer.pth"
    assert written.read_text(encoding="utf-8") == pth.pth_line("personalized_hooks.onetrainer")
    out = capsys.readouterr().out
    assert f"checked {STANDIN}" in out and f"wrote {written}" in out
    assert f"personalized uninstall onetrainer --python {sys.executable}" in out
    assert cli.main(["uninstall", "onetrainer", "--python", sys.executable]) == 0
    assert not written.exists() and f"removed {written}" in capsys.readouterr().out
    assert cli.main(["uninstall", "onetrainer", "--python", sys.executable]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_cli_refuses_a_folder_that_is_not_onetrainer(
    site_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["install", "onetrainer", str(tmp_path), "--python", sys.executable]) == 2
    err = capsys.readouterr().err
    assert "does not look like OneTrainer: modules/util/enum/Optimizer.py is missing" in err
    assert len(err.strip().splitlines()) == 1
    assert not list(site_dir.iterdir())


def test_install_refuses_a_onetrainer_it_cannot_patch(site_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "OneTrainer"
    shutil.copytree(STANDIN, folder)
    enum_file = folder / "modules/util/enum/Optimizer.py"
    enum_file.write_text(
        enum_file.read_text().replace('    SGD = "SGD"', '    SGD = "SGD"\n    PERSONALIZED_SCORN = "X"')
    )
    with pytest.raises(ValueError, match="member PERSONALIZED_SCORN of its own"):
        onetrainer.install(folder, sys.executable)
    assert not list(site_dir.iterdir())


def test_install_refuses_a_python_without_the_package(site_dir: Path, tmp_path: Path) -> None:
    venv.create(tmp_path / "env", with_pip=False)
    python = next(p for p in [tmp_path / "env/bin/python", tmp_path / "env/Scripts/python.exe"] if p.exists())
    with pytest.raises(ValueError, match="personalized-optimizers is not installed for"):
        onetrainer.install(None, str(python))
    with pytest.raises(ValueError, match="cannot run"):
        onetrainer.install(None, str(tmp_path / "no-such-python"))
    assert not list(site_dir.iterdir())


def test_install_points_at_onetrainers_own_venv(site_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "OneTrainer"
    shutil.copytree(STANDIN, folder)
    (folder / "venv/bin").mkdir(parents=True)
    (folder / "venv/bin/python").touch()
    lines = onetrainer.install(folder, None)
    assert (
        f"note: OneTrainer has its own environment {folder / 'venv'}; if it runs from there, use --python"
        in "\n".join(lines)
    )

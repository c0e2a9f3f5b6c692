"""diffusion-pipe and the Chroma trainer: ``[optimizer] type = "Personalized<Name>"`` through ``pytorch_optimizer``.

The trainers' side of the contract is re-stated in ``diffusion_pipe_standin``
(from their train.py; see its docstring); these tests drive our optimizers
through it with the real ``pytorch_optimizer`` package.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import diffusion_pipe_standin as standin
import pytest
import pytorch_optimizer
import torch

import personalized
from personalized import cli, exporters, guarding, presets
from personalized.integrations import diffusion_pipe, pth

TESTS = Path(__file__).parent
DEFAULT_PRESETS = [f"default/{name}" for name in personalized.available()]


@pytest.fixture
def injected() -> Iterator[ModuleType]:
    """``pytorch_optimizer`` with our names, restored afterwards.

    Importing ``personalized_hooks.diffusion_pipe`` injects at once (``pytorch_optimizer`` is
    imported), so the tests import it only inside this fixture.
    """
    before = set(vars(pytorch_optimizer))
    yield diffusion_pipe.inject()
    for name in set(vars(pytorch_optimizer)) - before:
        delattr(pytorch_optimizer, name)


@pytest.fixture
def site_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary site-packages folder that ``personalized install`` writes into."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.setattr(pth, "site_packages", lambda python=None: folder)
    return folder


def preset_config(name: str) -> dict[str, Any]:
    """``[optimizer]`` of ``personalized export NAME --to toml``, as the trainers read it."""
    return standin.read_config(exporters.toml(presets.load(name)))["optimizer"]


def train(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], seeds: range) -> None:
    """DeepSpeed-style steps: zero_grad(), backward, step() without a closure."""
    for seed in seeds:
        optimizer.zero_grad()
        standin.loss(params, seed).backward()
        optimizer.step()


def train_and_log(
    trainer: str, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], steps: int
) -> list[dict[str, Any]]:
    """The trainer's loop with a 2-step warm-up and ``logging_steps = 1``: what it logged at each step."""
    scheduler = standin.lr_scheduler(optimizer, warmup_steps=2)
    logs = []
    for seed in range(steps):
        train(optimizer, params, range(seed, seed + 1))
        scheduler.step()
        logs.append(standin.logged(trainer, optimizer))
    return logs


def snapshot(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def assert_trained(before: list[torch.Tensor], params: list[torch.nn.Parameter]) -> None:
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(old, p.detach()) for old, p in zip(before, params))


# -- names ----------------------------------------------------------------------------------------


def test_every_optimizer_has_a_collision_free_type() -> None:
    names = diffusion_pipe.type_names()
    assert names == ["Personalized" + name for name in personalized.available()]
    assert len(names) == 13
    for name in names:
        assert name not in vars(pytorch_optimizer)
        assert all(name.lower() not in table for table in standin.BUILTIN_TYPES.values())


@pytest.mark.parametrize("trainer", standin.TRAINERS)
@pytest.mark.parametrize("name", personalized.available())
def test_trainer_lookup_finds_our_class(injected: ModuleType, trainer: str, name: str) -> None:
    klass, kwargs = standin.lookup({"type": "Personalized" + name, "lr": 1e-3}, trainer)
    assert klass is personalized.get_optimizer(name)
    assert kwargs == {"lr": 1e-3}


@pytest.mark.parametrize(
    ("trainer", "toml_type"),
    [
        ("chroma", "scorn"),
        ("chroma", "SCORN"),
        ("chroma", "adafactor"),
        ("chroma", "remaster"),
        ("chroma", "persona"),
        ("chroma", "AdamW8bitKahan"),
        ("chroma", "automagic"),
        ("diffusion-pipe", "AdamW8bitKahan"),
        ("diffusion-pipe", "Automagic"),
    ],
)
def test_trainer_types_keep_the_trainers_classes(injected: ModuleType, trainer: str, toml_type: str) -> None:
    assert standin.lookup({"type": toml_type}, trainer)[0] == standin.BuiltIn(trainer, toml_type.lower())


@pytest.mark.parametrize("trainer", standin.TRAINERS)
def test_prodigy_stays_pytorch_optimizers(injected: ModuleType, trainer: str) -> None:
    klass = standin.lookup({"type": "Prodigy"}, trainer)[0]
    assert klass is vars(pytorch_optimizer)["Prodigy"]
    assert klass is not personalized.get_optimizer("Prodigy")
    assert standin.lookup({"type": "PersonalizedProdigy"}, trainer)[0] is personalized.get_optimizer("Prodigy")


def test_unknown_personalized_type_suggests_ours(injected: ModuleType) -> None:
    with pytest.raises(AttributeError, match="Did you mean PersonalizedFCompass"):
        standin.lookup({"type": "PersonalizedFCompas"}, "chroma")
    assert not hasattr(pytorch_optimizer, "PersonalizedNoSuchThing")
    assert not hasattr(pytorch_optimizer, "NoSuchThing")


@pytest.mark.parametrize(
    ("name", "package", "module", "extra"),
    [
        ("AdamW8bitKahan", "bitsandbytes", "adamw8bit_kahan", "bnb"),
        ("Prodigy", "prodigyopt", "prodigy", "prodigy"),
    ],
)
def test_missing_extra_names_it_and_spares_the_rest(
    injected: ModuleType, monkeypatch: pytest.MonkeyPatch, name: str, package: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.delitem(sys.modules, f"personalized.optimizers.{module}", raising=False)
    with pytest.raises(ImportError, match=rf"Personalized{name}.*personalized-optimizers\[{extra}\]"):
        standin.lookup({"type": "Personalized" + name}, "diffusion-pipe")
    assert f"Personalized{name}" not in vars(pytorch_optimizer)
    assert standin.lookup({"type": "PersonalizedFCompass"}, "diffusion-pipe")[0] is personalized.FCompass


def test_lazy_names_keep_the_modules_own_getattr(injected: ModuleType) -> None:
    from personalized_hooks.diffusion_pipe import add_lazy_names

    module = ModuleType("fake_optimizers")
    module.__getattr__ = lambda name: f"own {name}"  # type: ignore[attr-defined]
    add_lazy_names(module)
    add_lazy_names(module)
    assert module.Lion == "own Lion"
    assert module.PersonalizedSCORN is personalized.SCORN
    assert vars(module)["PersonalizedSCORN"] is personalized.SCORN
    bare = ModuleType("bare")
    add_lazy_names(bare)
    with pytest.raises(AttributeError, match="has no attribute 'Lion'"):
        bare.Lion  # noqa: B018


def test_only_prefixed_names_are_ours(injected: ModuleType) -> None:
    from personalized_hooks.diffusion_pipe import is_ours

    assert is_ours("PersonalizedFCompass") and is_ours("personalizedSCORN")
    assert not is_ours("Personalized") and not is_ours("Prodigy") and not is_ours("__path__")


# -- the normal construction path -----------------------------------------------------------------


@pytest.mark.parametrize("trainer", standin.TRAINERS)
@pytest.mark.parametrize("preset", presets.available())
def test_normal_path_trains_and_resumes(injected: ModuleType, trainer: str, preset: str) -> None:
    """Every preset, exported with ``--to toml``, runs as printed: read, built, scheduled, stepped, logged, resumed."""
    config = preset_config(preset)
    klass, kwargs = standin.lookup(config, trainer)
    assert klass is personalized.get_optimizer(presets.load(preset).optimizer)
    params = standin.make_params()
    optimizer = standin.build_normal(trainer, klass, kwargs, params)
    if trainer == "diffusion-pipe":
        assert [group["weight_decay"] for group in optimizer.param_groups][1] == 0
        assert [len(group["params"]) for group in optimizer.param_groups] == [2, 2]
    if "betas" in kwargs:
        assert isinstance(kwargs["betas"], list)
        assert all(group["betas"] == tuple(kwargs["betas"]) for group in optimizer.param_groups)
    before = snapshot(params)
    train_and_log(trainer, optimizer, params, 3)
    assert_trained(before, params)
    assert_resumes_exactly(trainer, klass, kwargs, optimizer, params)


def assert_resumes_exactly(
    trainer: str,
    klass: type,
    kwargs: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
) -> None:
    """A fresh instance loaded from ``state_dict()`` takes the same next step as the original."""
    saved = copy.deepcopy(optimizer.state_dict())
    twins = standin.make_params(seed=1)
    with torch.no_grad():
        for twin, p in zip(twins, params):
            twin.copy_(p)
    resumed = standin.build_normal(trainer, klass, copy.deepcopy(kwargs), twins)
    resumed.load_state_dict(saved)
    torch.manual_seed(0)
    train(optimizer, params, range(10, 11))
    torch.manual_seed(0)
    train(resumed, twins, range(10, 11))
    assert all(torch.equal(p, twin) for p, twin in zip(params, twins))


def test_presets_for_these_trainers_have_an_lr() -> None:
    for name in presets.available():
        if {"chroma", "diffusion-pipe"} & set(presets.load(name).trainers):
            assert presets.load(name).lr is not None


def test_relative_step_preset_is_exported_with_an_lr(injected: ModuleType) -> None:
    """diffusion-pipe's scheduler needs every group's lr: Adafactor's relative step comes as its fixed-lr form."""
    config = preset_config("default/EnhancedAdafactor")
    assert (config["lr"], config["relative_step"], config["scale_parameter"]) == (1e-2, False, True)
    klass, kwargs = standin.lookup(config, "diffusion-pipe")
    params = standin.make_params()
    optimizer = standin.build_normal("diffusion-pipe", klass, kwargs, params)
    standin.lr_scheduler(optimizer, warmup_steps=2)
    assert [group["lr"] for group in optimizer.param_groups] == [1e-2 / 2] * 2


def test_toml_arrays_mixing_whole_and_fractional_numbers_load() -> None:
    """The ``toml`` package both trainers use refuses arrays of mixed types: whole numbers become floats."""
    preset = presets.load("default/FCompass")
    exported = exporters.toml(replace(preset, hyperparameters={**preset.hyperparameters, "betas": [0.9, 1]}))
    assert standin.read_config(exported)["optimizer"]["betas"] == [0.9, 1.0]


def test_diffusion_pipe_groups_keep_their_lr_and_weight_decay(injected: ModuleType) -> None:
    config = standin.read_config('[optimizer]\ntype = "PersonalizedFCompass"\nlr = 1e-3\nweight_decay = 0.05\n')
    klass, kwargs = standin.lookup(config["optimizer"], "diffusion-pipe")
    optimizer = standin.build_normal("diffusion-pipe", klass, kwargs, standin.make_params(), lrs=(1e-3, 5e-4))
    settings = [(group["lr"], group["weight_decay"], len(group["params"])) for group in optimizer.param_groups]
    assert settings == [(1e-3, 0.05, 1), (1e-3, 0, 1), (5e-4, 0.05, 1), (5e-4, 0, 1)]


def test_diffusion_pipe_beta2_half_life(injected: ModuleType) -> None:
    config = {"type": "PersonalizedFCompass", "betas": [0.9, 0.99], "beta2_half_life": 64}
    klass, kwargs = standin.lookup(config, "diffusion-pipe", global_batch_size=4)
    optimizer = standin.build_normal("diffusion-pipe", klass, kwargs, standin.make_params())
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.5 ** (4 / 64))


def test_prodigy_exposes_d_as_the_trainers_log_it(injected: ModuleType) -> None:
    klass, kwargs = standin.lookup(preset_config("chroma/prodigy"), "diffusion-pipe")
    params = standin.make_params()
    optimizer = standin.build_normal("diffusion-pipe", klass, kwargs, params)
    logs = train_and_log("diffusion-pipe", optimizer, params, 3)
    assert type(optimizer).__name__ == "Prodigy"
    assert logs[-1]["train/prodigy_d"] > 0
    assert all(group["d_lr"] == group["d"] * group["lr"] for group in optimizer.param_groups)


@pytest.mark.parametrize("foreach", [True, False])
def test_automagic_lrs_are_logged_as_diffusion_pipe_reads_them(injected: ModuleType, foreach: bool) -> None:
    """train.py calls ``_get_lr(group, state)`` for each parameter of a class named Automagic and stacks them."""
    klass, kwargs = standin.lookup({**preset_config("chroma/automagic"), "foreach": foreach}, "diffusion-pipe")
    params = standin.make_params()
    optimizer = standin.build_normal("diffusion-pipe", klass, kwargs, params)
    assert type(optimizer).__name__ == "Automagic"
    lrs, avg_lr = standin.automagic_lrs(optimizer)  # before the first step: zeros, nothing logged
    assert torch.equal(lrs, torch.zeros(len(params))) and standin.logged("diffusion-pipe", optimizer) == {}
    logs = train_and_log("diffusion-pipe", optimizer, params, 3)
    lrs, avg_lr = logs[-1]["train/automagic_lrs"], logs[-1]["train/automagic_avg_lr"]
    in_groups = [p for group in optimizer.param_groups for p in group["params"]]
    per_element = [optimizer.state[p]["lr_mask"].float() * optimizer.state[p]["lr_mask_scale"] for p in in_groups]
    assert lrs.shape == (len(params),) and lrs.dtype == torch.float32
    assert torch.allclose(lrs, torch.stack([lr.mean() for lr in per_element]), rtol=0.01)
    assert avg_lr == lrs.mean() and 1e-7 <= avg_lr <= 1e-3


def test_automagic_lrs_with_frozen_parameters(injected: ModuleType) -> None:
    """Parameter swapping freezes parameters, which then have no state: their lr is logged as 0."""
    config = {**preset_config("chroma/automagic"), "do_paramiter_swapping": True, "paramiter_swapping_factor": 0.5}
    klass, kwargs = standin.lookup(config, "diffusion-pipe")
    params = standin.make_params()
    optimizer = standin.build_normal("diffusion-pipe", klass, kwargs, params)
    logs = train_and_log("diffusion-pipe", optimizer, params, 2)
    frozen = [not p.requires_grad for group in optimizer.param_groups for p in group["params"]]
    assert any(frozen) and not all(frozen)
    lrs = logs[-1]["train/automagic_lrs"]
    assert all((lr == 0) == still for lr, still in zip(lrs.tolist(), frozen))


# -- gradient release: one instance per parameter -------------------------------------------------


def release_config(preset: str) -> dict[str, Any]:
    return {**preset_config(preset), "gradient_release": True}


@pytest.mark.parametrize("trainer", standin.TRAINERS)
@pytest.mark.parametrize("preset", DEFAULT_PRESETS)
def test_gradient_release_trains_and_resumes(injected: ModuleType, trainer: str, preset: str) -> None:
    gas = 2
    klass, kwargs = standin.lookup(release_config(preset), trainer)
    betas = kwargs.get("betas")
    original = list(betas) if betas is not None else None
    params = standin.make_params()
    lrs = (kwargs["lr"], kwargs["lr"] / 2) if trainer == "diffusion-pipe" else None
    wrapper = standin.build_gradient_release(trainer, klass, kwargs, params, gas, lrs)
    assert kwargs.get("foreach", "absent") is (False if klass.item_batched else "absent")
    assert all(group.get("foreach", False) is False for group in wrapper.param_groups)
    assert len(wrapper.optimizers) == len(params)
    if betas is not None:
        assert kwargs["betas"] is betas and betas == [beta ** (1 / gas) for beta in original]
        scaled = tuple(betas)
        betas[0] = 0.5  # the caller's list changes after construction: our instances must not follow
        assert all(group["betas"] == scaled for group in wrapper.param_groups)
    if lrs is not None:
        assert [group["lr"] for group in wrapper.param_groups] == [lrs[0], lrs[0], lrs[1], lrs[1]]
    before = snapshot(params)
    release_steps(wrapper, params, range(2 * gas))
    assert all(p.grad is None for p in params)
    assert_trained(before, params)

    saved = copy.deepcopy(wrapper.state_dict())
    twins = standin.make_params(seed=1)
    with torch.no_grad():
        for twin, p in zip(twins, params):
            twin.copy_(p)
    _, fresh_kwargs = standin.lookup(release_config(preset), trainer)
    resumed = standin.build_gradient_release(trainer, klass, fresh_kwargs, twins, gas, lrs)
    resumed.load_state_dict(saved)
    torch.manual_seed(0)
    release_steps(wrapper, params, range(10, 11))
    torch.manual_seed(0)
    release_steps(resumed, twins, range(10, 11))
    assert all(torch.equal(p, twin) for p, twin in zip(params, twins))


def release_steps(wrapper: torch.optim.Optimizer, params: list[torch.nn.Parameter], seeds: range) -> None:
    """Micro-batches under gradient release: the hooks step; DeepSpeed's step()/zero_grad() do nothing."""
    for seed in seeds:
        standin.loss(params, seed).backward()
        wrapper.step()
        wrapper.zero_grad()


@pytest.mark.parametrize("name", personalized.available())
def test_gradient_release_finds_foreach_in_the_signature(name: str) -> None:
    """The trainers pass foreach=False to one-parameter optimizers whose signature has it: all of ours
    with a multi-tensor path (AdamW8bitKahan and Prodigy have none)."""
    klass = personalized.get_optimizer(name)
    assert ("foreach" in inspect.signature(klass).parameters) is klass.item_batched


# -- against the trainers' real train.py, when a checkout is given ---------------------------------


@pytest.fixture(params=standin.TRAINERS)
def checkout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A trainer checkout named by $DIFFUSION_PIPE_DIR / $DIFFUSION_CHROMA_DIR (skipped without)."""
    trainer = request.param
    variable = standin.CHECKOUT_VARIABLES[trainer]
    folder = os.environ.get(variable)
    if not folder:
        pytest.skip(f"set {variable} to a {trainer} checkout to run its real get_optimizer")
    monkeypatch.syspath_prepend(folder)
    for name in [name for name in sys.modules if name.split(".")[0] == "optimizers"]:
        monkeypatch.delitem(sys.modules, name)
    return trainer, Path(folder)


def group_settings(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    return [{**group, "params": len(group["params"])} for group in optimizer.param_groups]


@pytest.mark.parametrize("gradient_release", [False, True])
@pytest.mark.parametrize("preset", DEFAULT_PRESETS)
def test_real_get_optimizer_matches_the_standin(
    injected: ModuleType, checkout: tuple[str, Path], preset: str, gradient_release: bool
) -> None:
    """The trainer's own closure builds the same optimizers, with the same groups, that train the same."""
    trainer, folder = checkout
    gas = 2
    config = {**release_config(preset), "gradient_release": gradient_release}
    lrs = None
    if trainer == "diffusion-pipe":  # SDXL's per-group lrs; prodigyopt allows only one lr (or 0) per optimizer
        lrs = (config["lr"], config["lr"] if presets.load(preset).optimizer == "Prodigy" else config["lr"] / 2)
    real_params, params = standin.make_params(), standin.make_params()
    get_optimizer = standin.real_get_optimizer(trainer, folder, {"optimizer": copy.deepcopy(config)}, gas, lrs)
    real = get_optimizer(real_params)
    klass, kwargs = standin.lookup(copy.deepcopy(config), trainer, global_batch_size=gas)
    if gradient_release:
        ours = standin.build_gradient_release(trainer, klass, kwargs, params, gas, lrs)
        assert [type(o) for o in real.optimizers] == [type(o) for o in ours.optimizers] == [klass] * len(params)
        release_steps(real, real_params, range(2 * gas))
        release_steps(ours, params, range(2 * gas))
    else:
        ours = standin.build_normal(trainer, klass, kwargs, params, lrs)
        assert type(real) is type(ours) is klass
        train(real, real_params, range(3))
        train(ours, params, range(3))
    assert group_settings(real) == group_settings(ours)
    assert all(torch.equal(a, b) for a, b in zip(real_params, params))


def test_real_automagic_logging_matches_the_standin(injected: ModuleType, checkout: tuple[str, Path]) -> None:
    """The checkout's own ``_get_automagic_lrs`` on our Automagic."""
    trainer, folder = checkout
    klass, kwargs = standin.lookup(preset_config("chroma/automagic"), trainer)
    params = standin.make_params()
    optimizer = standin.build_normal(trainer, klass, kwargs, params)
    train(optimizer, params, range(3))
    real = standin.real_function(folder, "_get_automagic_lrs", {"torch": torch})(optimizer)
    ours = standin.automagic_lrs(optimizer)
    assert all(torch.equal(a, b) for a, b in zip(real, ours))


# -- the .pth activation, in a fresh interpreter --------------------------------------------------

PROBE = """
import json, site, sys
report = {}
if len(sys.argv) > 1:
    site.addsitedir(sys.argv[1])
report["hook"] = "personalized_hooks.diffusion_pipe" in sys.modules
report["torch at start"] = "torch" in sys.modules
report["personalized at start"] = "personalized" in sys.modules
import pytorch_optimizer
report["personalized after import"] = "personalized" in sys.modules
report["resolvable"] = hasattr(pytorch_optimizer, "PersonalizedFCompass")
if report["resolvable"]:
    klass = getattr(pytorch_optimizer, "PersonalizedFCompass")
    report["class"] = f"{klass.__module__}.{klass.__qualname__}"
print(json.dumps(report))
"""


def run_python(code: str, *args: str, cwd: Path) -> Any:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_pth_hooks_pytorch_optimizer_lazily(site_dir: Path, tmp_path: Path) -> None:
    assert cli.main(["install", "diffusion-pipe"]) == 0
    report = run_python(PROBE, str(site_dir), cwd=tmp_path)
    assert report == {
        "hook": True,
        "torch at start": False,
        "personalized at start": False,
        "personalized after import": False,
        "resolvable": True,
        "class": "personalized.optimizers.fcompass.FCompass",
    }


def test_without_the_pth_nothing_changes(tmp_path: Path) -> None:
    report = run_python(PROBE, cwd=tmp_path)
    assert report["hook"] is False and report["resolvable"] is False


def test_exported_scorn_preset_builds_our_scorn_through_the_pth(
    site_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["install", "chroma"]) == 0
    capsys.readouterr()
    assert cli.main(["export", "chroma/scorn", "--to", "toml"]) == 0
    exported = capsys.readouterr().out
    code = textwrap.dedent(
        """
        import json, site, sys
        site.addsitedir(sys.argv[1])
        sys.path.insert(0, sys.argv[2])
        import diffusion_pipe_standin as standin
        config = standin.read_config(sys.argv[3])["optimizer"]
        klass, kwargs = standin.lookup(config, "chroma")
        params = standin.make_params()
        optimizer = standin.build_normal("chroma", klass, kwargs, params)
        for seed in range(3):
            optimizer.zero_grad()
            standin.loss(params, seed).backward()
            optimizer.step()
        print(json.dumps({
            "class": f"{klass.__module__}.{klass.__qualname__}",
            "kwargs": kwargs,
            "stepped": len(optimizer.state),
        }))
        """
    )
    report = run_python(code, str(site_dir), str(TESTS), exported, cwd=tmp_path)
    assert report == {
        "class": "personalized.optimizers.scorn.SCORN",
        "kwargs": {"lr": 0.0001, "weight_decay": 0.01},
        "stepped": 4,
    }


# -- personalized install / uninstall -------------------------------------------------------------


def example_from(output: str) -> str:
    """The ``[optimizer]`` table printed by ``personalized install``."""
    start = output.index("\n[optimizer]\n") + 1
    return output[start : output.index("\n\n", start)]


@pytest.mark.parametrize("trainer", ["diffusion-pipe", "chroma"])
def test_cli_install_and_uninstall(
    injected: ModuleType, site_dir: Path, capsys: pytest.CaptureFixture[str], trainer: str
) -> None:
    assert cli.main(["install", trainer]) == 0
    output = capsys.readouterr().out
    written = site_dir / "personalized-diffusion-pipe.pth"
    assert written.read_text(encoding="utf-8") == pth.pth_line("personalized_hooks.diffusion_pipe")
    assert str(written) in output
    assert "pytorch-optimizer must be installed" in output
    assert all(name in output for name in diffusion_pipe.type_names())
    klass, kwargs = standin.lookup(standin.read_config(example_from(output))["optimizer"], "chroma")
    assert klass is personalized.FCompass and kwargs["betas"] == [0.99, 0.999]
    standin.build_normal("chroma", klass, kwargs, standin.make_params())

    assert cli.main(["uninstall", trainer]) == 0
    assert not written.exists()
    assert f"removed {written}" in capsys.readouterr().out
    assert cli.main(["uninstall", trainer]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_install_checks_the_trainer_folder(site_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkout = tmp_path / "diffusion-chroma"
    assert cli.main(["install", "chroma", str(checkout)]) == 2
    checkout.mkdir()
    assert cli.main(["install", "chroma", str(checkout)]) == 2
    assert "has no train.py" in capsys.readouterr().err
    assert not list(site_dir.iterdir())
    (checkout / "optimizers").mkdir()
    (checkout / "optimizers" / "scorn.py").write_text("", encoding="utf-8")
    (checkout / "train.py").write_text("klass = getattr(pytorch_optimizer, optim_type)\n", encoding="utf-8")
    assert cli.main(["install", "chroma", str(checkout)]) == 0
    output = capsys.readouterr().out
    assert f"found the Chroma trainer in {checkout}" in output and "warning" not in output
    (checkout / "train.py").write_text("klass = torch.optim.AdamW\n", encoding="utf-8")
    assert cli.main(["install", "diffusion-pipe", str(checkout)]) == 0
    assert "does not look optimizer types up in pytorch_optimizer" in capsys.readouterr().out


def test_install_warns_when_pytorch_optimizer_is_missing(
    site_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        diffusion_pipe,
        "_importable",
        lambda python, modules: {diffusion_pipe.HOOK_MODULE: True, "pytorch_optimizer": False},
    )
    assert cli.main(["install", "diffusion-pipe"]) == 0
    assert "warning: pytorch_optimizer is missing there" in capsys.readouterr().out


def test_install_refuses_an_environment_without_the_hook(
    site_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        diffusion_pipe,
        "_importable",
        lambda python, modules: {diffusion_pipe.HOOK_MODULE: False, "pytorch_optimizer": True},
    )
    assert cli.main(["install", "diffusion-pipe"]) == 2
    assert " -m pip install " in capsys.readouterr().err
    assert not list(site_dir.iterdir())


def test_install_reports_a_python_that_cannot_run(
    site_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["install", "diffusion-pipe", "--python", str(tmp_path / "no-python")]) == 2
    assert "cannot run the trainer's Python" in capsys.readouterr().err


def test_importable_probes_the_real_interpreter() -> None:
    found = diffusion_pipe._importable(sys.executable, [diffusion_pipe.HOOK_MODULE, "pytorch_optimizer", "no_such_mod"])
    assert found == {diffusion_pipe.HOOK_MODULE: True, "pytorch_optimizer": True, "no_such_mod": False}


# -- the NaN guard from the [optimizer] table ------------------------------------------------------

GUARDED_TOML = """\
[optimizer]
type = "PersonalizedFCompass"
lr = 1e-3
nan_guard = "stop"
nan_guard_patience = 1
"""


def nan_train(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], steps: int) -> None:
    """DeepSpeed-style steps whose loss is NaN."""
    for seed in range(steps):
        optimizer.zero_grad()
        (standin.loss(params, seed) * float("nan")).backward()
        optimizer.step()


def fallback_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "applying fallback" in line]


@pytest.fixture
def fresh_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each console line is printed once per process: start with none printed."""
    monkeypatch.setattr(guarding, "_printed", set())


@pytest.mark.usefixtures("fresh_console")
@pytest.mark.parametrize("trainer", standin.TRAINERS)
def test_nan_guard_from_the_optimizer_table_falls_back_resumes_and_stops(
    injected: ModuleType, trainer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    klass, kwargs = standin.lookup(standin.read_config(GUARDED_TOML)["optimizer"], trainer)
    params = standin.make_params()
    before = snapshot(params)
    optimizer = standin.build_normal(trainer, klass, copy.deepcopy(kwargs), params)
    scheduler = standin.lr_scheduler(optimizer, warmup_steps=2)
    assert type(optimizer).__name__ == "FCompass" and optimizer.nan_guard.stop
    for _ in range(2):
        nan_train(optimizer, params, steps=1)
        scheduler.step()
    assert fallback_lines(capsys) == [
        "personalized: non-finite values 1 time; applying fallback 1 of 3 from preset default/FCompass: "
        "betas=(0.9, 0.99)",
        "personalized: non-finite values 1 time; applying fallback 2 of 3 from preset default/FCompass: "
        "centralization=0.0",
    ]
    # DeepSpeed's checkpoint, resumed with --reset_optimizer_params: the groups are put back afterwards
    saved = copy.deepcopy(optimizer.state_dict())
    resumed = standin.build_normal(trainer, klass, copy.deepcopy(kwargs), params)
    fresh_groups = resumed.param_groups.copy()
    resumed.load_state_dict(saved)
    assert resumed.nan_guard.fallbacks_applied == 2
    resumed.param_groups = fresh_groups
    nan_train(resumed, params, steps=1)
    assert resumed.param_groups[0]["clip"] == 0.0 and resumed.param_groups[0]["centralization"] == 1.0
    with pytest.raises(personalized.nan_guard.NonFiniteTraining, match="after all 3 fallbacks"):
        nan_train(resumed, params, steps=1)
    assert all(torch.equal(a, b) for a, b in zip(before, params))


@pytest.mark.parametrize("name", ["Prodigy", "Automagic"])
def test_guarded_optimizers_are_still_logged_by_class_name(injected: ModuleType, name: str) -> None:
    config = {**preset_config(f"default/{name}"), "nan_guard": True}
    klass, kwargs = standin.lookup(config, "diffusion-pipe")
    params = standin.make_params()
    optimizer = standin.build_normal("diffusion-pipe", klass, kwargs, params)
    assert optimizer.nan_guard is not None
    logs = train_and_log("diffusion-pipe", optimizer, params, steps=3)
    expected = {"Prodigy": "train/prodigy_d", "Automagic": "train/automagic_avg_lr"}[name]
    assert all(expected in entry for entry in logs)


@pytest.mark.usefixtures("fresh_console")
def test_nan_guard_under_gradient_release_prints_once(injected: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    config = {**standin.read_config(GUARDED_TOML)["optimizer"], "nan_guard": "fallbacks", "gradient_release": True}
    klass, kwargs = standin.lookup(config, "diffusion-pipe")
    params = standin.make_params()
    wrapper = standin.build_gradient_release("diffusion-pipe", klass, kwargs, params, 1, (1e-3, 1e-3))
    before = snapshot(params)
    for seed in range(3):
        (standin.loss(params, seed) * float("nan")).backward()
        wrapper.step()
        wrapper.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(before, params))
    assert all(o.nan_guard.fallbacks_applied == 3 for o in wrapper.optimizers)
    assert len(fallback_lines(capsys)) == 3  # one line per fallback, not one per parameter

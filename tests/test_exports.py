"""Every export of every preset runs in its trainer as printed.

``personalized export PRESET --to FORMAT`` is read the way the trainer reads it
(the stand-ins re-state each trainer's parsing: ``kohya_standin``,
``diffusion_pipe_standin``, ``onetrainer_standin``), the optimizer is built with
the trainer's parameter groups and lr scheduler, and it takes a few steps.
"""

from __future__ import annotations

import inspect
import json
import pydoc
import re
import shlex
from collections.abc import Callable
from dataclasses import replace

import diffusion_pipe_standin
import kohya_standin
import pytest
import torch
from test_diffusion_pipe import injected  # noqa: F401  (the fixture: pytorch_optimizer with our names)
from test_onetrainer import collection, init, new_model, ot, patched  # noqa: F401  (fixtures: OneTrainer's stand-in)
from test_onetrainer import make_params as onetrainer_params

import personalized
from personalized import cli, exporters, presets
from personalized.base import SHARED_KEYWORDS
from personalized.docstrings import argument_help

from conftest import make_params

#: What a runner gives back: the optimizer, its lr scheduler, and the parameters it trains.
Run = tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, list[torch.nn.Parameter]]


def kohya_args(text: str, preset: presets.Preset, request: pytest.FixtureRequest) -> Run:
    params = make_params()
    return (*kohya_standin.from_command_line(shlex.split(text), params), params)


def kohya_ss_json(text: str, preset: presets.Preset, request: pytest.FixtureRequest) -> Run:
    params = make_params()
    return (*kohya_standin.from_gui_preset(text, params), params)


def fluxtrainer(text: str, preset: presets.Preset, request: pytest.FixtureRequest) -> Run:
    """The args box, with the type and learning_rate the CLI notes (our ARGS node sends both)."""
    params = make_params()
    lr = exporters.with_lr(preset).lr
    return (*kohya_standin.from_fluxtrainer(text, f"personalized.{preset.optimizer}", lr, params), params)


def toml(text: str, preset: presets.Preset, request: pytest.FixtureRequest) -> Run:
    """diffusion-pipe: the ``[optimizer]`` table, SDXL's two lr groups split by weight decay, a warm-up."""
    request.getfixturevalue("injected")
    config = diffusion_pipe_standin.read_config(text)["optimizer"]
    klass, kwargs = diffusion_pipe_standin.lookup(config, "diffusion-pipe")
    params = diffusion_pipe_standin.make_params()
    optimizer = diffusion_pipe_standin.build_normal("diffusion-pipe", klass, kwargs, params)
    return optimizer, diffusion_pipe_standin.lr_scheduler(optimizer, warmup_steps=2), params


def onetrainer_json(text: str, preset: presets.Preset, request: pytest.FixtureRequest) -> Run:
    """OneTrainer: the JSON loaded as a config, ``create_optimizer`` on its groups, its constant scheduler."""
    onetrainer = request.getfixturevalue("patched")
    config = onetrainer.config.TrainConfig.default_values().from_dict(json.loads(text))
    named = onetrainer_params()
    optimizer = init(onetrainer, new_model(config), collection(onetrainer, named, {"unet": None, "te": None}))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0), [named["unet"], named["te"]]


def plain_json(text: str, preset: presets.Preset, request: pytest.FixtureRequest) -> Run:
    """The constructor call: ``get_optimizer(optimizer)(params, **kwargs)``; no scheduler when lr is None."""
    data = json.loads(text)
    params = make_params()
    optimizer = personalized.get_optimizer(data["optimizer"])(params, **data["kwargs"])
    schedule = data["kwargs"]["lr"] is not None
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0) if schedule else None, params


RUNNERS: dict[str, Callable[[str, presets.Preset, pytest.FixtureRequest], Run]] = {
    "kohya-args": kohya_args,
    "kohya_ss-json": kohya_ss_json,
    "fluxtrainer": fluxtrainer,
    "toml": toml,
    "onetrainer-json": onetrainer_json,
    "json": plain_json,
}


def test_every_format_has_a_runner() -> None:
    assert set(RUNNERS) == set(exporters.FORMATS)


def exported(capsys: pytest.CaptureFixture[str], preset: str, to: str) -> str:
    """What ``personalized export PRESET --to TO`` prints on stdout."""
    assert cli.main(["export", preset, "--to", to]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("to", list(RUNNERS))
@pytest.mark.parametrize("name", presets.available())
def test_every_export_runs_in_its_trainer(
    name: str, to: str, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    preset = presets.load(name)
    try:
        personalized.get_optimizer(preset.optimizer)
    except ImportError as error:
        pytest.skip(str(error))
    optimizer, scheduler, params = RUNNERS[to](exported(capsys, name, to), preset, request)
    assert type(optimizer).__name__ == preset.optimizer
    before = [p.detach().clone() for p in params]
    for step in range(3):
        generator = torch.Generator().manual_seed(step)
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(old, p.detach()) for old, p in zip(before, params))


# -- presets without an lr ---------------------------------------------------------------------


def test_relative_step_is_printed_with_the_lr_it_starts_at(capsys: pytest.CaptureFixture[str]) -> None:
    """kohya passes --learning_rate always: the relative step comes as lr 1e-2, relative_step=False."""
    words = shlex.split(exported(capsys, "default/EnhancedAdafactor", "kohya-args"))
    assert words[words.index("--learning_rate") + 1] == "0.01"
    assert "relative_step=False" in words and "scale_parameter=True" in words
    gui = json.loads(exported(capsys, "default/EnhancedAdafactor", "kohya_ss-json"))
    assert gui["learning_rate"] == 0.01 and "relative_step=False" in gui["optimizer_args"]
    assert "relative_step=False" in exported(capsys, "default/EnhancedAdafactor", "fluxtrainer").split("|")
    assert "relative_step = false" in exported(capsys, "default/EnhancedAdafactor", "toml")
    # OneTrainer and the plain constructor call keep the relative step (OneTrainer drops its lr, as for its Adafactor)
    assert json.loads(exported(capsys, "default/EnhancedAdafactor", "onetrainer-json"))["optimizer"]["relative_step"]
    assert json.loads(exported(capsys, "default/EnhancedAdafactor", "json"))["kwargs"]["lr"] is None


def test_the_fixed_lr_form_takes_the_relative_steps_own_steps() -> None:
    """lr 1e-2 with relative_step=False moves exactly as the relative step, min(1e-2, 1/sqrt(t)), up to t = 10,000."""
    preset = presets.load("default/EnhancedAdafactor")
    fixed = exporters.with_lr(preset)
    assert (fixed.lr, (1 / fixed.lr) ** 2) == (1e-2, 10_000)
    relative_params, fixed_params = make_params(), make_params()
    relative = personalized.EnhancedAdafactor(relative_params, **preset.kwargs())
    constant = personalized.EnhancedAdafactor(fixed_params, **fixed.kwargs())
    for step in range(5):
        generator = torch.Generator().manual_seed(step)
        for a, b in zip(relative_params, fixed_params):
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        relative.step()
        constant.step()
    assert all(torch.equal(a, b) for a, b in zip(relative_params, fixed_params))


def test_warmup_init_cannot_be_printed_for_trainers_that_pass_an_lr() -> None:
    preset = presets.load("default/EnhancedAdafactor")
    warm = replace(preset, hyperparameters={**preset.hyperparameters, "warmup_init": True})
    with pytest.raises(ValueError, match=r"warmup_init=True needs Adafactor's relative step"):
        exporters.kohya_args(warm)
    assert json.loads(exporters.plain_json(warm))["kwargs"]["warmup_init"] is True


def test_cli_reports_a_preset_it_cannot_print_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = presets.load("default/EnhancedAdafactor")
    warm = replace(preset, hyperparameters={**preset.hyperparameters, "warmup_init": True})
    monkeypatch.setattr(cli, "_load_preset", lambda name: warm)
    assert cli.main(["export", "default/EnhancedAdafactor", "--to", "toml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warmup_init=True" in err


def test_cli_notes_the_fixed_lr(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "default/EnhancedAdafactor", "--to", "fluxtrainer"]) == 0
    err = capsys.readouterr().err
    assert "printed with lr 0.01 and relative_step=False" in err and "learning_rate 0.01" in err
    assert cli.main(["export", "default/EnhancedAdafactor", "--to", "onetrainer-json"]) == 0
    assert "relative_step=False" not in capsys.readouterr().err


# -- the shared keywords in every signature ----------------------------------------------------


def shared_keyword_classes() -> list[type]:
    return [cls for cls in personalized.optimizers.CATALOGUE if cls.item_batched]


@pytest.mark.parametrize("cls", shared_keyword_classes(), ids=lambda cls: cls.__name__)
def test_shared_keywords_are_in_the_signature_and_the_docstring(cls: type) -> None:
    signature = inspect.signature(cls)
    for key, (default, text) in SHARED_KEYWORDS.items():
        parameter = signature.parameters[key]
        assert (parameter.kind, parameter.default) == (inspect.Parameter.KEYWORD_ONLY, default)
        assert argument_help(cls)[key] == text
    assert not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    page = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "*, foreach: 'bool' = True, compile: 'bool' = False, bf16_state: 'bool' = False)" in page
    assert all(f"    {key}: " in page for key in SHARED_KEYWORDS)
    assert inspect.getdoc(cls).count("foreach: ") == 1


@pytest.mark.parametrize("cls", shared_keyword_classes(), ids=lambda cls: cls.__name__)
def test_signature_binds_what_the_constructor_takes(cls: type) -> None:
    """What the signature accepts the constructor accepts, and an unknown keyword fails in both."""
    kwargs = {"foreach": False, "compile": False, "bf16_state": True}
    inspect.signature(cls).bind(make_params(), **kwargs)
    optimizer = cls(make_params(), **kwargs)
    assert {key: optimizer.defaults[key] for key in kwargs} == kwargs
    with pytest.raises(TypeError):
        inspect.signature(cls).bind(make_params(), foreach_=False)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'foreach_'; allowed keywords.*foreach"):
        cls(make_params(), foreach_=False)


def test_shared_keyword_help_carries_no_benchmark_figures() -> None:
    """Measured speed-ups and sizes go stale; the help points to benchmarks/speed.py instead."""
    for key, (_, text) in SHARED_KEYWORDS.items():
        assert not re.search(r"\d\s*(x\b|[KMG]iB)|twice as fast", text), f"{key}: {text}"
    assert "benchmarks/speed.py" in SHARED_KEYWORDS["compile"][1]


def test_optimizers_without_a_multi_tensor_path_show_no_shared_keywords() -> None:
    for name in ("AdamW8bitKahan", "Prodigy"):
        cls = personalized.registry.settings_class(name)
        parameters = inspect.signature(cls).parameters
        assert SHARED_KEYWORDS.keys().isdisjoint(parameters) and "unexpected" not in parameters
        assert "foreach:" not in (cls.__doc__ or "")


def test_a_subclass_without_its_own_constructor_keeps_the_signature() -> None:
    class Mine(personalized.FCompass):
        pass

    assert inspect.signature(Mine) == inspect.signature(personalized.FCompass)
    assert Mine.__doc__ is None and inspect.getdoc(Mine).count("foreach: ") == 1

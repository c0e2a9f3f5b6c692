"""The ComfyUI node pack (nodes/), imported the way ComfyUI imports it, against the stand-in in tests/comfy_standin."""

from __future__ import annotations

import argparse
import ast
import asyncio
import functools
import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import personalized
from personalized.exporters import fluxtrainer_args, kohya_optimizer_args
from personalized.training import SCHEDULES, lr_factor

from conftest import fill_grads, make_params

PACK = Path(__file__).resolve().parents[1] / "nodes"
STANDIN = Path(__file__).resolve().parent / "comfy_standin"
#: ComfyUI keys the pack under a name made from its path (dots replaced), so relative imports must cope.
PACK_MODULE = str(PACK).replace(".", "_x_")
STANDIN_MODULES = ("comfy", "comfy_api", "comfy_extras", "folder_paths", "node_helpers", "tiny_model")

OPTIMIZER, TRAIN, ARGS = "PersonalizedOptimizer", "PersonalizedTrainLoRA", "PersonalizedFluxTrainerArgs"
CHOICES = [*personalized.available(), *personalized.presets.available()]
#: The keys of the ARGS dict that FluxTrainer's own OptimizerConfig node returns.
FLUXTRAINER_KEYS = {
    "optimizer_type",
    "max_grad_norm",
    "lr_scheduler",
    "lr_warmup_steps",
    "lr_scheduler_num_cycles",
    "lr_scheduler_power",
    "min_snr_gamma",
    "optimizer_args",
}


# -- loading the pack like ComfyUI -----------------------------------------------------------


@pytest.fixture
def fresh_modules() -> Iterator[None]:
    """Forget the pack and the stand-in afterwards, so every test imports them anew."""
    yield
    ours = (PACK_MODULE, *STANDIN_MODULES)
    for name in [name for name in sys.modules if name.split(".")[0] in ours or name.startswith(PACK_MODULE)]:
        del sys.modules[name]


def load_pack() -> ModuleType:
    """What ComfyUI's ``nodes.load_custom_node`` does: execute the folder's ``__init__.py`` under a path-made name."""
    spec = importlib.util.spec_from_file_location(PACK_MODULE, PACK / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    spec.loader.exec_module(module)
    return module


def registered(module: ModuleType) -> dict[str, type]:
    """The nodes ComfyUI registers: ``NODE_CLASS_MAPPINGS`` if the pack defines it, else ``comfy_entrypoint``'s."""
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    if mappings is not None:
        return dict(mappings)
    from comfy_api.latest import ComfyExtension

    async def node_list() -> list[type]:
        extension = await module.comfy_entrypoint()
        assert isinstance(extension, ComfyExtension)
        await extension.on_load()
        return await extension.get_node_list()

    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(node_list())}


@pytest.fixture
def v3(monkeypatch: pytest.MonkeyPatch, fresh_modules: None) -> dict[str, type]:
    """A current ComfyUI: the stand-in first on sys.path."""
    monkeypatch.syspath_prepend(str(STANDIN))
    return registered(load_pack())


@pytest.fixture
def v1(monkeypatch: pytest.MonkeyPatch, fresh_modules: None) -> ModuleType:
    """An older ComfyUI: no comfy_api.latest, and none of the V3 training pieces."""
    for name in ("comfy_api", "comfy_api.latest", "comfy_extras"):
        monkeypatch.setitem(sys.modules, name, None)
    return load_pack()


def schema(node: type) -> Any:
    return node.GET_SCHEMA()


def inputs_of(node: type) -> dict[str, Any]:
    return {item.id: item for item in schema(node).inputs}


def execute(node: type, **inputs: Any) -> tuple:
    output = node.execute(**inputs)
    from comfy_api.latest import io

    assert isinstance(output, io.NodeOutput)
    return output.args


def widget_defaults(node: type) -> dict[str, Any]:
    return {name: item.default for name, item in inputs_of(node).items() if hasattr(item, "default")}


def choose(nodes: dict[str, type], optimizer: str = "rvc/FCompass", **widgets: Any) -> Any:
    """Run the Optimizer node with its defaults and ``widgets``; returns its first output."""
    return execute(nodes[OPTIMIZER], **{**widget_defaults(nodes[OPTIMIZER]), "optimizer": optimizer, **widgets})[0]


# -- registration ----------------------------------------------------------------------------------


def test_current_comfyui_gets_comfy_entrypoint_only(v3: dict[str, type]) -> None:
    module = sys.modules[PACK_MODULE]
    assert not hasattr(module, "NODE_CLASS_MAPPINGS")  # ComfyUI would prefer it over comfy_entrypoint
    assert set(v3) == {OPTIMIZER, TRAIN, ARGS}
    from comfy_api.latest import io

    assert all(issubclass(node, io.ComfyNode) for node in v3.values())
    names = {node_id: schema(node).display_name for node_id, node in v3.items()}
    assert names[TRAIN] == "Train LoRA (personalized optimizer)"
    assert names[OPTIMIZER] == "Personalized Optimizer"


def test_older_comfyui_gets_node_class_mappings(v1: ModuleType) -> None:
    assert not hasattr(v1, "comfy_entrypoint")
    nodes = registered(v1)
    assert set(nodes) == {OPTIMIZER, TRAIN, ARGS}
    assert v1.NODE_DISPLAY_NAME_MAPPINGS[TRAIN] == "Train LoRA (personalized optimizer)"
    for node in nodes.values():
        required = node.INPUT_TYPES()["required"]
        assert callable(getattr(node(), node.FUNCTION))
        assert len(node.RETURN_TYPES) == len(node.RETURN_NAMES) == len(node.OUTPUT_TOOLTIPS)
        assert all(isinstance(options.get("tooltip"), str) for _, options in required.values())
    assert nodes[TRAIN].INPUT_IS_LIST is True
    assert nodes[OPTIMIZER].INPUT_TYPES()["required"]["optimizer"][0] == CHOICES


def test_older_comfyui_optimizer_and_args_nodes_run(v1: ModuleType) -> None:
    nodes = v1.NODE_CLASS_MAPPINGS
    types = nodes[OPTIMIZER].INPUT_TYPES()["required"]
    defaults = {name: options.get("default") for name, (kind, options) in types.items()}
    choice, summary = nodes[OPTIMIZER]().run(**{**defaults, "optimizer": "rvc/FishMonger"})
    assert summary.startswith("FishMonger, preset rvc/FishMonger")
    args_types = nodes[ARGS].INPUT_TYPES()["required"]
    widgets = {name: options["default"] for name, (kind, options) in args_types.items() if "default" in options}
    args, text = nodes[ARGS]().run(optimizer=choice, **widgets)
    assert args["optimizer_type"] == "personalized.FishMonger" and "|".join(args["optimizer_args"]) == text


# -- schemas ------------------------------------------------------------------------------------------


def test_every_schema_is_valid_and_explained(v3: dict[str, type]) -> None:
    for node in v3.values():
        node_schema = schema(node)
        assert node_schema.category == "training/personalized"
        assert node_schema.description
        for item in node_schema.inputs:
            assert item.tooltip, f"{node_schema.node_id}.{item.id} has no tooltip"
            if item.io_type == "COMBO":
                assert item.default in item.options
            elif item.io_type in ("INT", "FLOAT"):
                assert item.min <= item.default <= item.max
        assert all(output.display_name and output.tooltip for output in node_schema.outputs)


def test_optimizer_node_schema(v3: dict[str, type]) -> None:
    inputs = inputs_of(v3[OPTIMIZER])
    assert list(inputs) == ["optimizer", "learning_rate", "weight_decay", "betas", "extra_args"]
    options = inputs["optimizer"].options
    assert set(personalized.available()) <= set(options)
    assert set(personalized.presets.available()) <= set(options)
    assert [inputs[name].io_type for name in inputs] == ["COMBO", "STRING", "STRING", "STRING", "STRING"]
    assert inputs["extra_args"].multiline
    outputs = schema(v3[OPTIMIZER]).outputs
    assert [o.io_type for o in outputs] == ["PERSONALIZED_OPTIMIZER", "STRING"]


def test_train_node_schema(v3: dict[str, type]) -> None:
    node_schema = schema(v3[TRAIN])
    assert node_schema.is_input_list  # like ComfyUI's own Train LoRA: datasets arrive as lists
    inputs = inputs_of(v3[TRAIN])
    sockets = {name: item.io_type for name, item in inputs.items() if not hasattr(item, "default")}
    assert sockets == {
        "model": "MODEL",
        "latents": "LATENT",
        "positive": "CONDITIONING",
        "optimizer": "PERSONALIZED_OPTIMIZER",
    }
    assert tuple(inputs["lr_schedule"].options) == SCHEDULES
    assert inputs["nan_guard"].io_type == "BOOLEAN" and inputs["nan_guard"].default is True
    import comfy.weight_adapter

    assert list(inputs["algorithm"].options) == list(comfy.weight_adapter.adapter_maps)
    assert inputs["existing_lora"].options[-1] == "[None]"
    assert "learning_rate" not in inputs  # it comes with the optimizer
    assert inputs["bucket_mode"].io_type == "BOOLEAN" and inputs["bucket_mode"].default is False  # as ComfyUI 0.8's
    assert [o.io_type for o in node_schema.outputs] == ["LORA_MODEL", "LOSS_MAP", "INT", "STRING"]


def test_args_node_schema(v3: dict[str, type]) -> None:
    inputs = inputs_of(v3[ARGS])
    assert inputs["optimizer"].io_type == "PERSONALIZED_OPTIMIZER"
    assert FLUXTRAINER_KEYS - {"optimizer_type", "optimizer_args"} <= set(inputs)
    assert list(inputs["lr_scheduler"].options) == [
        "constant",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
        "constant_with_warmup",
    ]
    assert [o.io_type for o in schema(v3[ARGS]).outputs] == ["ARGS", "STRING"]


def test_dropdowns_follow_the_presets_found_now(v3: dict[str, type], tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mine").mkdir()
    source = personalized.presets.load("rvc/FCompass").path.read_text(encoding="utf-8")
    (tmp_path / "mine" / "voice.yaml").write_text(source, encoding="utf-8")
    monkeypatch.setenv("PERSONALIZED_PRESETS", str(tmp_path))
    assert "mine/voice" in inputs_of(v3[OPTIMIZER])["optimizer"].options


# -- the Optimizer node ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHOICES)
def test_every_choice_builds_an_optimizer_that_trains(v3: dict[str, type], name: str) -> None:
    choice, summary = execute(v3[OPTIMIZER], **{**widget_defaults(v3[OPTIMIZER]), "optimizer": name})
    params = {f"p{i}": p for i, p in enumerate(make_params())}
    before = [p.detach().clone() for p in params.values()]
    optimizer = choice.build(params.values())  # ComfyUI passes lora_sd.values()
    for step in range(2):
        fill_grads(list(params.values()), seed=step)
        optimizer.step()  # no closure
        optimizer.zero_grad()  # bare
    assert all(p.grad is None for p in params.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, params.values()))
    assert summary.splitlines()[0].startswith(type(optimizer).__name__)


def test_widgets_override_the_preset(v3: dict[str, type]) -> None:
    choice = choose(v3, learning_rate="2e-4", weight_decay="0.05", betas="0.9, 0.95", extra_args="clip=0.0|amp_fac=3")
    assert dict(choice.overrides) == {"lr": 2e-4, "weight_decay": 0.05, "betas": (0.9, 0.95), "clip": 0.0, "amp_fac": 3}
    group = choice.build(make_params()).param_groups[0]
    assert (group["lr"], group["weight_decay"], tuple(group["betas"]), group["clip"]) == (2e-4, 0.05, (0.9, 0.95), 0.0)


def test_default_widgets_keep_the_preset(v3: dict[str, type]) -> None:
    preset = personalized.presets.load("rvc/FCompass")
    choice = choose(v3)
    assert dict(choice.overrides) == {}
    _, settings, found = choice.settings()
    assert found == preset and settings == preset.kwargs()


def test_setting_widgets_say_the_presets_values_are_used(v3: dict[str, type]) -> None:
    """The widgets read 'preset' (not a learning rate of 0): the summary shows the numbers."""
    inputs = inputs_of(v3[OPTIMIZER])
    for name in ("learning_rate", "weight_decay", "betas"):
        assert inputs[name].default == "preset" and "'preset' uses the preset's" in inputs[name].tooltip, name
    preset = personalized.presets.load("rvc/FCompass")
    choice, summary = execute(v3[OPTIMIZER], **{**widget_defaults(v3[OPTIMIZER]), "optimizer": preset.name})
    assert dict(choice.overrides) == {} and f"lr={preset.lr!r}" in summary
    assert dict(choose(v3, learning_rate=" Preset ", weight_decay="", betas="PRESET").overrides) == {}
    assert dict(choose(v3, learning_rate="3e-4", weight_decay="0").overrides) == {"lr": 3e-4, "weight_decay": 0.0}
    # workflows saved with the earlier number widgets (0 and -1 for "the preset's"), as ComfyUI passes them
    assert dict(choose(v3, learning_rate="0.0", weight_decay="-1.0").overrides) == {}
    with pytest.raises(ValueError, match=re.escape("learning_rate: 'fast' is not a number (such as 2e-4) or 'preset'")):
        choose(v3, learning_rate="fast")


def test_extra_args_lines_and_bare_text(v3: dict[str, type]) -> None:
    extra = "# my settings\ncentralization=0.0\n cautious = False \n"
    choice = choose(v3, "FMARSCrop_ExMachina", extra_args=extra)
    assert dict(choice.overrides) == {"centralization": 0.0, "cautious": False}
    parse = importlib.import_module(f"{PACK_MODULE}.optimizer_node").parse_extra_args
    assert parse("mode=fast|name='x'") == {"mode": "fast", "name": "x"}


@pytest.mark.parametrize(
    ("widgets", "error", "message"),
    [
        (dict(extra_args="centralization 0"), ValueError, "not key=value"),
        (dict(betas="0.9, high"), ValueError, "betas: '0.9, high'"),
        (dict(extra_args="centralisation=0.0"), TypeError, "centralisation"),
        (dict(optimizer="Automagic", betas="0.9, 0.99"), TypeError, "betas"),
        (dict(extra_args="clip=-1.0"), ValueError, "clip"),
    ],
)
def test_bad_settings_fail_in_the_optimizer_node(v3: dict[str, type], widgets: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        choose(v3, **widgets)


# -- the FluxTrainer ARGS node ------------------------------------------------------------------------------


def args_node(v3: dict[str, type], choice: Any, **widgets: Any) -> tuple[dict[str, Any], str]:
    return execute(v3[ARGS], optimizer=choice, **{**widget_defaults(v3[ARGS]), **widgets})


def kohya_builds(args: dict[str, Any], params: Any) -> torch.optim.Optimizer:
    """What FluxTrainer + kohya do with the dict: setattr onto args, parse optimizer_args, import the dotted type."""
    namespace = argparse.Namespace(learning_rate=4e-4)  # the Init node's own learning_rate
    for key, value in args.items():
        setattr(namespace, key, value)
    kwargs = {}
    for arg in namespace.optimizer_args:
        key, value = arg.split("=")
        kwargs[key] = ast.literal_eval(value)
    module, name = namespace.optimizer_type.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(params, lr=namespace.learning_rate, **kwargs)


@pytest.mark.parametrize("name", CHOICES)
def test_args_build_the_same_optimizer_through_kohya(v3: dict[str, type], name: str) -> None:
    choice = choose(v3, name)
    cls, settings, _ = choice.settings()
    if "lr" in settings and settings["lr"] is None:  # kohya always passes its learning_rate
        with pytest.raises(ValueError, match="FluxTrainer cannot run it without an lr"):
            args_node(v3, choice)
        return
    args, text = args_node(v3, choice)
    assert FLUXTRAINER_KEYS <= set(args)
    assert text == "|".join(args["optimizer_args"])
    optimizer = kohya_builds(args, make_params())
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    expected = {key: tuple(v) if isinstance(v, list) else v for key, v in settings.items() if key != "lr"}
    assert {key: tuple(group[key]) if isinstance(group[key], list) else group[key] for key in expected} == expected
    if settings.get("lr") is not None:
        assert group["lr"] == settings["lr"]


def test_args_match_the_exporters_for_an_unchanged_preset(v3: dict[str, type]) -> None:
    preset = personalized.presets.load("advice/FARMSCropV2-noisy-data")
    args, text = args_node(v3, choose(v3, preset.name))
    assert args["optimizer_args"] == kohya_optimizer_args(preset)
    assert text == fluxtrainer_args(preset)
    assert args["optimizer_type"] == f"personalized.{preset.optimizer}" and args["learning_rate"] == preset.lr


def test_args_widgets(v3: dict[str, type]) -> None:
    choice = choose(v3, learning_rate=3e-4)
    args, _ = args_node(v3, choice, lr_scheduler="cosine", lr_warmup_steps=20, max_grad_norm=0.5, min_snr_gamma=0.0)
    assert (args["lr_scheduler"], args["lr_warmup_steps"], args["max_grad_norm"]) == ("cosine", 20, 0.5)
    assert args["min_snr_gamma"] is None  # as FluxTrainer's own node: 0 turns it off
    assert args["learning_rate"] == 3e-4 and not any(a.startswith("lr=") for a in args["optimizer_args"])
    args, _ = args_node(v3, choice, send_learning_rate=False)
    assert "learning_rate" not in args


# -- the Train node -----------------------------------------------------------------------------------------


def train_inputs(v3: dict[str, type], choice: Any, images: int = 3, **widgets: Any) -> dict[str, list]:
    """The Train node's inputs as ComfyUI passes them (is_input_list): every value in a list."""
    from tiny_model import tiny_model

    generator = torch.Generator().manual_seed(1)
    latents = {"samples": torch.randn(images, 4, 3, 3, generator=generator)}
    positive = [[torch.zeros(1, 2, 8), {}] for _ in range(images)]
    settings = {**widget_defaults(v3[TRAIN]), "training_dtype": "fp32", "lora_dtype": "fp32", **widgets}
    lists = {name: [value] for name, value in settings.items()}
    return {**lists, "model": [tiny_model()], "latents": [latents], "positive": [positive], "optimizer": [choice]}


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.optim.Optimizer, list[torch.Tensor]]]:
    """Every optimizer the Train node builds, with its parameters' starting values."""
    found = []
    original = personalized.training.build_training_optimizer

    def spy(params: Any, *args: Any, **kwargs: Any) -> Any:
        optimizer, scheduler = original(params, *args, **kwargs)
        found.append((optimizer, [p.detach().clone() for p in params]))
        return optimizer, scheduler

    monkeypatch.setattr(personalized.training, "build_training_optimizer", spy)
    return found


def test_train_node_trains_a_lora_with_our_optimizer(v3: dict[str, type], built: list) -> None:
    torch.manual_seed(0)
    choice = choose(v3, "rvc/FCompass", learning_rate=1e-3)
    widgets = dict(steps=4, grad_accumulation_steps=2, batch_size=2, lr_schedule="cosine", warmup_steps=1)
    inputs = train_inputs(v3, choice, **widgets)
    model = inputs["model"][0]
    base = {name: p.detach().clone() for name, p in model.model.state_dict().items()}
    lora, loss_map, steps, report = execute(v3[TRAIN], **inputs)

    assert steps == 4
    assert len(loss_map["loss"]) == 4 * 2 and all(map(torch.isfinite, torch.tensor(loss_map["loss"])))
    assert {"diffusion_model.inp.lora_up.weight", "diffusion_model.norm.diff", "diffusion_model.out.diff_b"} <= set(
        lora
    )
    assert lora["diffusion_model.inp.lora_down.weight"].abs().sum() > 0  # starts at zero: it was trained
    assert all(torch.equal(base[name], p) for name, p in model.model.state_dict().items())  # base model untouched
    assert not any(hasattr(m, "org_forward") for m in model.model.modules())  # checkpointing undone

    (optimizer, _), *_ = built
    assert isinstance(optimizer, personalized.NaNGuard) and type(optimizer.optimizer) is personalized.FCompass
    assert {state["step"] for state in optimizer.state.values()} == {4}  # one step per grad_accumulation_steps
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * lr_factor(4, 4, "cosine", 1))
    assert report.splitlines()[0] == "FCompass (preset rvc/FCompass): 4 steps, lr schedule cosine after 1 warmup steps"
    assert "NaN guard: 0 steps skipped" in report


def test_train_node_without_guard_and_bf16_lora(v3: dict[str, type], built: list) -> None:
    torch.manual_seed(0)
    inputs = train_inputs(v3, choose(v3, "default/FMARSCrop_ExMachina"), steps=2, nan_guard=False, lora_dtype="bf16")
    lora, loss_map, _, report = execute(v3[TRAIN], **inputs)
    assert type(built[0][0]) is personalized.FMARSCrop_ExMachina
    assert {value.dtype for value in lora.values()} == {torch.bfloat16}
    assert "NaN guard" not in report and len(loss_map["loss"]) == 2


def test_train_node_images_of_several_sizes(v3: dict[str, type], built: list) -> None:
    torch.manual_seed(0)
    inputs = train_inputs(v3, choose(v3), images=1, steps=2, batch_size=2)
    inputs["latents"] = [{"samples": torch.randn(1, 4, 3, 3)}, {"samples": torch.randn(1, 4, 2, 5)}]
    inputs["positive"] = [[[torch.zeros(1, 2, 8), {}]], [[torch.zeros(1, 2, 8), {}]]]
    _, loss_map, steps, _ = execute(v3[TRAIN], **inputs)
    assert steps == 2 and len(loss_map["loss"]) == 2


def test_train_node_bucket_mode_trains_on_resolution_buckets(
    v3: dict[str, type], built: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ComfyUI 0.8's own node: the Resolution Bucket node's lists go to TrainSampler as bucket_latents."""
    import comfy_extras.nodes_train

    seen = {}
    original = comfy_extras.nodes_train.TrainSampler.__init__

    @functools.wraps(original)  # the node reads the signature
    def recording(self: Any, *args: Any, **kwargs: Any) -> None:
        seen.update(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(comfy_extras.nodes_train.TrainSampler, "__init__", recording)
    torch.manual_seed(0)
    caption = [torch.zeros(1, 2, 8), {}]
    inputs = train_inputs(v3, choose(v3, learning_rate="1e-3"), steps=3, batch_size=2, bucket_mode=True)
    inputs["latents"] = [{"samples": torch.randn(2, 4, 3, 3)}, {"samples": torch.randn(1, 4, 2, 5)}]
    inputs["positive"] = [[caption, caption], [caption]]  # Resolution Bucket: one list per bucket
    lora, loss_map, steps, _ = execute(v3[TRAIN], **inputs)
    assert [tuple(bucket.shape) for bucket in seen["bucket_latents"]] == [(2, 4, 3, 3), (1, 4, 2, 5)]
    assert "real_dataset" not in seen
    assert steps == 3 and len(loss_map["loss"]) == 3
    (_, start), *_ = built
    assert any(not torch.equal(before, after) for before, after in zip(start, lora.values()))


def test_train_node_bucket_mode_on_a_comfyui_without_it(v3: dict[str, type], monkeypatch: pytest.MonkeyPatch) -> None:
    import comfy_extras.nodes_train

    class Before08(comfy_extras.nodes_train.TrainSampler):
        def __init__(
            self,
            loss_fn,
            optimizer,
            loss_callback=None,
            batch_size=1,
            grad_acc=1,
            total_steps=1,
            seed=0,
            training_dtype=torch.bfloat16,
            real_dataset=None,
        ) -> None:
            super().__init__(loss_fn, optimizer, loss_callback, batch_size, grad_acc, total_steps, seed, training_dtype)

    monkeypatch.setattr(comfy_extras.nodes_train, "TrainSampler", Before08)
    inputs = train_inputs(v3, choose(v3), bucket_mode=True)
    with pytest.raises(RuntimeError, match=r"bucket_mode needs .*ComfyUI 0\.8.*turn bucket_mode off"):
        execute(v3[TRAIN], **inputs)


def test_train_node_continues_an_existing_lora(v3: dict[str, type], built: list, tmp_path: Path) -> None:
    torch.manual_seed(0)
    first, _, steps, _ = execute(v3[TRAIN], **train_inputs(v3, choose(v3), steps=2))
    path = tmp_path / "mine_2_steps_00001_.pt"
    torch.save(first, path)
    sys.modules["folder_paths"].files["loras"] = {path.name: str(path)}
    assert path.name in inputs_of(v3[TRAIN])["existing_lora"].options
    _, _, steps, _ = execute(v3[TRAIN], **train_inputs(v3, choose(v3), steps=3, existing_lora=path.name))
    assert steps == 2 + 3
    _, start = built[1]
    assert all(torch.equal(a, b) for a, b in zip(start, first.values()))  # training went on from the saved weights


def test_train_node_rejects_mismatched_captions(v3: dict[str, type]) -> None:
    inputs = train_inputs(v3, choose(v3), images=3)
    inputs["positive"] = [[[torch.zeros(1, 2, 8), {}]] * 2]
    with pytest.raises(ValueError, match=r"2 captions .* for 3 images"):
        execute(v3[TRAIN], **inputs)


SUPPORTED = re.escape("the ComfyUI releases from autumn 2025 on")


def test_train_node_names_supported_comfyui_when_training_pieces_are_missing(
    v3: dict[str, type], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = train_inputs(v3, choose(v3))
    monkeypatch.setitem(sys.modules, "comfy_extras.nodes_train", None)
    with pytest.raises(RuntimeError, match=f"cannot run on this ComfyUI: cannot import .*{SUPPORTED}"):
        execute(v3[TRAIN], **inputs)


def test_train_node_names_supported_comfyui_for_an_old_trainsampler(
    v3: dict[str, type], monkeypatch: pytest.MonkeyPatch
) -> None:
    import comfy_extras.nodes_train

    class OldTrainSampler:  # the V1-era signature (ComfyUI @ c19c6d6)
        def __init__(self, loss_fn, optimizer, loss_callback=None) -> None: ...

    monkeypatch.setattr(comfy_extras.nodes_train, "TrainSampler", OldTrainSampler)
    with pytest.raises(RuntimeError, match=f"TrainSampler takes no batch_size, grad_acc.*{SUPPORTED}"):
        execute(v3[TRAIN], **train_inputs(v3, choose(v3)))


def test_train_node_on_older_comfyui_explains_instead_of_crashing(v1: ModuleType) -> None:
    node = v1.NODE_CLASS_MAPPINGS[TRAIN]
    required = node.INPUT_TYPES()["required"]
    assert required["algorithm"][0] == ["LoRA"] and required["existing_lora"][0] == ["[None]"]
    with pytest.raises(RuntimeError, match=SUPPORTED):
        node().run(model=[None], latents=[None], positive=[None], optimizer=[None])


# -- finding the package, packaging, the workflow -----------------------------------------------------------


def test_package_is_found_beside_the_pack_or_explained(v3: dict[str, type], tmp_path: Path) -> None:
    locate = sys.modules[f"{PACK_MODULE}._locate"]
    shipped = tmp_path / "pack" / "lib"
    (shipped / "personalized_locate_probe").mkdir(parents=True)
    (shipped / "personalized_locate_probe" / "__init__.py").write_text("FOUND = True\n")
    try:
        module = locate.find_package("personalized_locate_probe", (tmp_path / "nowhere", shipped))
        assert module.FOUND
    finally:
        sys.modules.pop("personalized_locate_probe", None)
        sys.path.remove(str(shipped))
    portable = re.escape(r"python_embeded\python.exe -m pip install C:\path\to\personalized-optimizers")
    with pytest.raises(ImportError, match=portable):
        locate.find_package("personalized_locate_missing", (tmp_path / "nowhere",))
    assert locate.FOLDERS == (PACK / "lib", PACK.parent / "plugin", PACK.parent)


def test_pack_metadata_for_the_comfy_registry() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the test extra installs tomli
        tomllib = pytest.importorskip("tomli")
    data = tomllib.loads((PACK / "pyproject.toml").read_text(encoding="utf-8"))
    project, comfy = data["project"], data["tool"]["comfy"]
    assert "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["license"] and project["urls"]["Repository"].startswith("https://")
    assert {"PublisherId", "DisplayName", "Icon"} <= set(comfy)
    assert "personalized-optimizers" in " ".join(project["dependencies"])


#: Inputs of ComfyUI's own nodes used in the workflow (nodes.py, comfy_extras/nodes_train.py @ 12aacb9).
NATIVE_INPUTS = {
    "CheckpointLoaderSimple": ({"ckpt_name"}, ["MODEL", "CLIP", "VAE"]),
    "LoadImage": ({"image"}, ["IMAGE", "MASK"]),
    "VAEEncode": ({"pixels", "vae"}, ["LATENT"]),
    "CLIPTextEncode": ({"text", "clip"}, ["CONDITIONING"]),
    "SaveLoRA": ({"lora", "prefix", "steps"}, []),
    "LossGraphNode": ({"loss", "filename_prefix"}, []),
}
#: Their widgets, in the order of a UI-format workflow's ``widgets_values`` (LoadImage's upload button keeps one).
NATIVE_WIDGETS = {
    "CheckpointLoaderSimple": ["ckpt_name"],
    "LoadImage": ["image", "upload"],
    "VAEEncode": [],
    "CLIPTextEncode": ["text"],
    "SaveLoRA": ["prefix", "steps"],
    "LossGraphNode": ["filename_prefix"],
}
WORKFLOW = PACK / "workflows" / "train_lora_personalized.json"
API_WORKFLOW = PACK / "workflows_api" / "train_lora_personalized.json"


def widget_names(v3: dict[str, type], kind: str) -> list[str]:
    """The widgets ComfyUI's frontend makes for a node, in order: one per widget input, plus the
    "control after generate" choice after an INT that asks for it."""
    if kind not in v3:
        return NATIVE_WIDGETS[kind]
    names = []
    for name, item in inputs_of(v3[kind]).items():
        if hasattr(item, "default"):
            names.append(name)
            if getattr(item, "control_after_generate", None):
                names.append("control_after_generate")
    return names


def as_api(v3: dict[str, type], workflow: dict[str, Any]) -> dict[str, Any]:
    """A UI-format workflow as the API format the frontend queues (linked inputs replace their widget)."""
    links = {link[0]: link for link in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        values = dict(zip(widget_names(v3, node["type"]), node["widgets_values"], strict=True))
        values.pop("upload", None), values.pop("control_after_generate", None)
        for entry in node["inputs"]:
            if entry["link"] is not None:
                _, source, slot, target, _, _ = links[entry["link"]]
                assert target == node["id"]
                values[entry["name"]] = [str(source), slot]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": values, "_meta": {"title": node["title"]}}
    return api


def test_api_workflow_fits_the_nodes(v3: dict[str, type]) -> None:
    workflow = json.loads(API_WORKFLOW.read_text(encoding="utf-8"))
    outputs = {}
    for node_id, node in workflow.items():
        kind = node["class_type"]
        if kind in v3:
            outputs[node_id] = [o.io_type for o in schema(v3[kind]).outputs]
            declared = inputs_of(v3[kind])
            assert set(node["inputs"]) == set(declared), kind
            for name, value in node["inputs"].items():
                item = declared[name]
                if item.io_type == "COMBO":
                    assert value in item.options, (kind, name)
                elif hasattr(item, "default") and not isinstance(value, list):
                    assert type(value) is type(item.default), (kind, name)
        else:
            assert kind in NATIVE_INPUTS, kind
            assert set(node["inputs"]) == NATIVE_INPUTS[kind][0]
            outputs[node_id] = NATIVE_INPUTS[kind][1]
    for node in workflow.values():
        links = [value for value in node["inputs"].values() if isinstance(value, list)]
        assert all(source in workflow and index < len(outputs[source]) for source, index in links)
    train = next(node for node in workflow.values() if node["class_type"] == TRAIN)["inputs"]
    assert outputs[train["optimizer"][0]][train["optimizer"][1]] == "PERSONALIZED_OPTIMIZER"
    assert outputs[train["latents"][0]][train["latents"][1]] == "LATENT"


def test_shipped_workflow_is_the_api_workflow_laid_out(v3: dict[str, type]) -> None:
    """The file users drag in (and ComfyUI lists under its templates) is in the UI format, with
    positions, and is the same workflow as the API-format file."""
    workflow = json.loads(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(workflow["nodes"], list) and workflow["version"] == 0.4
    assert as_api(v3, workflow) == json.loads(API_WORKFLOW.read_text(encoding="utf-8"))
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert workflow["last_node_id"] == max(nodes) and workflow["last_link_id"] == max(
        link[0] for link in workflow["links"]
    )
    for link_id, source, slot, target, target_slot, kind in workflow["links"]:
        assert link_id in nodes[source]["outputs"][slot]["links"]
        assert nodes[source]["outputs"][slot]["type"] == kind == nodes[target]["inputs"][target_slot]["type"]
        assert nodes[target]["inputs"][target_slot]["link"] == link_id
    for node in workflow["nodes"]:
        if node["type"] in v3:
            assert [o["type"] for o in node["outputs"]] == [o.io_type for o in schema(v3[node["type"]]).outputs]


def test_shipped_workflow_nodes_do_not_overlap() -> None:
    """Every node, title bar included, has its own room; image previews (Load Image, Plot Loss Graph)
    draw inside their node, which is big enough for one."""
    nodes = json.loads(WORKFLOW.read_text(encoding="utf-8"))["nodes"]
    title = 30  # LiteGraph draws the title bar above pos
    boxes = {}
    for node in nodes:
        (x, y), (width, height) = node["pos"], node["size"]
        boxes[node["title"]] = (x, y - title, width, height + title)
    for first, (x1, y1, w1, h1) in boxes.items():
        for second, (x2, y2, w2, h2) in boxes.items():
            apart = x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1
            assert first == second or apart, (first, second)
    sizes = {node["type"]: node["size"] for node in nodes}
    assert sizes["LoadImage"][1] >= 400 and sizes["LossGraphNode"][1] >= 400


def test_readme_shows_the_workflow_file() -> None:
    readme = (PACK / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", readme, flags=re.S)
    workflow = json.loads(API_WORKFLOW.read_text(encoding="utf-8"))
    assert any(json.loads(block) == workflow for block in blocks)
    assert r'python_embeded\python.exe -m pip install "C:\path\to\personalized-optimizers[presets]"' in readme

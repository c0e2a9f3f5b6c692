"""Node "Train LoRA (personalized optimizer)": ComfyUI's own LoRA training, with a personalized optimizer.

It trains the way ComfyUI's built-in "Train LoRA" node does (an adapter on every
layer ComfyUI can wrap, ComfyUI's ``TrainSampler`` running forward and backward
passes through a basic guider), with three differences: the optimizer and its
settings come from the "Personalized Optimizer" node, the learning rate follows
a schedule, and the NaN guard can skip steps that would break the weights.

ComfyUI's training pieces are internal and change between versions, so they are
imported only when the node runs, and a missing or changed piece becomes a
message that names the ComfyUI versions this node works with.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

from ._locate import personalized
from .definitions import Field, NodeDef, Output
from .optimizer_node import OPTIMIZER_TYPE, OptimizerChoice

SUPPORTED_COMFYUI = (
    "a ComfyUI whose built-in 'Train LoRA' node runs on the V3 node API (comfy_api.latest) and has the "
    "grad_accumulation_steps and algorithm inputs: the ComfyUI releases from autumn 2025 on "
    "(checked against comfy_extras/nodes_train.py at commit 12aacb9 and its later bucket-mode version)"
)
BUCKETS_COMFYUI = "a ComfyUI whose own 'Train LoRA' node has the bucket_mode input (ComfyUI 0.8 on)"

#: What the node reuses from comfy_extras.nodes_train.
TRAIN_HELPERS = ("TrainSampler", "BiasDiff", "find_all_highest_child_module_with_forward", "patch", "unpatch")
#: ... and from comfy_extras.nodes_custom_sampler.
SAMPLING = ("Guider_Basic", "Noise_RandomNoise")
#: The TrainSampler keywords the node always passes (real_dataset too, for images of several sizes).
SAMPLER_KEYWORDS = ("loss_callback", "batch_size", "grad_acc", "total_steps", "seed", "training_dtype")

LOSSES = {
    "MSE": torch.nn.MSELoss,
    "L1": torch.nn.L1Loss,
    "Huber": torch.nn.HuberLoss,
    "SmoothL1": torch.nn.SmoothL1Loss,
}
NO_LORA = "[None]"


class UnsupportedComfyUI(RuntimeError):
    """ComfyUI's training pieces are missing, or differ from the versions this node works with."""


def unsupported(problem: str) -> UnsupportedComfyUI:
    return UnsupportedComfyUI(
        f"Train LoRA (personalized optimizer) cannot run on this ComfyUI: {problem}. It needs {SUPPORTED_COMFYUI}. "
        "Update ComfyUI (portable: update/update_comfyui.bat; git install: git pull), or train with "
        "kijai's FluxTrainer through 'FluxTrainer ARGS (personalized optimizer)'."
    )


def comfy_training() -> SimpleNamespace:
    """The pieces of ComfyUI the node reuses, checked against what it needs."""
    try:
        import comfy.model_management
        import comfy.utils
        import folder_paths
        import node_helpers
        from comfy.weight_adapter import adapter_maps, adapters
        from comfy_extras import nodes_custom_sampler, nodes_train
    except ImportError as error:
        raise unsupported(f"cannot import its training nodes ({error})") from error
    missing = [f"nodes_train.{name}" for name in TRAIN_HELPERS if not hasattr(nodes_train, name)]
    missing += [f"nodes_custom_sampler.{name}" for name in SAMPLING if not hasattr(nodes_custom_sampler, name)]
    if missing:
        raise unsupported(f"comfy_extras has no {', '.join(missing)}")
    sampler_keywords = set(inspect.signature(nodes_train.TrainSampler).parameters)
    missing = [key for key in SAMPLER_KEYWORDS if key not in sampler_keywords]
    if missing:
        raise unsupported(f"its TrainSampler takes no {', '.join(missing)}")
    return SimpleNamespace(
        train=nodes_train,
        sampler_keywords=sampler_keywords,
        sampling=nodes_custom_sampler,
        adapters=adapters,
        adapter_maps=adapter_maps,
        model_management=comfy.model_management,
        utils=comfy.utils,
        folder_paths=folder_paths,
        node_helpers=node_helpers,
    )


# -- the widgets ---------------------------------------------------------------------------------


def algorithms() -> tuple[str, ...]:
    """ComfyUI's adapter types (LoRA, LoHa, LoKr, OFT), or just LoRA outside ComfyUI."""
    try:
        from comfy.weight_adapter import adapter_maps
    except ImportError:
        return ("LoRA",)
    return tuple(adapter_maps)


def existing_loras() -> tuple[str, ...]:
    try:
        import folder_paths
    except ImportError:
        return (NO_LORA,)
    return (*folder_paths.get_filename_list("loras"), NO_LORA)


def inputs() -> list[Field]:
    schedules = personalized.training.SCHEDULES
    kinds = algorithms()
    return [
        Field("model", "MODEL", "The model to train the LoRA on."),
        Field("latents", "LATENT", "The training images, encoded (VAE Encode or a dataset node)."),
        Field("positive", "CONDITIONING", "The captions: one conditioning for all images, or one per image."),
        Field("optimizer", OPTIMIZER_TYPE, "From the 'Personalized Optimizer' node: optimizer, preset, settings."),
        Field("batch_size", "INT", "Images per step.", default=1, min=1, max=10000),
        Field(
            "grad_accumulation_steps",
            "INT",
            "Add up the gradients of this many batches before each optimizer step (a bigger batch for less memory).",
            default=1,
            min=1,
            max=1024,
        ),
        Field("steps", "INT", "How many optimizer steps to train for.", default=16, min=1, max=100000),
        Field(
            "lr_schedule",
            "COMBO",
            "How the learning rate changes: 'constant' keeps it, 'cosine' and 'linear' lower it to zero by the "
            "last step. Automagic sets its own per-weight rates and ignores this.",
            default=schedules[0],
            options=schedules,
        ),
        Field(
            "warmup_steps",
            "INT",
            "Steps over which the learning rate grows to its full value (0 = start at full).",
            default=0,
            min=0,
            max=100000,
        ),
        Field(
            "nan_guard",
            "BOOLEAN",
            "Skip steps that would turn weights into NaN/inf; after 3 skips apply the preset's next fix "
            "(its 'fallbacks'). The 'report' output says what happened.",
            default=True,
        ),
        Field(
            "rank", "INT", "The LoRA rank: bigger learns more detail and needs more memory.", default=8, min=1, max=128
        ),
        Field("loss_function", "COMBO", "How the prediction error is measured.", default="MSE", options=tuple(LOSSES)),
        Field(
            "seed",
            "INT",
            "Seed for the noise and the order of the images.",
            default=0,
            min=0,
            max=0xFFFFFFFFFFFFFFFF,
            control_after_generate=True,
        ),
        Field("training_dtype", "COMBO", "Precision of the training passes.", default="bf16", options=("bf16", "fp32")),
        Field("lora_dtype", "COMBO", "Precision of the LoRA weights.", default="bf16", options=("bf16", "fp32")),
        Field("algorithm", "COMBO", "The adapter type to train.", default=kinds[0], options=kinds),
        Field(
            "gradient_checkpointing",
            "BOOLEAN",
            "Recompute activations in the backward pass: much less memory, somewhat slower.",
            default=True,
        ),
        Field(
            "existing_lora",
            "COMBO",
            "Continue training this LoRA (from models/loras), or [None] for a new one. The optimizer starts fresh.",
            default=NO_LORA,
            options=existing_loras(),
        ),
        Field(
            "bucket_mode",
            "BOOLEAN",
            "Train on resolution buckets: connect 'latents' and 'positive' to ComfyUI's Resolution Bucket node, "
            "which groups images of the same size. Each step then batches images of one size (faster than "
            "images of several sizes without buckets, which go one at a time). Needs ComfyUI 0.8 or later.",
            default=False,
        ),
    ]


# -- training ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The widget values (ComfyUI passes each as a one-item list)."""

    optimizer: OptimizerChoice
    batch_size: int
    grad_accumulation_steps: int
    steps: int
    lr_schedule: str
    warmup_steps: int
    nan_guard: bool
    rank: int
    loss_function: str
    seed: int
    training_dtype: str
    lora_dtype: str
    algorithm: str
    gradient_checkpointing: bool
    existing_lora: str
    bucket_mode: bool


def run(model: list, latents: list, positive: list, **widgets: list) -> tuple:
    """The node's inputs all arrive as lists: the dataset ones whole, the others as their first item."""
    comfy = comfy_training()
    settings = Settings(**{name: values[0] for name, values in widgets.items()})
    dataset = Dataset.of(latents, settings.bucket_mode)
    return train(comfy, model[0], dataset, captions(positive, dataset.count), settings)


@dataclass(frozen=True)
class Dataset:
    """The training latents, in the form ComfyUI's ``TrainSampler`` takes them.

    ``mode`` is ``"batch"`` (one ``(N, C, H, W)`` tensor: every image has the same size),
    ``"multi_res"`` (a list of ``(1, C, H, W)`` images of several sizes, trained one at a time) or
    ``"buckets"`` (a list of ``(Bi, C, Hi, Wi)`` batches, one per size, from ComfyUI's Resolution
    Bucket node; each step batches images of one bucket).
    """

    latents: Any
    mode: str

    @classmethod
    def of(cls, latents: list[dict[str, torch.Tensor]], bucket_mode: bool) -> Dataset:
        """The dataset from the node's ``latents`` input (one latent dict per item of ComfyUI's list)."""
        if bucket_mode:
            return cls([latent["samples"] for latent in latents], "buckets")
        if len(latents) == 1:
            return cls(latents[0]["samples"], "batch")
        images = [image[None] for latent in latents for image in latent["samples"]]
        if len({image.shape for image in images}) == 1:
            return cls(torch.cat(images), "batch")
        return cls(images, "multi_res")

    @property
    def count(self) -> int:
        """How many images."""
        return sum(len(bucket) for bucket in self.latents) if self.mode == "buckets" else len(self.latents)

    def to(self, dtype: torch.dtype) -> Dataset:
        latents = self.latents.to(dtype) if self.mode == "batch" else [item.to(dtype) for item in self.latents]
        return Dataset(latents, self.mode)

    def sampler_keywords(self) -> dict[str, Any]:
        """What ``TrainSampler`` needs besides the guider's latent to draw its batches."""
        return {"multi_res": {"real_dataset": self.latents}, "buckets": {"bucket_latents": self.latents}}.get(
            self.mode, {}
        )

    def guide_latent(self) -> torch.Tensor:
        """The latent the guider samples: the dataset itself, or (when the sampler draws its own batches)
        the first image repeated to one per image, as ComfyUI's own node does."""
        if self.mode == "batch":
            return self.latents
        first = self.latents[0][:1]
        return first.repeat(self.count, *[1] * (first.dim() - 1))


def captions(positive: list, count: int) -> list:
    """One conditioning per image (a single one is repeated)."""
    conds = (
        positive[0]
        if len(positive) == 1
        else [c for item in positive for c in (item if isinstance(item, list) else [item])]
    )
    if len(conds) == 1 and count > 1:
        conds = conds * count
    if len(conds) != count:
        raise ValueError(
            f"{len(conds)} captions (positive conditionings) for {count} images: give one, or one per image"
        )
    return conds


def train(comfy: SimpleNamespace, model: Any, dataset: Dataset, conds: list, s: Settings) -> tuple:
    """Adapters on a copy of the model, our optimizer and schedule, ComfyUI's training loop; returns the outputs."""
    if dataset.mode == "multi_res" and "real_dataset" not in comfy.sampler_keywords:
        raise unsupported("its TrainSampler trains only images of one size (no real_dataset)")
    if dataset.mode == "buckets" and "bucket_latents" not in comfy.sampler_keywords:
        raise UnsupportedComfyUI(
            f"Train LoRA (personalized optimizer): bucket_mode needs {BUCKETS_COMFYUI}, and this ComfyUI's "
            "TrainSampler has no bucket_latents. Update ComfyUI, or turn bucket_mode off (images of several sizes "
            "then train one at a time)."
        )
    mp = model.clone()
    dtype = comfy.node_helpers.string_to_torch_dtype(s.training_dtype)
    lora_dtype = comfy.node_helpers.string_to_torch_dtype(s.lora_dtype)
    mp.set_model_compute_dtype(dtype)
    dataset = dataset.to(dtype)
    with torch.inference_mode(False):
        existing, steps_done = load_existing_lora(comfy, s.existing_lora)
        lora_sd, adapters = add_adapters(comfy, mp, s, lora_dtype, existing)
        optimizer, scheduler = personalized.training.build_training_optimizer(
            lora_sd.values(),
            s.optimizer.name,
            s.steps,
            s.lr_schedule,
            s.warmup_steps,
            s.nan_guard,
            **s.optimizer.overrides,
        )
        if scheduler is not None:
            personalized.training.attach_scheduler(optimizer, scheduler)
        losses = fit(comfy, mp, dataset, conds, optimizer, s, dtype)
        for adapter in adapters:
            adapter.requires_grad_(False)
        lora = {key: value.to(lora_dtype).detach() for key, value in lora_sd.items()}
    return lora, {"loss": losses}, s.steps + steps_done, report(s, optimizer, losses)


def load_existing_lora(comfy: SimpleNamespace, filename: str) -> tuple[dict[str, torch.Tensor], int]:
    """The saved weights, and the step count in the name ComfyUI's "Save LoRA Weights" gives (``..._500_steps_...``)."""
    if filename == NO_LORA:
        return {}, 0
    weights = comfy.utils.load_torch_file(comfy.folder_paths.get_full_path_or_raise("loras", filename))
    match = re.search(r"(\d+)_steps_", filename)
    return weights, int(match.group(1)) if match else 0


def add_adapters(
    comfy: SimpleNamespace, mp: Any, s: Settings, lora_dtype: torch.dtype, existing: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[torch.nn.Module]]:
    """A trainable adapter on every weight and bias ComfyUI can wrap; returns the parameters by LoRA key."""
    lora_sd: dict[str, torch.Tensor] = {}
    adapters: list[torch.nn.Module] = []

    def wrap(key: str, adapter: torch.nn.Module, parameters: dict[str, torch.Tensor]) -> None:
        mp.add_weight_wrapper(key, adapter)
        adapters.append(adapter)
        lora_sd.update(parameters)

    for name, layer in mp.model.named_modules():
        if not hasattr(layer, "weight_function"):
            continue
        if layer.weight is not None and layer.weight.dim() >= 2:
            adapter = matrix_adapter(comfy, name, layer.weight, s, existing).to(lora_dtype)
            wrap(f"{name}.weight", adapter, {f"{name}.{key}": p for key, p in adapter.named_parameters()})
        elif layer.weight is not None:
            diff = difference(existing.get(f"{name}.diff"), layer.weight, lora_dtype)
            wrap(f"{name}.weight", comfy.train.BiasDiff(diff), {f"{name}.diff": diff})
        if getattr(layer, "bias", None) is not None:
            diff = difference(existing.get(f"{name}.diff_b"), layer.bias, lora_dtype)
            wrap(f"{name}.bias", comfy.train.BiasDiff(diff), {f"{name}.diff_b": diff})
    return lora_sd, adapters


def difference(saved: torch.Tensor | None, like: torch.Tensor, dtype: torch.dtype) -> torch.nn.Parameter:
    """A trainable difference for a bias or 1-D weight: the existing LoRA's, or zeros."""
    start = saved if saved is not None and saved.shape == like.shape else torch.zeros(like.shape)
    return torch.nn.Parameter(start.to(dtype=dtype, copy=True))


def matrix_adapter(
    comfy: SimpleNamespace, name: str, weight: torch.Tensor, s: Settings, existing: dict[str, torch.Tensor]
) -> torch.nn.Module:
    """The existing LoRA's adapter for this layer, if it has one, else a new one of the chosen algorithm."""
    alpha = float(existing.get(f"{name}.alpha", 1.0))
    dora_scale = existing.get(f"{name}.dora_scale")
    for adapter_type in comfy.adapters:
        loaded = adapter_type.load(name, existing, alpha, dora_scale)
        if loaded is not None:
            return loaded.to_train()
    return comfy.adapter_maps[s.algorithm].create_train(weight, rank=s.rank, alpha=1.0)


def fit(
    comfy: SimpleNamespace,
    mp: Any,
    dataset: Dataset,
    conds: list,
    optimizer: torch.optim.Optimizer,
    s: Settings,
    dtype: torch.dtype,
) -> list[float]:
    """Run ComfyUI's TrainSampler through a basic guider; returns the loss of every pass."""
    losses: list[float] = []
    if s.gradient_checkpointing:
        for block in comfy.train.find_all_highest_child_module_with_forward(mp.model.diffusion_model):
            comfy.train.patch(block)
    mp.model.requires_grad_(False)
    comfy.model_management.load_models_gpu([mp], memory_required=1e20, force_full_load=True)
    sampler = comfy.train.TrainSampler(
        LOSSES[s.loss_function](),
        optimizer,
        loss_callback=losses.append,
        batch_size=s.batch_size,
        grad_acc=s.grad_accumulation_steps,
        total_steps=s.steps * s.grad_accumulation_steps,
        seed=s.seed,
        training_dtype=dtype,
        **dataset.sampler_keywords(),
    )
    guider = comfy.sampling.Guider_Basic(mp)
    guider.set_conds(conds)
    latent = dataset.guide_latent()
    noise = comfy.sampling.Noise_RandomNoise(s.seed)
    in_training = hasattr(comfy.model_management, "in_training")  # newer ComfyUI: tells memory management
    try:
        if in_training:
            comfy.model_management.in_training = True
        guider.sample(
            noise.generate_noise({"samples": latent}), latent, sampler, torch.arange(dataset.count), seed=s.seed
        )
    finally:
        if in_training:
            comfy.model_management.in_training = False
        for module in mp.model.modules():
            comfy.train.unpatch(module)
    return losses


def report(s: Settings, optimizer: torch.optim.Optimizer, losses: list[float]) -> str:
    """What was trained, in words: optimizer, preset, schedule, loss, what the NaN guard did."""
    cls, _, preset = s.optimizer.settings()
    warmup = f" after {s.warmup_steps} warmup steps" if s.warmup_steps else ""
    lines = [
        f"{cls.__name__}{f' (preset {preset.name})' if preset else ''}: {s.steps} steps, "
        f"lr schedule {s.lr_schedule}{warmup}"
    ]
    if losses:
        lines.append(f"loss: first {losses[0]:.4g}, last {losses[-1]:.4g}")
    if isinstance(optimizer, personalized.NaNGuard):
        lines.append(
            f"NaN guard: {optimizer.skipped_steps} steps skipped, "
            f"{optimizer.fallbacks_applied} of {len(optimizer.fallbacks)} fallbacks applied"
        )
    return "\n".join(lines)


NODE = NodeDef(
    node_id="PersonalizedTrainLoRA",
    display_name="Train LoRA (personalized optimizer)",
    description="ComfyUI's LoRA training with a personalized optimizer and preset, a learning-rate schedule "
    "and the NaN guard. Its outputs connect like those of ComfyUI's own Train LoRA node; to try the LoRA, "
    "apply it with 'Load LoRA Model'.",
    inputs=inputs,
    outputs=(
        Output(
            "LORA_MODEL", "lora", "The LoRA weights: connect to 'Save LoRA Weights', or to 'Load LoRA Model' to try it."
        ),
        Output("LOSS_MAP", "loss_map", "The loss of every step: connect to 'Plot Loss Graph'."),
        Output("INT", "steps", "Steps trained in total (with the existing LoRA's)."),
        Output("STRING", "report", "What was trained, and what the NaN guard did."),
    ),
    run=run,
    is_input_list=True,
    experimental=True,
)

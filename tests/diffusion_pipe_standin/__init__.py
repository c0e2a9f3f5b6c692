"""What diffusion-pipe and the Chroma trainer do to an optimizer class, re-stated for the tests.

Written from reading their ``train.py`` and ``optimizers/gradient_release.py``
(tdrussell/diffusion-pipe 8f83dbf25d03, 2026-08-20; geocine/diffusion-chroma
bb150b8d7eb6, 2025-06-01); none of their code is copied. Both trainers:

* read the config with the ``toml`` package and round-trip it through JSON, so
  TOML arrays (``betas``) arrive as Python lists;
* match ``[optimizer] type`` lower-cased against their own table first, and
  otherwise take ``getattr(pytorch_optimizer, type)`` with the type as written;
* pass every other key of ``[optimizer]`` except ``type`` and
  ``gradient_release`` as keyword arguments (diffusion-pipe first pops
  ``beta2_half_life`` and writes ``betas[1]`` from it, in place);
* normal path: ``klass(param_groups, **kwargs)``. diffusion-pipe splits every
  group of ``model.get_param_groups`` into a decayed group and a
  ``weight_decay = 0`` group (1-D params); Chroma passes the flat parameter list;
* ``gradient_release = true``: add ``foreach=False`` if the class signature has
  it, raise every ``betas[i]`` (and ``momentum``) to the power ``1/GAS`` in the
  config's own list, build ``klass([p], **kwargs)`` per parameter (taking ``lr``
  from the group when groups are dicts), make ``p.add_`` write ``.data``, and
  step + zero_grad each from a post-accumulate-grad hook. The wrapper handed to
  DeepSpeed has no-op ``step``/``zero_grad`` and ``state_dict = {i: sub.state_dict()}``;
* schedule: ``ConstantLR(factor=1.0)``, behind a ``LinearLR`` warm-up from
  ``1/warmup_steps`` in a ``SequentialLR`` when ``warmup_steps`` is set;
* log, every ``logging_steps``: ``train/prodigy_d`` (the mean of the groups' ``d``) for a
  class named ``Prodigy``; for one named ``Automagic`` (diffusion-pipe only; Chroma's
  train.py has the function but does not call it) ``optimizer._get_lr(group, state)``
  of every parameter, stacked with ``torch.stack`` into ``train/automagic_lrs`` and its
  mean ``train/automagic_avg_lr``, both logged only when that mean is above 0.
"""

from __future__ import annotations

import ast
import inspect
import json
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import toml
import torch

TRAINERS = ("diffusion-pipe", "chroma")

#: The lower-cased ``type`` values each trainer serves with its own classes.
BUILTIN_TYPES: dict[str, frozenset[str]] = {
    "diffusion-pipe": frozenset(
        {
            "adamw",
            "adamw8bit",
            "adamw_optimi",
            "stableadamw",
            "sgd",
            "adamw8bitkahan",
            "offload",
            "automagic",
            "genericoptim",
        }
    ),
    "chroma": frozenset(
        {
            "adamw",
            "adamw8bit",
            "adamw_optimi",
            "stableadamw",
            "sgd",
            "adamw8bitkahan",
            "scorn",
            "adafactor",
            "remaster",
            "persona",
            "offload",
            "automagic",
        }
    ),
}

#: Parameters of the stand-in model: (original_name, shape). The prefixes are SDXL's groups.
PARAMETERS = (
    ("unet.proj_in.weight", (8, 4)),
    ("unet.proj_in.bias", (8,)),
    ("text_encoder.proj_out.weight", (2, 8)),
    ("text_encoder.proj_out.bias", (2,)),
)


@dataclass(frozen=True)
class BuiltIn:
    """A type the trainer serves with its own class (which the stand-in does not build)."""

    trainer: str
    type: str


def read_config(text: str) -> dict[str, Any]:
    """A TOML config as the trainers hold it: parsed, then round-tripped through JSON."""
    return json.loads(json.dumps(toml.loads(text)))


def lookup(optim_config: dict[str, Any], trainer: str, global_batch_size: int = 1) -> tuple[Any, dict[str, Any]]:
    """The optimizer class (or :class:`BuiltIn`) and keyword arguments the trainer derives from ``[optimizer]``."""
    optim_type = optim_config["type"]
    if trainer == "diffusion-pipe":
        half_life = optim_config.pop("beta2_half_life", None)
        if half_life:
            optim_config["betas"][1] = 0.5 ** (global_batch_size / half_life)
    kwargs = {key: value for key, value in optim_config.items() if key not in ("type", "gradient_release")}
    if optim_type.lower() in BUILTIN_TYPES[trainer]:
        return BuiltIn(trainer, optim_type.lower()), kwargs
    import pytorch_optimizer

    return getattr(pytorch_optimizer, optim_type), kwargs


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    """The stand-in model's parameters, each with the ``original_name`` the trainers read."""
    generator = torch.Generator().manual_seed(seed)
    params = []
    for name, shape in PARAMETERS:
        p = torch.nn.Parameter(torch.randn(shape, generator=generator) * 0.5)
        p.original_name = name  # type: ignore[attr-defined]
        params.append(p)
    return params


def loss(params: list[torch.nn.Parameter], seed: int) -> torch.Tensor:
    """A micro-batch loss of the stand-in model (two linear layers)."""
    w1, b1, w2, b2 = params
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(1000 + seed))
    target = torch.randn(3, 2, generator=torch.Generator().manual_seed(2000 + seed))
    return (torch.tanh(x @ w1.T + b1) @ w2.T + b2 - target).square().mean()


def param_groups(trainer: str, params: list[torch.nn.Parameter], lrs: tuple[float, float] | None) -> list[Any]:
    """``model.get_param_groups(params)``: Chroma's returns the parameters; diffusion-pipe's are dicts.

    With ``lrs``, diffusion-pipe's groups are SDXL's (unet, text encoder), each with its own lr.
    """
    if trainer == "chroma":
        return list(params)
    if lrs is None:
        return [{"params": list(params)}]
    unet = [p for p in params if p.original_name.startswith("unet.")]
    text_encoder = [p for p in params if p.original_name.startswith("text_encoder.")]
    return [{"params": unet, "lr": lrs[0]}, {"params": text_encoder, "lr": lrs[1]}]


def _split_weight_decay(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """diffusion-pipe: 1-D parameters move to a copy of their group with ``weight_decay = 0``."""
    split = []
    for group in groups:
        params = group.pop("params")
        decay, no_decay = [], []
        for p in params:
            (no_decay if p.ndim == 1 or p.original_name.startswith("llm_adapter.embed") else decay).append(p)
        undecayed = {**group, "params": no_decay, "weight_decay": 0}
        split += [g for g in ({**group, "params": decay}, undecayed) if g["params"]]
    return split


def build_normal(
    trainer: str,
    klass: type,
    kwargs: dict[str, Any],
    params: list[torch.nn.Parameter],
    lrs: tuple[float, float] | None = None,
) -> torch.optim.Optimizer:
    """The trainer's normal construction path."""
    groups = param_groups(trainer, params, lrs)
    if trainer == "diffusion-pipe":
        groups = _split_weight_decay(groups)
    return klass(groups, **kwargs)


class ReleasedOptimizers(torch.optim.Optimizer):
    """What the trainers hand to DeepSpeed with gradient release: the per-parameter optimizers, inert."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:  # no super().__init__, as theirs
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def state_dict(self) -> dict[int, Any]:  # type: ignore[override]
        return {index: optimizer.state_dict() for index, optimizer in enumerate(self.optimizers)}

    def load_state_dict(self, state_dict: dict[int, Any]) -> None:  # type: ignore[override]
        for index, state in state_dict.items():
            self.optimizers[index].load_state_dict(state)

    def step(self) -> None:  # type: ignore[override]
        pass

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass


def _write_data(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return self.data.add_(*args, **kwargs)


def build_gradient_release(
    trainer: str,
    klass: type,
    kwargs: dict[str, Any],
    params: list[torch.nn.Parameter],
    gas: int,
    lrs: tuple[float, float] | None = None,
) -> ReleasedOptimizers:
    """The trainer's ``gradient_release = true`` path (``kwargs`` is changed in place, as theirs is)."""
    for p in params:
        p.add_ = types.MethodType(_write_data, p)  # type: ignore[method-assign]
    if "foreach" in inspect.signature(klass).parameters:
        kwargs["foreach"] = False
    for index in range(len(kwargs.get("betas", ()))):
        kwargs["betas"][index] = kwargs["betas"][index] ** (1 / gas)
    if "momentum" in kwargs:
        kwargs["momentum"] = kwargs["momentum"] ** (1 / gas)
    per_param: dict[torch.Tensor, torch.optim.Optimizer] = {}
    for group in param_groups(trainer, params, lrs):
        own = dict(kwargs)  # a shallow copy: every instance gets the same betas list object
        if isinstance(group, dict):
            for p in group["params"]:
                own["lr"] = group["lr"]
                per_param[p] = klass([p], **own)
        else:
            per_param[group] = klass([group], **own)
    hook = _stepper(per_param)
    for p in params:
        p.register_post_accumulate_grad_hook(hook)
    return ReleasedOptimizers(list(per_param.values()))


def _stepper(per_param: dict[torch.Tensor, torch.optim.Optimizer]) -> Callable[[torch.Tensor], None]:
    def hook(p: torch.Tensor) -> None:
        per_param[p].step()
        per_param[p].zero_grad()

    return hook


def prodigy_d(optimizer: torch.optim.Optimizer) -> float:
    """What both trainers log as ``train/prodigy_d`` when the class is named ``Prodigy``."""
    return sum(group["d"] for group in optimizer.param_groups) / len(optimizer.param_groups)


def automagic_lrs(optimizer: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusion-pipe's ``_get_automagic_lrs``: every parameter's ``_get_lr``, stacked, and their mean."""
    lrs = torch.stack(
        [optimizer._get_lr(group, optimizer.state[p]) for group in optimizer.param_groups for p in group["params"]]
    )  # type: ignore[attr-defined]
    return lrs, lrs.mean()


def logged(trainer: str, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """What the trainer logs about the optimizer at a logging step (tag: value)."""
    values: dict[str, Any] = {}
    if type(optimizer).__name__ == "Prodigy":
        values["train/prodigy_d"] = prodigy_d(optimizer)
    if trainer == "diffusion-pipe" and type(optimizer).__name__ in ("Automagic", "GenericOptim"):
        lrs, avg_lr = automagic_lrs(optimizer)
        if avg_lr > 0:
            values["train/automagic_lrs"], values["train/automagic_avg_lr"] = lrs, avg_lr
    return values


def lr_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """The trainers' schedule with ``lr_scheduler = "constant"`` (their default), after an optional warm-up."""
    scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    if warmup_steps > 0:
        warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup_steps, total_iters=warmup_steps)
        scheduler = torch.optim.lr_scheduler.SequentialLR(
            optimizer, schedulers=[warmup, scheduler], milestones=[warmup_steps]
        )
    return scheduler


# -- the real closure, read from a checkout at test time (nothing of it is stored here) -------------

#: Environment variables naming a checkout of each trainer; tests against the real code skip without them.
CHECKOUT_VARIABLES = {"diffusion-pipe": "DIFFUSION_PIPE_DIR", "chroma": "DIFFUSION_CHROMA_DIR"}


def _deepspeed_stub() -> types.SimpleNamespace:
    """The few DeepSpeed attributes ``get_optimizer`` touches (gradient release patches them)."""
    namespace = types.SimpleNamespace
    return namespace(
        utils=namespace(logging=namespace(log_dist=lambda *args, **kwargs: None)),
        runtime=namespace(
            engine=namespace(DeepSpeedEngine=type("DeepSpeedEngine", (), {})),
            pipe=namespace(
                engine=namespace(PipelineEngine=type("PipelineEngine", (), {"_INSTRUCTION_MAP": {}})),
                schedule=namespace(ReduceGrads=object()),
            ),
        ),
    )


def real_get_optimizer(
    trainer: str, checkout: Path, config: dict[str, Any], gas: int, lrs: tuple[float, float] | None
) -> Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]:
    """The ``get_optimizer`` closure of the checkout's train.py, with this stand-in's model and config.

    The checkout folder must be on ``sys.path`` (its ``optimizers`` package is imported).
    """
    model = types.SimpleNamespace(get_param_groups=lambda params: param_groups(trainer, params, lrs))
    namespace: dict[str, Any] = {
        "config": config,
        "ds_config": {"gradient_accumulation_steps": gas},
        "global_batch_size": gas,
        "model": model,
        "pipeline_model": None,
        "deepspeed": _deepspeed_stub(),
        "DummyOptimizer": ReleasedOptimizers,
        "torch": torch,
        "inspect": inspect,
    }
    return real_function(checkout, "get_optimizer", namespace)


def real_function(checkout: Path, name: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    """The function ``name`` of the checkout's train.py (found at any depth), defined in ``namespace``."""
    script = checkout / "train.py"
    tree = ast.parse(script.read_text(encoding="utf-8"))
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(script), "exec"), namespace)
    return namespace[name]

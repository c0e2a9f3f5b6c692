"""Use-case presets whose learning rate is measured: a known AdamW lr times the bench's lr multiplier.

For each model family (:data:`USE_CASES`) the preset's lr is the AdamW lr that
is well known to work there (with its source) times the optimizer's lr
multiplier from a full bench run (``docs/bench/results.json``): the geometric
median of its best lr over AdamW's best lr on the bench tasks that resemble
that training. Presets are made only for the optimizers that tie with or beat
AdamW on every one of those tasks.

``python -m personalized.bench.use_cases docs/bench/results.json presets``
writes them; the tests check that the committed presets still agree with the
committed results.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import presets

#: Where the committed full run lives, relative to the repository root.
RESULTS = "docs/bench/results.json"


@dataclass(frozen=True)
class UseCase:
    """A model family: its preset folder, AdamW's usual lr there, and the bench tasks that resemble it."""

    folder: str
    description: str
    models: tuple[str, ...]
    trainers: tuple[str, ...]
    adamw_lr: float
    adamw_source: str
    #: The bench tasks whose lr multipliers apply.
    tasks: tuple[str, ...]
    #: Presets measured in the bench for this family, used instead of ``default/<Name>`` where present.
    measured_as: str = "default"


LORA_TASKS = ("lora", "denoiser")

USE_CASES = (
    UseCase(
        "sd15-lora",
        "Stable Diffusion 1.5 LoRA",
        ("sd15-lora",),
        ("kohya", "onetrainer", "comfyui"),
        1e-4,
        "kohya-ss/sd-scripts docs/train_network.md: --learning_rate=1e-4 with AdamW8bit",
        LORA_TASKS,
    ),
    UseCase(
        "sdxl-lora",
        "SDXL LoRA",
        ("sdxl-lora",),
        ("kohya", "onetrainer", "comfyui"),
        1e-4,
        "kohya-ss/sd-scripts LoRA examples (docs/train_network.md, which docs/sdxl_train_network.md builds on): 1e-4",
        LORA_TASKS,
    ),
    UseCase(
        "flux-lora",
        "Flux / Chroma LoRA",
        ("flux/chroma",),
        ("kohya", "onetrainer", "diffusion-pipe", "chroma", "comfyui"),
        1e-4,
        "kohya-ss/sd-scripts docs/flux_train_network.md: --learning_rate 1e-4 with adamw8bit",
        LORA_TASKS,
    ),
    UseCase(
        "rvc",
        "RVC voice model (whole-model training)",
        ("rvc",),
        ("rvc",),
        1e-4,
        "RVC train config learning_rate 1e-4 (configs/v2/*.json, AdamW)",
        ("classifier", "diffusion"),
        measured_as="rvc",
    ),
)


def _contenders(document: Mapping[str, Any], task: str) -> Mapping[str, Any]:
    return document["tasks"].get(task, {}).get("contenders", {})


def measured_label(document: Mapping[str, Any], use_case: UseCase, optimizer: str) -> str:
    """The bench label whose figures apply: ``<measured_as>/<optimizer>`` if it ran, else ``default/<optimizer>``."""
    own = f"{use_case.measured_as}/{optimizer}"
    return own if all(own in _contenders(document, task) for task in use_case.tasks) else f"default/{optimizer}"


def multiplier(document: Mapping[str, Any], use_case: UseCase, label: str) -> float | None:
    """The geometric median of ``label``'s lr multipliers on the use case's tasks; None if any is missing."""
    values = [_contenders(document, task).get(label, {}).get("lr_multiplier") for task in use_case.tasks]
    if not values or any(value is None for value in values):
        return None
    return math.exp(statistics.median(math.log(value) for value in values))


def competitive(document: Mapping[str, Any], use_case: UseCase, label: str) -> bool:
    """Whether ``label`` ties with or beats AdamW on every one of the use case's tasks."""
    verdicts = [_contenders(document, task).get(label, {}).get("vs_adamw") for task in use_case.tasks]
    return all(verdict in ("win", "tie") for verdict in verdicts)


def recommended_lr(document: Mapping[str, Any], use_case: UseCase, label: str) -> float | None:
    """AdamW's lr for the use case times ``label``'s multiplier, to two significant digits."""
    factor = multiplier(document, use_case, label)
    return None if factor is None else float(f"{use_case.adamw_lr * factor:.2g}")


def chosen(document: Mapping[str, Any], use_case: UseCase) -> dict[str, str]:
    """Optimizer name -> bench label, for every optimizer of ours that gets a preset for ``use_case``."""
    names = {
        entry["optimizer"]
        for entry in _contenders(document, use_case.tasks[0]).values()
        if entry["preset"] and not entry["adaptive"]
    }
    result = {}
    for name in sorted(names):
        label = measured_label(document, use_case, name)
        if competitive(document, use_case, label) and recommended_lr(document, use_case, label) is not None:
            result[name] = label
    return result


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    if isinstance(value, float):
        return repr(value) if "e" not in repr(value) else f"{value:.1e}".replace("e-0", "e-")
    return json.dumps(value) if isinstance(value, str) else str(value)


#: The first words of the paragraph :func:`render` writes at the top of a preset's advice.
MEASURED = "lr = AdamW's usual lr"


def _own_advice(advice: str) -> list[str]:
    """``advice`` without a paragraph an earlier :func:`render` wrote (so that rendering again changes nothing)."""
    paragraphs = advice.strip().split("\n\n")
    if paragraphs[0].startswith(MEASURED):
        paragraphs = paragraphs[1:]
    return "\n\n".join(paragraphs).splitlines()


def render(document: Mapping[str, Any], use_case: UseCase, optimizer: str, label: str) -> str:
    """The preset file for ``optimizer`` in ``use_case``: the measured preset's settings at the measured lr."""
    base = presets.load(label)
    factor = multiplier(document, use_case, label)
    lr = recommended_lr(document, use_case, label)
    assert factor is not None and lr is not None
    tasks = " and ".join(use_case.tasks)
    verdicts = ", ".join(f"{task}: {_contenders(document, task)[label]['vs_adamw']}" for task in use_case.tasks)
    lines = [
        f"optimizer: {optimizer}",
        f"description: {optimizer} for {use_case.description}, lr measured against AdamW in the bench.",
        "for:",
        f"  trainers: [{', '.join(use_case.trainers)}]",
        f"  models: [{', '.join(use_case.models)}]",
        f"lr: {_yaml_value(lr)}",
        "hyperparameters:",
        *(f"  {key}: {_yaml_value(value)}" for key, value in base.hyperparameters.items()),
        "advice: |",
        f"  {MEASURED} for this use ({use_case.adamw_lr:g}) x {factor:.3g}, the median ratio of",
        f"  {optimizer}'s best lr to AdamW's on the bench's {tasks} tasks ({verdicts} against",
        "  AdamW). If your AdamW lr differs, scale this lr by the same factor. Other settings as",
        f"  {label}.",
        "",
        *(f"  {line}".rstrip() for line in _own_advice(base.advice)),
        "sources:",
        f"  lr: {json.dumps(f'{use_case.adamw_source} x lr multiplier {factor:.3g} ({RESULTS}, {label}, {tasks})')}",
        *(f"  {key}: {json.dumps(base.sources[key])}" for key in base.hyperparameters),
    ]
    if base.fallbacks:
        lines.append("fallbacks:")
        for fallback in base.fallbacks:
            lines.append("  - " + ", ".join(f"{key}: {_yaml_value(value)}" for key, value in fallback.items()))
    else:
        lines.append("fallbacks: []")
    return "\n".join(lines) + "\n"


def write(document: Mapping[str, Any], folder: Path) -> list[Path]:
    """Write every use case's presets into ``folder`` (the presets/ tree); the paths written."""
    written = []
    for use_case in USE_CASES:
        for optimizer, label in chosen(document, use_case).items():
            path = folder / use_case.folder / f"{optimizer}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(document, use_case, optimizer, label), encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m personalized.bench.use_cases RESULTS.json PRESETS_FOLDER")
    for path in write(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")), Path(sys.argv[2])):
        print(path)

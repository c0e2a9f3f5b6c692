"""The use-case presets' learning rates are the committed bench's multipliers times AdamW's usual lrs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import personalized
from personalized import presets
from personalized.bench.report import SCHEMA_VERSION
from personalized.bench.use_cases import RESULTS, USE_CASES, UseCase, chosen, render

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads((ROOT / RESULTS).read_text(encoding="utf-8"))


def test_the_committed_results_are_a_complete_full_sweep(document: dict) -> None:
    assert document["schema_version"] == SCHEMA_VERSION and not document["partial"]
    assert document["protocol"]["mode"] == "full" and len(document["protocol"]["seeds"]) >= 3
    for use_case in USE_CASES:
        assert set(use_case.tasks) <= set(document["tasks"])


def _measured(use_case: UseCase) -> set[str]:
    """The presets in the use case's folder whose lr says it comes from the committed bench."""
    folder = ROOT / "presets" / use_case.folder
    names = {path.stem for path in folder.glob("*.yaml")}
    return {name for name in names if RESULTS in presets.load(f"{use_case.folder}/{name}").sources["lr"]}


@pytest.mark.parametrize("use_case", USE_CASES, ids=lambda use_case: use_case.folder)
def test_every_measured_preset_agrees_with_the_committed_multipliers(document: dict, use_case: UseCase) -> None:
    expected = chosen(document, use_case)
    assert expected, f"no optimizer competitive for {use_case.folder}"
    assert _measured(use_case) == set(expected)
    for name, label in expected.items():
        path = ROOT / "presets" / use_case.folder / f"{name}.yaml"
        assert path.read_text(encoding="utf-8") == render(document, use_case, name, label), path


@pytest.mark.parametrize("use_case", USE_CASES, ids=lambda use_case: use_case.folder)
def test_measured_presets_build_at_their_lr(use_case: UseCase) -> None:
    for name in sorted(_measured(use_case)):
        preset = presets.load(f"{use_case.folder}/{name}")
        optimizer = personalized.create_optimizer([torch.nn.Parameter(torch.ones(2, 2))], preset.name)
        assert optimizer.param_groups[0]["lr"] == preset.lr and use_case.models[0] in preset.models

"""Presets: every shipped file loads, bad files are clear errors, create_optimizer uses them."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import personalized
from personalized import presets
from personalized.presets import PresetError

from conftest import make_params

GOOD = """\
optimizer: FCompass
description: a test preset
for:
  trainers: [rvc]
  models: [rvc]
lr: 1e-4
hyperparameters:
  betas: [0.9, 0.99]
advice: some advice
sources:
  lr: a test
  betas: a test
fallbacks:
  - clip: 0.0
"""


@pytest.mark.parametrize("name", presets.available())
def test_every_shipped_preset_loads_and_builds(name: str) -> None:
    preset = presets.load(name)
    assert preset.name == name and preset.description and preset.advice
    optimizer = personalized.create_optimizer(make_params(), name)
    assert type(optimizer).__name__ == preset.optimizer
    for fallback in preset.fallbacks:  # every fallback is a valid setting for that optimizer
        type(optimizer)(make_params(), **preset.kwargs(**fallback))


def test_catalogue_covers_the_advice() -> None:
    names = set(presets.available())
    assert {f"default/{name}" for name in personalized.available()} <= names
    assert {
        "rvc/FCompass",
        "chroma/scorn",
        "chroma/remaster",
        "chroma/persona",
        "chroma/adafactor",
        "chroma/adamw8bitkahan",
        "chroma/prodigy",
    } <= names
    assert presets.load("rvc/FCompass").hyperparameters["betas"] == (0.9, 0.99)
    assert presets.load("default/FCompass").fallbacks == (
        {"betas": (0.9, 0.99)},
        {"centralization": 0.0},
        {"clip": 0.0},
    )
    for name in ("FMARSCrop", "FMARSCrop_ExMachina"):
        assert presets.load(f"default/{name}").fallbacks[0] == {"diff_mult": 0.0}
    assert presets.load("default/FishMonger").fallbacks == ({"diff_amp": 0.0},)
    assert "1.5x" in presets.load("default/FMARSCrop_ExMachina").advice
    assert presets.load("advice/FARMSCropV2-noisy-data").hyperparameters["momentum_beta"] == 0.9999


def write(tmp_path: Path, text: str, name: str = "mine/test") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_user_folder_is_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, GOOD)
    monkeypatch.setenv("PERSONALIZED_PRESETS", str(tmp_path))
    assert "mine/test" in presets.available()
    preset = presets.load("MINE/Test")
    assert preset.lr == 1e-4 and preset.fallbacks == ({"clip": 0.0},)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("  betas: [0.9, 0.99]", "  betas: [0.9, 1.5]"), r"test\.yaml:8: hyperparameters: betas=\[0\.9, 1\.5\]"),
        (("  betas: [0.9, 0.99]", "  betass: [0.9, 0.99]"), r"test\.yaml:8: hyperparameters: unknown key 'betass'"),
        (("lr: 1e-4", "lr: fast"), r"test\.yaml:6: lr: lr='fast' is not allowed"),
        (("lr: 1e-4", "lr: -1.0"), r"test\.yaml:6: lr: lr=-1\.0 is not allowed; expected a finite number >= 0"),
        (("  - clip: 0.0", "  - clip: -1.0"), r"test\.yaml:14: fallback 1: clip=-1\.0"),
        (("  - clip: 0.0", "  - clipp: 0.0"), r"test\.yaml:14: fallback 1: unknown key 'clipp'"),
        (("  betas: a test", "  beta: a test"), r"test\.yaml:10: sources: no source given for betas"),
        (("advice: some advice", "advise: some advice"), r"test\.yaml:9: unknown field 'advise'"),
        (("optimizer: FCompass", "optimizer: FCompas"), r"test\.yaml:1: optimizer: Unknown optimizer 'FCompas'"),
        (("  models: [rvc]", "  models: [rvcc]"), r"test\.yaml:5: for.models: 'rvcc' is not one of"),
        (("lr: 1e-4", "lr: [1e-4"), r"test\.yaml:\d+: not valid YAML"),
    ],
)
def test_bad_preset_names_file_key_and_line(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(PresetError, match=message):
        presets.load_file(path, "mine/test")


def test_unknown_preset_suggests_close_names() -> None:
    with pytest.raises(PresetError, match=r"Unknown preset 'rvc/FCompas'\. Did you mean rvc/FCompass"):
        presets.load("rvc/FCompas")


def test_create_optimizer_from_preset_name_and_optimizer_name() -> None:
    optimizer = personalized.create_optimizer(make_params(), "rvc/FCompass", weight_decay=0.0)
    assert optimizer.defaults["betas"] == (0.9, 0.99) and optimizer.defaults["lr"] == 1e-4
    assert optimizer.defaults["weight_decay"] == 0.0
    plain = personalized.create_optimizer(make_params(), "fmarscrop_exmachina")
    assert plain.defaults == personalized.FMARSCrop_ExMachina(make_params()).defaults


def test_create_optimizer_works_on_dict_values_and_steps_without_closure() -> None:
    """The calls ComfyUI makes: params as a dict_values view, step() without closure, bare zero_grad()."""
    weights = {f"w{i}": p for i, p in enumerate(make_params())}
    optimizer = personalized.create_optimizer(weights.values(), "default/FCompass")
    for p in weights.values():
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in weights.values()]
    optimizer.step()
    optimizer.zero_grad()
    assert all(p.grad is None for p in weights.values())
    assert all(not torch.equal(a, b) for a, b in zip(before, weights.values()))


def test_broken_user_default_preset_is_an_error_not_the_shipped_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, GOOD.replace("lr: 1e-4", "lr: fast"), name="default/FCompass")
    monkeypatch.setenv("PERSONALIZED_PRESETS", str(tmp_path))
    with pytest.raises(PresetError, match=rf"{path}:6: lr: lr='fast' is not allowed"):
        personalized.create_optimizer(make_params(), "FCompass")
    write(tmp_path, GOOD, name="default/FCompass")
    assert personalized.create_optimizer(make_params(), "fcompass").defaults["betas"] == (0.9, 0.99)


def test_without_pyyaml_only_a_user_default_preset_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert personalized.create_optimizer(make_params(), "FCompass").defaults["betas"] == (0.99, 0.999)
    write(tmp_path, GOOD, name="default/FCompass")
    monkeypatch.setenv("PERSONALIZED_PRESETS", str(tmp_path))
    with pytest.raises(ImportError, match="presets need PyYAML"):
        personalized.create_optimizer(make_params(), "FCompass")


#: Lists, shows, exports and validates presets in a Python where bitsandbytes and prodigyopt are missing.
WITHOUT_OPTIONAL_PACKAGES = """
import sys
sys.modules["bitsandbytes"] = sys.modules["prodigyopt"] = None
from personalized import presets
from personalized.cli import main
assert main(["presets"]) == 0
assert main(["presets", "show", "default/AdamW8bitKahan"]) == 0
for preset in ("default/Prodigy", "default/AdamW8bitKahan"):
    for to in ("kohya-args", "onetrainer-json", "toml"):
        assert main(["export", preset, "--to", to]) == 0
try:
    presets.load_file(sys.argv[1], "mine/prodigy")
except presets.PresetError as error:
    print("refused:", error)
"""


def test_presets_need_only_pyyaml(tmp_path: Path) -> None:
    bad = write(tmp_path, GOOD.replace("FCompass", "Prodigy").replace("  - clip: 0.0", "  - d0: -1.0"))
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPTIONAL_PACKAGES, str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "default/AdamW8bitKahan" in result.stdout and "cannot be loaded" not in result.stdout
    assert "personalized.Prodigy" in result.stdout and '"optimizer": "PERSONALIZED_ADAMW8BITKAHAN"' in result.stdout
    assert f"refused: {bad}:14: fallback 1: d0=-1.0 is not allowed" in result.stdout


def test_without_a_presets_folder_says_where_to_put_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(presets, "SEARCH_PATH", (tmp_path / "nowhere",))
    monkeypatch.delenv("PERSONALIZED_PRESETS", raising=False)
    with pytest.raises(PresetError, match=re.escape(f"copy the repository's presets folder to {presets.PACKAGE}")):
        personalized.create_optimizer(make_params(), "rvc/FCompass")

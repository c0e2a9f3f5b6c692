from __future__ import annotations

import pytest

import personalized

ORIGINALS = ["FCompass", "FishMonger", "FARMSCrop", "FARMSCropV2", "FMARSCrop", "FMARSCrop_ExMachina"]


@pytest.mark.parametrize("name", ORIGINALS)
def test_kohya_style_attribute_lookup(name: str) -> None:
    """kohya resolves --optimizer_type personalized.X with getattr on the module."""
    cls = getattr(personalized, name)
    assert cls.__name__ == name
    assert personalized.get_optimizer(name) is cls
    assert name in personalized.available()


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("fcompass", "FCompass"),
        ("FISHMONGER", "FishMonger"),
        ("farmscrop_v2", "FARMSCropV2"),
        ("fmarscrop-exmachina", "FMARSCrop_ExMachina"),
        ("exmachina", "FMARSCrop_ExMachina"),
        ("personalized.FCompass", "FCompass"),
        ("fisher_compass", "FCompass"),
    ],
)
def test_names_are_case_insensitive_with_aliases(spelling: str, expected: str) -> None:
    assert personalized.get_optimizer(spelling).__name__ == expected


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match=r"Unknown optimizer 'FCompas'\. Did you mean FCompass\?"):
        personalized.get_optimizer("FCompas")
    with pytest.raises(ValueError, match="Available: FCompass, FishMonger"):
        personalized.get_optimizer("adamw")
    with pytest.raises(TypeError):
        personalized.get_optimizer(None)  # type: ignore[arg-type]

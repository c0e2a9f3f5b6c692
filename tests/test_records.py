"""The test records (``conftest.RECORDS``): one per optimizer, naming only what exists."""

from __future__ import annotations

import pytest

import personalized

import reference
from conftest import RECORDS, record


def test_every_optimizer_has_a_record_and_every_record_an_optimizer() -> None:
    assert list(RECORDS) == personalized.available()
    with pytest.raises(KeyError, match=r"NewOptimizer has no OptimizerRecord in tests/conftest\.py RECORDS"):
        record("NewOptimizer")


@pytest.mark.parametrize("name", list(RECORDS))
def test_a_record_names_the_optimizers_own_keywords_and_recordings(name: str) -> None:
    entry = record(name)
    keywords = set(personalized.get_optimizer(name).hyperparameter_defaults())
    for settings in (entry.features, entry.fixed_lr, entry.original_defaults or {}, entry.original_settings):
        assert set(settings) <= keywords, set(settings) - keywords
    recorded = set(reference.cases([name]))
    assert set(entry.fixed_cases) | set(entry.bf16_ulps) <= recorded
    for settings in entry.fixed_cases.values():
        assert set(settings or {}) <= keywords
    assert not entry.replayed or recorded, f"{name} is marked replayed but has no recordings in tests/refdata"

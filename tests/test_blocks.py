from __future__ import annotations

import pytest
import torch

from personalized.blocks import copy_stochastic_, rms_clip_relative, rms_clip_scaled, soft_beta


def test_soft_beta_is_zero_at_the_first_step_and_tends_to_beta() -> None:
    assert soft_beta(0.999, 1) == 0.0
    assert soft_beta(0.9, 2) == pytest.approx(0.9 * 0.1 / (1 - 0.81))
    assert soft_beta(0.9, 10_000) == pytest.approx(0.9)


def test_clip_zero_disables_both_rms_clip_idioms() -> None:
    x = torch.randn(10) * 100
    assert rms_clip_scaled(x, 0.0, 1e-8) is x
    assert rms_clip_relative(x, 0.0) is x
    assert torch.linalg.vector_norm(rms_clip_relative(x, 1.0)) == pytest.approx(10**0.5, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_stochastic_rounding_is_unbiased_on_the_targets_grid(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    # Values between two neighbours of the target grid, a quarter of the way up.
    base = torch.tensor([1.0, -3.0, 1e-3, 200.0]).to(dtype)
    ulp = torch.nextafter(base, torch.full_like(base, float("inf"))).float() - base.float()
    source = (base.float() + 0.25 * ulp).repeat(20_000, 1)
    target = torch.empty_like(source, dtype=dtype)
    copy_stochastic_(target, source)
    landed = target.float()
    # Every result is one of the two neighbours ...
    assert ((landed == base.float()) | (landed == base.float() + ulp)).all()
    # ... and the average is the source value.
    torch.testing.assert_close(landed.mean(0), source[0], rtol=0, atol=(0.02 * ulp).max().item())


def test_stochastic_rounding_keeps_representable_values() -> None:
    values = torch.tensor([0.0, 1.0, -2.5, 65504.0])
    for dtype in (torch.bfloat16, torch.float16):
        target = torch.empty_like(values, dtype=dtype)
        copy_stochastic_(target, values.to(dtype).float())
        assert torch.equal(target, values.to(dtype))

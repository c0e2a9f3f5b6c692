"""AdamW8bitKahan: the recorded original (bitsandbytes 0.50.2 with the compat shim), its fixes, and bitsandbytes itself.

The original's weight decay multiplied the Kahan buffer and did nothing, so its
recordings are replayed with ``weight_decay=0``; the real decay is tested
against the same recordings below.
"""

from __future__ import annotations

import io

import bitsandbytes as bnb
import pytest
import torch

import personalized
from personalized.registry import OPTIONAL

import reference
from conftest import fill_grads, make_params, record

AdamW8bitKahan = personalized.AdamW8bitKahan
CASE = "AdamW8bitKahan__{}".format
#: Recorded float32 runs with float32 state (every tensor is below min_8bit_size).
FLOAT32_CASES = [
    CASE(name)
    for name in (
        "default_bnbcompat",
        "readme_nostabilize_bnbcompat",
        "lr1e-2_nostabilize_wd0_bnbcompat",
        "lr1e-2_nostabilize_wd0.1_bnbcompat",
    )
]
BF16_CASE = CASE("bf16_nostabilize_bnbcompat")
STATE8BIT_CASE = CASE("state8bit_stabilize_bnbcompat")
TOLERANCE = 1e-6
#: The original's decay was a no-op.
ORIGINAL = record("AdamW8bitKahan").original_settings


def free_run(case: reference.Case, **overrides: object) -> list[float]:
    """Run the recorded problem on our own trajectory (refdata/README.md) and return the loss after each step."""
    params = case.initial_params()
    targets = [case.tensors[f"target/{name}"] for name in reference.NAMES]
    torch.manual_seed(case.meta["global_torch_seed"])
    optimizer = AdamW8bitKahan(params, **{**case.kwargs, **overrides})
    losses = []
    for step in range(case.steps):
        noise = torch.Generator().manual_seed(1000 + step)
        for p, target in zip(params, targets):
            p.grad = (2 * (p.detach().float() - target) + 0.1 * torch.randn(p.shape, generator=noise)).to(p.dtype)
        optimizer.step()
        losses.append(sum(((p.detach().float() - t) ** 2).sum().item() for p, t in zip(params, targets)))
    return losses


def recorded_grads_run(case: reference.Case, **overrides: object) -> tuple[AdamW8bitKahan, list[torch.nn.Parameter]]:
    """Feed the recorded gradients (the parameters follow our own run); return the optimizer and parameters."""
    params = case.initial_params()
    optimizer = AdamW8bitKahan(params, **{**case.kwargs, **overrides})
    for step in range(case.steps):
        for p, grad in zip(params, case.grads(step)):
            p.grad = grad.clone()
        optimizer.step()
    return optimizer, params


def recorded_state(case: reference.Case, name: str) -> dict[str, torch.Tensor]:
    prefix = f"final_state/{name}/"
    return {key.removeprefix(prefix): value for key, value in case.tensors.items() if key.startswith(prefix)}


def test_every_recorded_case_is_tested() -> None:
    assert set(reference.cases(["AdamW8bitKahan"], status="ok")) == {*FLOAT32_CASES, BF16_CASE, STATE8BIT_CASE}
    assert reference.cases(["AdamW8bitKahan"], status="crash") == [CASE("asis_bnb0.50.2")]


def test_docstring_summary_is_the_registry_summary() -> None:
    assert AdamW8bitKahan.__doc__.splitlines()[0] == OPTIONAL["AdamW8bitKahan"].summary


# -- the recordings ----------------------------------------------------------------------


@pytest.mark.parametrize("name", FLOAT32_CASES)
def test_float32_recording_matches(name: str) -> None:
    errors = reference.replay(reference.load(name), AdamW8bitKahan, **ORIGINAL)
    assert max(errors) <= TOLERANCE, f"worst step {errors.index(max(errors))}: {max(errors):.3g}"


@pytest.mark.parametrize("name", FLOAT32_CASES)
def test_float32_final_moments_match(name: str) -> None:
    """Same moments under the same names; float32 parameters have no Kahan buffer."""
    case = reference.load(name)
    optimizer, params = recorded_grads_run(case, **ORIGINAL)
    for pname, p in zip(reference.NAMES, params):
        recorded = recorded_state(case, pname)
        state = optimizer.state[p]
        assert set(state) == {"step", "state1", "state2"} and set(recorded) == {"state1", "state2", "shift"}
        assert state["step"] == case.meta["final_scalar_state"][pname]["step"]
        for key in ("state1", "state2"):
            torch.testing.assert_close(state[key], recorded[key], rtol=1e-5, atol=1e-7)


def test_bf16_recording_is_reproduced_by_round_to_nearest_kahan() -> None:
    case = reference.load(BF16_CASE)
    errors = reference.replay(case, AdamW8bitKahan, in_ulps=True, stochastic_fp=False, **ORIGINAL)
    assert max(errors) <= 1.0
    optimizer, params = recorded_grads_run(case, stochastic_fp=False, **ORIGINAL)
    for pname, p in zip(reference.NAMES, params):
        state, recorded = optimizer.state[p], recorded_state(case, pname)
        assert {key: state[key].dtype for key in recorded} == {key: value.dtype for key, value in recorded.items()}
        for key in ("state1", "state2"):
            torch.testing.assert_close(state[key], recorded[key], rtol=1e-5, atol=1e-7)
        # The Kahan buffer holds less than one bf16 rounding step of the parameter.
        assert reference.ulps(p.detach().float() + state["shift"].float(), p.detach()).max() < 1


def test_bf16_recording_with_stochastic_rounding_stays_within_two_ulps() -> None:
    case = reference.load(BF16_CASE)
    assert max(reference.replay(case, AdamW8bitKahan, in_ulps=True, **ORIGINAL)) <= 2.0
    losses = free_run(case, **ORIGINAL)
    assert losses == pytest.approx(case.meta["loss_after_step"], rel=0.01)


def test_8bit_recording_matches_bitsandbytes_math_after_the_zero_first_step() -> None:
    """The original's stabilize divided by uint8 codes: its first update was 0 (v = 0) and
    afterwards it never acted on this problem. Without stabilize our steps 2..30 match."""
    case = reference.load(STATE8BIT_CASE)
    errors = reference.replay(case, AdamW8bitKahan, stabilize=False, **ORIGINAL)
    assert errors[0] > 100 * TOLERANCE
    assert max(errors[1:]) <= TOLERANCE


def test_8bit_state_is_the_recorded_bitsandbytes_state() -> None:
    """m and v do not depend on the learning rate: same codes, absmax and maps."""
    case = reference.load(STATE8BIT_CASE)
    optimizer, params = recorded_grads_run(case)
    for pname, p in zip(reference.NAMES, params):
        state, recorded = optimizer.state[p], recorded_state(case, pname)
        assert set(state) == {"step"} | set(recorded) - {"shift"}
        for key in ("state1", "state2"):
            assert state[key].dtype == torch.uint8
            assert (state[key].int() - recorded[key].int()).abs().max() <= 1  # within one quantisation code
        for key in ("absmax1", "absmax2", "qmap1", "qmap2"):
            torch.testing.assert_close(state[key], recorded[key], rtol=1e-6, atol=0)


def test_8bit_stabilize_uses_dequantised_v() -> None:
    """With 8-bit state, stabilize now damps like with float32 state: our 8-bit run follows
    the recorded float32-state run (same settings), not the original's undamped 8-bit run."""
    case = reference.load(STATE8BIT_CASE)
    assert reference.replay(case, AdamW8bitKahan, **ORIGINAL)[0] == 0.0  # first update 0, as recorded
    losses = free_run(case, **ORIGINAL)
    assert losses == pytest.approx(case.meta["loss_after_step"], rel=0.05)
    float32_state = reference.load(CASE("default_bnbcompat")).meta["loss_after_step"]
    drop, recorded_drop = losses[0] - losses[-1], float32_state[0] - float32_state[-1]
    assert drop == pytest.approx(recorded_drop, rel=0.02)
    assert drop < 0.2 * (case.meta["loss_after_step"][0] - case.meta["loss_after_step"][-1])


def test_recorded_crash_case_now_runs() -> None:
    """The original raised KeyError on bitsandbytes 0.50; with the same (default) settings
    ours takes the step the shimmed original took in the default case."""
    crash, default = reference.load(CASE("asis_bnb0.50.2")), reference.load(CASE("default_bnbcompat"))
    assert "KeyError: 'percentile_clipping'" in crash.meta["error"] and crash.steps == 0
    assert crash.kwargs == default.kwargs == {}
    params = crash.initial_params()
    optimizer = AdamW8bitKahan(params, **crash.kwargs)
    for p, grad in zip(params, crash.grads(0)):
        p.grad = grad.clone()
    optimizer.step()
    for p, recorded in zip(params, default.params_after(0)):
        torch.testing.assert_close(p.detach(), recorded, rtol=0, atol=TOLERANCE)


# -- the fixes -----------------------------------------------------------------------------


def test_weight_decay_shrinks_the_parameter_by_the_adamw_amount() -> None:
    """Each step, ours differs from the original's (no-op decay) step by exactly -lr * wd * p."""
    case = reference.load(CASE("lr1e-2_nostabilize_wd0.1_bnbcompat"))
    lr, weight_decay = case.kwargs["lr"], case.kwargs["weight_decay"]
    params = case.initial_params()
    optimizer = AdamW8bitKahan(params, **case.kwargs)
    for step in range(case.steps):
        before = case.params_after(step - 1) if step else [p.detach().clone() for p in params]
        for p, value, grad in zip(params, before, case.grads(step)):
            p.data.copy_(value)
            p.grad = grad.clone()
        optimizer.step()
        for p, value, recorded in zip(params, before, case.params_after(step)):
            torch.testing.assert_close(p.detach() - recorded, -lr * weight_decay * value, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("stochastic_fp", [False, True])
def test_weight_decay_reaches_low_precision_parameters(dtype: torch.dtype, stochastic_fp: bool) -> None:
    """Each decay step (1e-4 of the value) is far below half a bf16 rounding step; Kahan keeps it.
    The buffer has the parameter's precision, so the sum is exact to a few percent of the decay."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.ones(512, dtype=dtype))
    optimizer = AdamW8bitKahan([p], lr=1e-3, weight_decay=0.1, stochastic_fp=stochastic_fp)
    for _ in range(100):
        p.grad = torch.zeros_like(p)
        optimizer.step()
    exact = (1 - 1e-4) ** 100
    total = p.detach().float() + optimizer.state[p]["shift"].float()
    assert (total - exact).abs().max() <= 0.05 * (1 - exact)
    assert reference.ulps(p.detach(), torch.full_like(p, exact)).max() <= 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("stochastic_fp", [False, True])
def test_kahan_buffer_keeps_every_small_update(dtype: torch.dtype, stochastic_fp: bool) -> None:
    """At lr 1e-4 the parameter plus its Kahan buffer follows a float32 run to a few percent of the drift."""
    torch.manual_seed(0)
    reference_param = torch.nn.Parameter(torch.ones(1024))
    low = torch.nn.Parameter(torch.ones(1024, dtype=dtype))
    settings = dict(lr=1e-4, stabilize=False, stochastic_fp=stochastic_fp)
    opt_ref, opt_low = AdamW8bitKahan([reference_param], **settings), AdamW8bitKahan([low], **settings)
    gen = torch.Generator().manual_seed(1)
    for _ in range(60):
        grad = (1.0 + 0.1 * torch.randn(1024, generator=gen)).to(dtype)
        reference_param.grad, low.grad = grad.float(), grad
        opt_ref.step()
        opt_low.step()
    total = low.detach().float() + opt_low.state[low]["shift"].float()
    drift = reference_param.detach() - 1
    assert ((total - reference_param.detach()).abs() <= 0.05 * drift.abs()).all()
    assert reference.ulps(low.detach(), reference_param.detach().to(dtype)).max() <= 1


def test_kahan_buffer_keeps_the_exact_remainder_when_a_step_flips_signs() -> None:
    """Steps of about lr = 1 flip many bf16 parameters' signs: the buffer still holds what rounding cut off,
    measured exactly and rounded once (taken in bf16, that remainder was rounded twice)."""
    torch.manual_seed(0)
    start, grad = torch.randn(4096).bfloat16(), torch.randn(4096).bfloat16()
    settings = dict(lr=1.0, stabilize=False, weight_decay=0.0, stochastic_fp=False, min_8bit_size=2**31)
    exact = torch.nn.Parameter(start.float())
    exact.grad = grad.float()
    AdamW8bitKahan([exact], **settings).step()
    low = torch.nn.Parameter(start.clone())
    low.grad = grad
    optimizer = AdamW8bitKahan([low], **settings)
    optimizer.step()
    assert (low.detach().sign() != start.sign()).sum() > 1000
    update = (exact.detach() - start.float()).bfloat16()  # the step, as the buffer first takes it
    remainder = start.double() + update.double() - low.detach().double()
    assert torch.equal(optimizer.state[low]["shift"], remainder.float().bfloat16())


def test_stabilize_is_a_param_group_setting() -> None:
    stable, plain = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    optimizer = AdamW8bitKahan([{"params": [stable]}, {"params": [plain], "stabilize": False}], weight_decay=0.0)
    stable.grad, plain.grad = torch.ones(4), torch.ones(4)
    optimizer.step()
    assert torch.equal(stable.detach(), torch.ones(4))  # the stabilised first update is 0
    torch.testing.assert_close(plain.detach(), torch.full((4,), 1 - 1e-3))


def test_state_layout_follows_min_8bit_size_and_dtype() -> None:
    """bitsandbytes' threshold: a rank-16 LoRA matrix (16 x 320) gets 8-bit state, rank 8 does not."""
    rank16, rank8 = torch.nn.Parameter(torch.randn(16, 320)), torch.nn.Parameter(torch.randn(8, 320))
    half = torch.nn.Parameter(torch.randn(16, 320, dtype=torch.bfloat16))
    small_group = torch.nn.Parameter(torch.randn(8, 320))
    optimizer = AdamW8bitKahan([{"params": [rank16, rank8, half]}, {"params": [small_group], "min_8bit_size": 1}])
    for p in (rank16, rank8, half, small_group):
        p.grad = torch.randn_like(p)
    optimizer.step()

    def layout(p: torch.Tensor) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
        return {k: (v.dtype, tuple(v.shape)) for k, v in optimizer.state[p].items() if torch.is_tensor(v)}

    codes = {
        "state1": (torch.uint8, (16, 320)),
        "state2": (torch.uint8, (16, 320)),
        "absmax1": (torch.float32, (20,)),
        "absmax2": (torch.float32, (20,)),
        "qmap1": (torch.float32, (256,)),
        "qmap2": (torch.float32, (256,)),
    }
    assert layout(rank16) == codes
    assert layout(half) == {**codes, "shift": (torch.bfloat16, (16, 320))}
    assert layout(rank8) == {"state1": (torch.float32, (8, 320)), "state2": (torch.float32, (8, 320))}
    assert layout(small_group)["state1"] == (torch.uint8, (8, 320))


def test_old_bitsandbytes_keywords_are_accepted() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = AdamW8bitKahan(
        params, amsgrad=False, optim_bits=8, args=None, is_paged=False, percentile_clipping=100, block_wise=True
    )
    assert optimizer.defaults["optim_bits"] == 8 and optimizer.defaults["percentile_clipping"] == 100


@pytest.mark.parametrize(
    ("key", "value"), [("percentile_clipping", 95), ("block_wise", False), ("amsgrad", True), ("optim_bits", 16)]
)
def test_unsupported_old_values_are_clear_errors(key: str, value: object) -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(
        ValueError, match=rf"AdamW8bitKahan: constructor: {key}={value!r} is not allowed; expected .+ \("
    ):
        AdamW8bitKahan(params, **{key: value})
    optimizer = AdamW8bitKahan(params)
    with pytest.raises(ValueError, match=rf"AdamW8bitKahan: param group 1: {key}={value!r} is not allowed"):
        optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], key: value})
    assert len(optimizer.param_groups) == 1


def test_a_bitsandbytes_args_object_is_refused() -> None:
    with pytest.raises(ValueError, match=r"args=.* is not allowed; expected None"):
        AdamW8bitKahan([torch.nn.Parameter(torch.zeros(2))], args=object())


# -- bitsandbytes itself, and checkpoints --------------------------------------------------


@pytest.mark.parametrize("min_8bit_size", [1, 4096])
def test_float32_parameters_follow_bitsandbytes_adamw8bit(min_8bit_size: int) -> None:
    """Without stabilize, ours is bitsandbytes' own AdamW8bit (real decay included): same state, same steps."""
    ours, theirs = make_params(), make_params()
    settings = dict(lr=1e-2, weight_decay=0.1, min_8bit_size=min_8bit_size)
    optimizer = AdamW8bitKahan(ours, stabilize=False, **settings)
    bnb_optimizer = bnb.optim.AdamW8bit(theirs, **settings)
    for seed in range(10):
        fill_grads(ours, seed)
        fill_grads(theirs, seed)
        optimizer.step()
        bnb_optimizer.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=TOLERANCE)
        state, bnb_state = optimizer.state[a], bnb_optimizer.state[b]
        assert set(state) == set(bnb_state)
        for key, value in bnb_state.items():
            assert torch.equal(state[key], value) if torch.is_tensor(value) else state[key] == value


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("min_8bit_size", [1, 4096])
def test_low_precision_resume_keeps_state_dtypes_and_is_bit_identical(dtype: torch.dtype, min_8bit_size: int) -> None:
    def run(resume_at: int | None) -> tuple[list[torch.Tensor], dict[str, torch.dtype]]:
        torch.manual_seed(0)
        params = make_params(dtype=dtype)
        optimizer = AdamW8bitKahan(params, min_8bit_size=min_8bit_size, weight_decay=0.1)
        for step in range(8):
            if step == resume_at:
                buffer = io.BytesIO()
                torch.save({"params": [p.detach() for p in params], "optimizer": optimizer.state_dict()}, buffer)
                buffer.seek(0)
                saved = torch.load(buffer, weights_only=True)
                params = [torch.nn.Parameter(p.clone()) for p in saved["params"]]
                optimizer = AdamW8bitKahan(params, min_8bit_size=min_8bit_size, weight_decay=0.1)
                optimizer.load_state_dict(saved["optimizer"])
            fill_grads(params, step)
            optimizer.step()
        dtypes = {k: v.dtype for k, v in optimizer.state[params[0]].items() if torch.is_tensor(v)}
        return [p.detach() for p in params], dtypes

    (straight, dtypes), (resumed, resumed_dtypes) = run(None), run(4)
    assert resumed_dtypes == dtypes and dtypes["state1"] == (torch.uint8 if min_8bit_size == 1 else torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed))

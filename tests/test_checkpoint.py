"""A checkpoint loads with weights_only=True and the resumed run is bit-identical."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from conftest import fill_grads, make_params, record


def run(cls: type, steps: int, resume_at: int | None = None, unmarked: bool = False) -> list[torch.Tensor]:
    """``steps`` steps with an LR scheduler, saved and reloaded at ``resume_at`` (``unmarked``: without
    the optimizer's name, as checkpoints of earlier versions)."""
    params = make_params()
    optimizer = cls(params, **record(cls).features)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    for step in range(steps):
        if step == resume_at:
            buffer = io.BytesIO()
            torch.save(
                {
                    "params": [p.detach() for p in params],
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                },
                buffer,
            )
            buffer.seek(0)
            saved = torch.load(buffer, weights_only=True)
            if unmarked:
                del saved["optimizer"]["optimizer"]
            params = [torch.nn.Parameter(p.clone()) for p in saved["params"]]
            optimizer = cls(params, **record(cls).features)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        fill_grads(params, step)
        optimizer.step()
        scheduler.step()
    return [p.detach() for p in params]


def test_resume_mid_run_is_bit_identical(optimizer_class: type) -> None:
    straight = run(optimizer_class, 12)
    resumed = run(optimizer_class, 12, resume_at=5)
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed))
    assert not all(torch.equal(a, b) for a, b in zip(straight, run(optimizer_class, 11)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_resume_is_bit_identical(optimizer_class: type, dtype: torch.dtype) -> None:
    """State dtypes survive the round trip (torch would cast float32 state to the parameter's dtype)."""

    def run_half(resume_at: int | None) -> list[torch.Tensor]:
        params = make_params(dtype=dtype)
        settings = record(optimizer_class).features
        torch.manual_seed(0)
        optimizer = optimizer_class(params, **settings)
        for step in range(8):
            if step == resume_at:
                buffer = io.BytesIO()
                torch.save({"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}, buffer)
                buffer.seek(0)
                saved = torch.load(buffer, weights_only=True)
                optimizer = optimizer_class(params, **settings)
                optimizer.load_state_dict(saved["optimizer"])
                torch.set_rng_state(saved["rng"])
            fill_grads(params, step)
            optimizer.step()
        return [p.detach().clone() for p in params]

    assert all(torch.equal(a, b) for a, b in zip(run_half(None), run_half(4)))


def adamw_checkpoint(params: list[torch.nn.Parameter]) -> dict:
    """What a trainer saved while it still trained with AdamW (and an ExponentialLR schedule)."""
    adamw = torch.optim.AdamW(params, lr=1e-3, betas=(0.8, 0.99), eps=1e-9)
    torch.optim.lr_scheduler.ExponentialLR(adamw, gamma=0.9)
    fill_grads(params, 0)
    adamw.step()
    return adamw.state_dict()


def test_resuming_from_another_optimizers_state_resets_it_with_one_warning(optimizer_class: type) -> None:
    params = make_params()
    saved = adamw_checkpoint(params)
    optimizer = optimizer_class(params, **record(optimizer_class).features)
    ours = {key: value for key, value in optimizer.param_groups[0].items() if key not in ("params", "lr")}
    with pytest.warns(UserWarning, match="holds another optimizer.s state"):
        optimizer.load_state_dict(saved)
    assert len(optimizer.state) == 0
    group = optimizer.param_groups[0]
    assert group["initial_lr"] == 1e-3 and group["lr"] == 1e-3  # kept for the LR scheduler
    assert {key: value for key, value in group.items() if key not in ("params", "lr", "initial_lr")} == ours
    torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9, last_epoch=0)  # RVC resumes like this
    fill_grads(params, 1)
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in params)


def test_switching_between_two_of_ours_is_detected() -> None:
    import personalized

    params = make_params()
    fcompass = personalized.FCompass(params)
    fill_grads(params, 0)
    fcompass.step()
    fishmonger = personalized.FishMonger(params)
    with pytest.warns(UserWarning, match="written by FCompass, not FishMonger"):
        fishmonger.load_state_dict(fcompass.state_dict())
    fishmonger.step()
    assert set(fishmonger.state[params[0]]) >= {"momentum_slow", "fim"}


def test_an_unmarked_checkpoint_of_another_optimizer_is_told_by_its_state() -> None:
    """Checkpoints written before they named their optimizer: the state's keys tell."""
    import personalized

    params = make_params()
    fcompass = personalized.FCompass(params)
    fill_grads(params, 0)
    fcompass.step()
    saved = fcompass.state_dict()
    del saved["optimizer"]
    with pytest.warns(UserWarning, match="holds another optimizer.s state .max_ema_squared"):
        personalized.FishMonger(params).load_state_dict(saved)


def trained(name: str, settings: dict) -> dict:
    """A checkpoint of ``name`` after one step."""
    import personalized

    params = make_params()
    optimizer = personalized.get_optimizer(name)(params, **settings)
    fill_grads(params, 0)
    optimizer.step()
    return optimizer.state_dict()


def ours_on(name: str, params: list[torch.nn.Parameter]):
    import personalized

    cls = personalized.get_optimizer(name)
    return cls(params, **{**record(name).features, "lr": 5e-4})


def writer_settings(name: str) -> dict:
    """Every feature on, lr 1e-3; EnhancedAdafactor with its default relative step (lr=None)."""
    return {} if name == "EnhancedAdafactor" else {**record(name).features, "lr": 1e-3}


def all_names() -> list[str]:
    import personalized

    return personalized.available()


@pytest.mark.parametrize("writer", all_names())
def test_a_checkpoint_of_another_of_ours_keeps_our_settings_and_starts_fresh(writer: str) -> None:
    """Also the pairs whose state keys coincide (FARMSCrop and FARMSCropV2, REMASTER, SCORN and
    Persona...), and EnhancedAdafactor's lr=None, which no other optimizer can step with."""
    saved = trained(writer, writer_settings(writer))
    for reader in all_names():
        if reader == writer:
            continue
        params = make_params()
        optimizer = ours_on(reader, params)
        ours = [dict(group) for group in optimizer.param_groups]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            optimizer.load_state_dict(saved)
        messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        assert len(messages) == 1 and f"written by {writer}, not {reader}" in messages[0], (reader, messages)
        assert len(optimizer.state) == 0
        lr = 5e-4 if writer == "EnhancedAdafactor" else 1e-3  # a number is taken over, None is not
        assert [dict(group) for group in optimizer.param_groups] == [{**group, "lr": lr} for group in ours], reader
        fill_grads(params, 1)
        optimizer.step()
        assert all(torch.isfinite(p).all() for p in params), reader


def test_resuming_from_a_checkpoint_without_the_optimizer_name_is_bit_identical(optimizer_class: type) -> None:
    """Checkpoints of the same optimizer written before ``state_dict()`` named it still resume exactly."""
    straight = run(optimizer_class, 12)
    resumed = run(optimizer_class, 12, resume_at=5, unmarked=True)
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed))


def test_param_groups_keep_exactly_our_settings_after_a_resume(optimizer_class: type) -> None:
    """torch adds ``differentiable`` to ``defaults`` while loading; it must not reach the param groups,
    also when an earlier resume wrote it into the checkpoint, nor a group added later."""
    params = make_params()
    settings = record(optimizer_class).features
    optimizer = optimizer_class(params[:2], **settings)
    fresh = set(optimizer.param_groups[0])
    fill_grads(params, 0)
    optimizer.step()
    keys = set(optimizer.param_groups[0])  # FMARSCrop_ExMachina adds its group step counter
    saved = optimizer.state_dict()
    saved["param_groups"][0]["differentiable"] = False  # as written after a resume by earlier versions
    for _ in range(2):
        resumed = optimizer_class(params[:2], **settings)
        resumed.load_state_dict(saved)
        assert set(resumed.param_groups[0]) == keys
        saved = resumed.state_dict()
    resumed.add_param_group({"params": [params[2]]})
    assert set(resumed.param_groups[1]) == fresh


def test_own_checkpoint_from_an_older_version_gets_missing_settings() -> None:
    import personalized

    params = make_params()
    optimizer = personalized.FCompass(params)
    saved = optimizer.state_dict()
    del saved["param_groups"][0]["centralization"]
    restored = personalized.FCompass(params)
    restored.load_state_dict(saved)
    assert restored.param_groups[0]["centralization"] == 1.0


def test_an_unmarked_enhanced_adafactor_checkpoint_does_not_pass_for_automagics() -> None:
    """Its state keys are all Automagic's, but it lacks Automagic's lr mask: its lr=None is not taken over."""
    import personalized

    saved = trained("EnhancedAdafactor", {})
    del saved["optimizer"]
    params = make_params()
    automagic = personalized.Automagic(params)
    with pytest.warns(UserWarning, match="holds another optimizer.s state .no last_polarity, no lr_mask"):
        automagic.load_state_dict(saved)
    assert automagic.param_groups[0]["lr"] == 1e-6
    fill_grads(params, 1)
    automagic.step()
    assert all(torch.isfinite(p).all() for p in params)

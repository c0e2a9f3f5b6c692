"""The one table of what the tests know about each optimizer: :data:`RECORDS` (pytest-free).

Adding an optimizer takes, on the test side, one :class:`OptimizerRecord` in :data:`RECORDS`, in
catalogue order: every test that runs over all optimizers (conftest's ``optimizer_class`` fixture,
:data:`BATCHED`, :func:`features`, :func:`fixed_lr`) and the replay of ``tests/refdata``
(``reference.py``, also used by ``benchmarks/gpu_check.py`` without pytest) read it, and
``test_records.py`` fails until it exists and names only the optimizer's own keywords and
recordings. Recordings of its original, if any, go into ``tests/refdata`` (``refdata/README.md``);
the shared tests then replay them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import personalized


@dataclass(frozen=True)
class OptimizerRecord:
    """What the tests need to know about one optimizer that its class does not say (the role of
    torch's ``OptimizerInfo``). Facts the class declares (``item_batched``, ``per_parameter_update``,
    ``group_step``...) are read from the class, not repeated here."""

    #: The canonical name (``personalized.available()``).
    name: str
    #: Settings that switch on every optional branch of the update (weight decay, centralisation,
    #: clipping, cautious masks, resets...): the all-features run of every shared test.
    features: Mapping[str, Any]
    #: What it needs besides ``lr`` to step with a fixed learning rate given by the caller.
    fixed_lr: Mapping[str, Any] = field(default_factory=dict)
    #: Why its step reads tensor values on the host, where it does by design (None: it must not).
    host_sync: str | None = None
    #: Whether every param group must use the same lr (a global step size).
    one_lr: bool = False
    #: Whether its state stays finite under gradients of 1e20 (whose squares overflow float32);
    #: its weights must stay finite either way.
    finite_state_at_overflow: bool = True
    #: The constructor defaults of the original it reproduces (its keywords and values), where known.
    original_defaults: Mapping[str, Any] | None = None
    #: Whether ``test_reference.py`` and ``test_bf16_state.py`` replay its ``tests/refdata`` recordings
    #: with its default behaviour (False: it has none, or its own test file replays them).
    replayed: bool = True
    #: Keywords with which it reproduces all of its original's recordings (a defect fixed for every case).
    original_settings: Mapping[str, Any] = field(default_factory=dict)
    #: Recordings of a defect we fixed, each with the keywords that reproduce it with our code
    #: (None: no keywords do); they are left out of the default-behaviour replays.
    fixed_cases: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    #: Recorded bf16 cases that are not bit-exact, with the largest error allowed in bf16 ulps.
    bf16_ulps: Mapping[str, int] = field(default_factory=dict)


#: Every optimizer's record, by name.
RECORDS: dict[str, OptimizerRecord] = {
    record.name: record
    for record in (
        OptimizerRecord(
            "FCompass",
            features=dict(weight_decay=0.1, centralization=1.0, clip=1.0),
            finite_state_at_overflow=False,  # its Fisher EMA holds inf (README, NaN section)
            original_defaults=dict(
                lr=1e-3, betas=(0.99, 0.999), amp_fac=2, eps=1e-8, weight_decay=0.1, clip=1.0, centralization=1.0
            ),
        ),
        OptimizerRecord(
            "FishMonger",
            features=dict(weight_decay=0.1, diff_amp=1.0, centralization=1.0),
            original_defaults=dict(
                lr=1e-3,
                betas=(0.9, 0.99, 0.999),
                eps=1e-8,
                weight_decay=0.0,
                clip=1.0,
                centralization=1.0,
                diff_amp=1.0,
                diff_amp_beta=0.999,
            ),
            # The original turned clip=0 into 1.0.
            fixed_cases={"FishMonger__wd_clip0_diffamp2": dict(clip=1.0)},
        ),
        OptimizerRecord(
            "FARMSCrop",
            features=dict(weight_decay=0.1, centralization=1.0, diff_mult=1.0),
            original_defaults=dict(
                lr=1e-4,
                betas=(0.999, 0.9999),
                eps=1e-8,
                weight_decay=1e-6,
                centralization=1.0,
                diff_mult=1.0,
                momentum_beta=0.9999,
                momentum_amp=5.0,
            ),
        ),
        OptimizerRecord(
            "FARMSCropV2",
            features=dict(weight_decay=0.1, centralization=1.0, diff_mult=1.0),
            original_defaults=dict(
                lr=1e-4,
                betas=(0.999, 0.9999),
                eps=1e-6,
                weight_decay=0.0,
                centralization=0.0,
                diff_mult=1.0,
                momentum_beta=0.9999,
                momentum_lambda=0.25,
                clip=1.0,
            ),
        ),
        OptimizerRecord(
            "FMARSCrop",
            features=dict(weight_decay=0.1, centralization=1.0, diff_mult=1.0, moment_centralization=1.0),
            original_defaults=dict(
                lr=1e-4,
                betas=(0.999, 0.9999),
                eps=1e-6,
                weight_decay=0.0,
                centralization=0.0,
                moment_centralization=1.0,
                diff_mult=1.0,
                momentum_beta=0.9999,
                momentum_lambda=0.25,
                clip=1.0,
            ),
        ),
        OptimizerRecord(
            "FMARSCrop_ExMachina",
            features=dict(weight_decay=0.1, centralization=1.0, eps_floor=0.0, cautious=True),
            original_defaults=dict(
                lr=1.5e-4,
                betas=(0.999, 0.9999),
                eps=1e-6,
                eps2=1e-2,
                eps_floor=None,
                weight_decay=0.01,
                centralization=0.0,
                moment_centralization=1.0,
                diff_mult=1.0,
                momentum_beta=0.9999,
                momentum_lambda=0.25,
                gamma=5e-4,
                clip=1.0,
                cautious=True,
            ),
        ),
        OptimizerRecord(
            "EnhancedAdafactor",
            features=dict(lr=1e-3, relative_step=False, beta1=0.9, weight_decay=0.01),
            fixed_lr=dict(relative_step=False, scale_parameter=False),
        ),
        OptimizerRecord(
            "SCORN",
            features=dict(focus_ratio=0.1, weight_decay=0.01, orthograd=True, cautious_min=0.0, reset_interval=2),
        ),
        OptimizerRecord(
            "REMASTER",
            features=dict(weight_decay=0.01, cautious_min=0.0, reset_interval=2, orthograd=True),
        ),
        OptimizerRecord(
            "PersonaOptimizer",
            features=dict(focus_boost=0.05, weight_decay=0.01, reset_interval=2, orthograd=True, cautious_min=0.0),
        ),
        OptimizerRecord(
            "Automagic",
            features=dict(lr=1e-4, weight_decay=0.01),
            # Its original ran the first step with a bf16 second moment; ours is float32 from the start.
            bf16_ulps={"Automagic__bf16_wd": 2},
        ),
        OptimizerRecord(
            "AdamW8bitKahan",
            features=dict(weight_decay=0.1, stabilize=True, min_8bit_size=1),
            # Needs bitsandbytes: test_adamw8bit_kahan.py replays its recordings.
            replayed=False,
            original_settings=dict(weight_decay=0.0),  # the original's decay was a no-op
            # The original's stabilize divided by uint8 codes: its first update was 0.
            fixed_cases={"AdamW8bitKahan__state8bit_stabilize_bnbcompat": None},
        ),
        OptimizerRecord(
            "Prodigy",
            features=dict(weight_decay=0.1, use_bias_correction=True, safeguard_warmup=True),
            # Prodigy steps by about d * lr: from its default d0 = 1e-6 an lr of 1e-4 moves nothing even
            # in float32, so at a fixed lr d starts (and in the small-update test stays) at 0.1.
            fixed_lr=dict(d0=0.1),
            host_sync="prodigyopt computes its step size d on the host (documented)",
            one_lr=True,
            replayed=False,  # no recordings: test_prodigy.py compares it with prodigyopt itself
        ),
    )
}


def record(optimizer: type | str) -> OptimizerRecord:
    """The record of an optimizer class or name (a clear error where it has none)."""
    name = optimizer if isinstance(optimizer, str) else optimizer.__name__
    if name not in RECORDS:
        raise KeyError(f"{name} has no OptimizerRecord in tests/conftest.py RECORDS; add one (see OptimizerRecord)")
    return RECORDS[name]


#: The optimizers whose update runs on item batches (multi-tensor and compiled paths).
BATCHED = [cls for cls in personalized.optimizers.CATALOGUE if cls.item_batched]


def features(cls: type) -> dict[str, object]:
    """lr 1e-3 (unless the record's features set one) and every optional branch of ``cls``'s update switched on."""
    return {"lr": 1e-3, **record(cls).features}


def fixed_lr(cls: type | str, lr: float = 1e-4) -> dict[str, object]:
    """Settings to step ``cls`` at the fixed learning rate ``lr``."""
    return {"lr": lr, **record(cls).fixed_lr}

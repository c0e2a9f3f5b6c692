"""A checkpoint loads with weights_only=True and the resumed run is bit-identical."""

from __future__ import annotations

import io

import torch

from conftest import ALL_FEATURES, fill_grads, make_params


def run(cls: type, steps: int, resume_at: int | None = None) -> list[torch.Tensor]:
    params = make_params()
    optimizer = cls(params, **ALL_FEATURES[cls.__name__])
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
            params = [torch.nn.Parameter(p.clone()) for p in saved["params"]]
            optimizer = cls(params, **ALL_FEATURES[cls.__name__])
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

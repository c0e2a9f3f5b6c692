"""A stand-in for RVC's training script, copied to ``<tmp>/train/train.py`` by tests/test_rvc.py.

This is not RVC's code. It makes the calls RVC's ``train/train.py`` (older
layout: ``infer/modules/train/train.py``) makes around its optimizers, in the
same order and shape, as read in RVC-Project/Retrieval-based-Voice-Conversion-WebUI
at 4338f12 (and the older layout at 04a33b9):

* ``hps`` is read at import time from ``./logs/<-e>/config.json``, as
  ``train/utils.get_hparams()`` does, so spawned workers read it again;
* ``main()`` trains in this process (RVC: a single CUDA device) or in one
  ``torch.multiprocessing`` child of the spawn start method (RVC: CPU or
  several GPUs); here ``"standin": {"spawn": true}`` in config.json decides;
* ``run()`` builds ``torch.optim.AdamW(net.parameters(), hps.train.learning_rate,
  betas=hps.train.betas, eps=hps.train.eps)`` for G and D, resumes from the
  latest ``D_*.pth`` then ``G_*.pth`` inside a bare try/except that falls back to
  epoch 1, builds ``ExponentialLR(..., last_epoch=epoch_str - 2)``, steps D then
  G through a GradScaler, steps the schedulers once per epoch and saves
  ``{"model", "iteration", "optimizer", "learning_rate"}`` checkpoints.

What it saw goes to ``logs/<-e>/report-<process>.json`` for the test. Unlike
RVC, the main process exits with the worker's exit code.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import sys
import types
import warnings
from typing import Any

warnings.filterwarnings(
    "ignore",
    message="`torch.cuda.amp.GradScaler.*is deprecated.*",
    category=FutureWarning,
)


def get_hparams() -> Any:
    """RVC's train/utils.get_hparams, reduced to what the stand-in needs."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-e", "--experiment_dir", type=str, required=True)
    parser.add_argument("-te", "--total_epoch", type=int, required=True)
    args, _ = parser.parse_known_args()
    experiment_dir = os.path.join("./logs", args.experiment_dir)
    with open(os.path.join(experiment_dir, "config.json"), encoding="utf8") as file:
        hps = json.load(file, object_hook=lambda section: types.SimpleNamespace(**section))
    hps.model_dir = experiment_dir
    hps.total_epoch = args.total_epoch
    return hps


hps = get_hparams()

import models  # noqa: E402  (RVC also imports torch and its modules after reading hps)
import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.cuda.amp import GradScaler  # noqa: E402

#: torch's own AdamW class, whatever torch.optim.AdamW is now.
TORCH_ADAMW = importlib.import_module("torch.optim.adamw").AdamW


def main() -> None:
    if not hps.standin.spawn:
        run(0, 1, hps)
        return
    child = mp.Process(target=run, args=(0, 1, hps))
    child.start()
    child.join()
    report(
        "main",
        {
            "choice_env": os.environ.get("PERSONALIZED_RVC_CHOICE"),
            "adamw_patched": torch.optim.AdamW is not TORCH_ADAMW,
            "exitcode": child.exitcode,
        },
    )
    sys.exit(child.exitcode)


def run(rank: int, n_gpus: int, hps: Any) -> None:
    torch.manual_seed(hps.train.seed)
    net_g, net_d = models.make_nets()
    optim_g = torch.optim.AdamW(
        net_g.parameters(),
        hps.train.learning_rate,
        betas=hps.train.betas,
        eps=hps.train.eps,
    )
    optim_d = torch.optim.AdamW(
        net_d.parameters(),
        hps.train.learning_rate,
        betas=hps.train.betas,
        eps=hps.train.eps,
    )
    other = models.other_adamw(net_g.parameters(), hps.train.learning_rate, hps.train.betas, hps.train.eps)
    built = {"g": describe(optim_g), "d": describe(optim_d), "other": describe(other)}

    resume_error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _, _, _, epoch_str = load_checkpoint(latest_checkpoint_path(hps.model_dir, "D_*.pth"), net_d, optim_d)
            _, _, _, epoch_str = load_checkpoint(latest_checkpoint_path(hps.model_dir, "G_*.pth"), net_g, optim_g)
        except Exception as error:  # RVC: bare except, then the pretrained weights at epoch 1
            resume_error = repr(error)
            epoch_str = 1

    scheduler_g = torch.optim.lr_scheduler.ExponentialLR(optim_g, gamma=hps.train.lr_decay, last_epoch=epoch_str - 2)
    scheduler_d = torch.optim.lr_scheduler.ExponentialLR(optim_d, gamma=hps.train.lr_decay, last_epoch=epoch_str - 2)
    scaler = GradScaler(enabled=False)  # RVC: GradScaler(enabled=training_is_half), False on CPU

    for epoch in range(epoch_str, hps.total_epoch + 1):
        train_epoch(net_g, net_d, optim_g, optim_d, scaler)
        scheduler_g.step()
        scheduler_d.step()
        save_checkpoint(net_g, optim_g, hps.train.learning_rate, epoch, os.path.join(hps.model_dir, f"G_{epoch}.pth"))
        save_checkpoint(net_d, optim_d, hps.train.learning_rate, epoch, os.path.join(hps.model_dir, f"D_{epoch}.pth"))

    report(
        "spawned" if hps.standin.spawn else "main",
        {
            "choice_env": os.environ.get("PERSONALIZED_RVC_CHOICE"),
            "built": built,
            "resume_error": resume_error,
            "epoch_str": epoch_str,
            "warnings": [str(warning.message) for warning in caught],
            "trained": {"g": describe(optim_g), "d": describe(optim_d)},
        },
    )


def train_epoch(net_g: Any, net_d: Any, optim_g: Any, optim_d: Any, scaler: Any) -> None:
    """Two steps of RVC's loop: the discriminator, then the generator, through the scaler."""
    for _ in range(2):
        x = torch.randn(4, 8)
        y_hat = net_g(x)
        loss_disc = (net_d(x) - 1).square().mean() + net_d(y_hat.detach()).square().mean()
        optim_d.zero_grad()
        scaler.scale(loss_disc).backward()
        scaler.unscale_(optim_d)
        scaler.step(optim_d)

        loss_gen_all = (net_d(y_hat) - 1).square().mean() + (y_hat - x).abs().mean()
        optim_g.zero_grad()
        scaler.scale(loss_gen_all).backward()
        scaler.unscale_(optim_g)
        scaler.step(optim_g)
        scaler.update()


def latest_checkpoint_path(dir_path: str, regex: str) -> str:
    """RVC's utils.latest_checkpoint_path: the highest number (IndexError when there is none)."""
    paths = glob.glob(os.path.join(dir_path, regex))
    paths.sort(key=lambda path: int("".join(filter(str.isdigit, os.path.basename(path)))))
    return paths[-1]


def load_checkpoint(checkpoint_path: str, model: Any, optimizer: Any) -> tuple[Any, Any, float, int]:
    """RVC's utils.load_checkpoint: weights, then ``optimizer.load_state_dict`` (nothing caught here)."""
    assert os.path.isfile(checkpoint_path)
    checkpoint_dict = torch.load(checkpoint_path, map_location="cpu")
    model.load_state_dict(checkpoint_dict["model"], strict=False)
    iteration = checkpoint_dict["iteration"]
    learning_rate = checkpoint_dict["learning_rate"]
    optimizer.load_state_dict(checkpoint_dict["optimizer"])
    return model, optimizer, learning_rate, iteration


def save_checkpoint(model: Any, optimizer: Any, learning_rate: float, iteration: int, checkpoint_path: str) -> None:
    """RVC's utils.save_checkpoint."""
    torch.save(
        {
            "model": model.state_dict(),
            "iteration": iteration,
            "optimizer": optimizer.state_dict(),
            "learning_rate": learning_rate,
        },
        checkpoint_path,
    )


def describe(optimizer: Any) -> dict[str, Any]:
    groups = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    states = list(optimizer.state.values())
    return {
        "class": type(optimizer).__name__,
        "torch_adamw": isinstance(optimizer, TORCH_ADAMW),
        "group": groups[0],
        "state_keys": sorted({key for state in states for key in state}),
        "steps": sorted({int(state["step"]) for state in states if "step" in state}),
    }


def report(process: str, data: dict[str, Any]) -> None:
    with open(os.path.join(hps.model_dir, f"report-{process}.json"), "w", encoding="utf8") as file:
        json.dump(data, file, default=repr)


if __name__ == "__main__":
    torch.multiprocessing.set_start_method("spawn")
    main()

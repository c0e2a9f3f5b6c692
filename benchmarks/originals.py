"""CPU side by side: the Clybius originals' step structure against this package, and pytorch_optimizer's
nearest relatives beside them.

Run from the repository root (the project installed, ``pytorch-optimizer`` from the ``bench`` extra
for the relatives; they are skipped with a note without it)::

    python benchmarks/originals.py                      # LoRA set, about 3 minutes on 2 CPUs
    python benchmarks/originals.py --quick --json side_by_side.json

The originals are not part of the project. The classes below reproduce their *step structure* from
their specification (``upstream-specs.md``, written from the originals' behaviour): one tensor at a
time, in their order of passes, with their Python ``max()`` on tensors (a host read each) and their
in-place writes to ``p.grad``. They follow the recorded float32 trajectories
(``tests/test_gpu_check.py`` replays them), so they compute what the originals compute, the way the
originals compute it. Only float32 parameters (the originals' bf16 paths are not timed).

Each figure is a ratio of medians over interleaved rounds (:func:`speed.interleaved_rounds`) of two
optimizers on the same parameter shapes and gradients, measured in the same run: ``original / ours``
above 1 means ours is faster. Quote the ratios, never the milliseconds; on a shared machine the
ratios move by some tenths between runs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.append(str(Path(__file__).resolve().parent))

import speed

import personalized

# -- the originals' building blocks (upstream-specs.md, section 0) ------------------------------


def soft(beta: float, step: int) -> float:
    return (beta**step - beta) / (beta**step - 1)


def rms(x: Tensor) -> Tensor:
    return x.pow(2).mean().sqrt()


def clip_scaled(x: Tensor, clip: float, eps: float) -> Tensor:
    """C1: ``x * clip / max(1, rms(x) + eps)``, with Python's ``max`` (a host read)."""
    return x.mul(clip).div_(max(1, rms(x) + eps))


def clip_relative(x: Tensor, clip: float) -> Tensor:
    """C2: ``x / (max(clip, rms(x)) / clip)``, with Python's ``max``."""
    return x.div(max(clip, rms(x)) / clip)


def clip_unit(x: Tensor) -> Tensor:
    """C3: ``x / max(1, rms(x))``, with Python's ``max``."""
    return x.div(max(1, rms(x)))


def centralized(x: Tensor, strength: float) -> Tensor:
    return x.sub(x.mean(dim=tuple(range(1, x.dim())), keepdim=True).mul_(strength))


class Original(torch.optim.Optimizer):
    """One parameter tensor at a time, on ``.data``, as the originals step."""

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    state["step"] = state.get("step", 0) + 1
                    self.update(p.data, p.grad.data, state, group, state["step"])
        return loss

    def update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any], t: int) -> None:
        raise NotImplementedError


class OriginalFCompass(Original):
    def __init__(self, params, lr=1e-3, betas=(0.99, 0.999), amp_fac=2, eps=1e-8, weight_decay=0.1, clip=1.0,
                 centralization=1.0):  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, amp_fac=amp_fac, eps=eps, weight_decay=weight_decay,
                                      clip=clip, centralization=centralization))  # fmt: skip

    def update(self, p, g, state, group, t):
        if "fim" not in state:
            state.update(momentum=torch.zeros_like(p), max_ema_squared=torch.zeros_like(p), fim=torch.ones_like(p))
        beta1, beta2 = group["betas"]
        eps, clip = group["eps"], group["clip"]
        if group["centralization"] != 0 and g.dim() > 1:
            g.sub_(g.mean(dim=tuple(range(1, g.dim())), keepdim=True).mul_(group["centralization"]))
        s = soft(beta2, t)
        bias_correction = math.sqrt(1 - s**t)
        fim, momentum, v = state["fim"], state["momentum"], state["max_ema_squared"]
        fim.mul_(s).addcmul_(g, g, value=1 - s)
        base = fim.sqrt().add_(eps)
        natural = g / base
        if clip != 0:
            natural = clip_scaled(natural, clip, eps)
        momentum.mul_(beta1).add_(natural, alpha=1 - beta1)
        natural.add_(momentum, alpha=group["amp_fac"])
        weights = p / base
        if clip != 0:
            weights = clip_scaled(weights, clip, eps)
        full = natural.add_(weights, alpha=group["weight_decay"])
        torch.max(v, v.mul(beta2).addcmul_(full, full, value=1 - beta2), out=v)
        p.addcdiv_(full, v.sqrt().div_(bias_correction).add_(eps), value=-group["lr"])


class OriginalFishMonger(Original):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.99, 0.999), eps=1e-8, weight_decay=0.0, clip=1.0,
                 centralization=1.0, diff_amp=1.0, diff_amp_beta=0.999):  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      clip=clip if clip > 0 else 1.0, centralization=centralization,
                                      diff_amp=diff_amp, diff_amp_beta=diff_amp_beta))  # fmt: skip

    def update(self, p, g, state, group, t):
        beta1, beta2, beta3 = group["betas"]
        eps, clip, diff_amp = group["eps"], group["clip"], group["diff_amp"]
        if "fim" not in state:
            zeros = ("momentum", "momentum_slow", "momentum_slow_squared")
            state.update({name: torch.zeros_like(p) for name in zeros}, fim=torch.ones_like(p))
            if diff_amp:
                state.update(ema_diff=torch.zeros_like(p), previous_grad=-g)
        if diff_amp:
            difference = g + state["previous_grad"]
            state["ema_diff"].mul_(group["diff_amp_beta"]).add_(difference, alpha=1 - group["diff_amp_beta"])
            state["previous_grad"] = -g
        momentum, fim = state["momentum"], state["fim"]
        slow, slow_squared = state["momentum_slow"], state["momentum_slow_squared"]
        momentum.mul_(beta1).add_(g, alpha=1 - beta1)
        s2, s3 = soft(beta2, t), soft(beta3, t)
        fim.mul_(s2).addcmul_(momentum, momentum, value=1 - s2)
        base = fim.sqrt().add_(eps)
        natural = clip_scaled(momentum / base, clip, eps)
        slow.mul_(beta1).add_(natural, alpha=1 - beta1)
        slow_squared.mul_(s3).addcmul_(slow, slow, value=1 - s3)
        slow_base = slow_squared.sqrt().add_(eps)
        full = clip_scaled(g / base / slow_base, clip, eps)
        full.add_(clip_scaled(p / base / slow_base, clip, eps), alpha=group["weight_decay"])
        if diff_amp:
            full.sub_(clip_scaled(state["ema_diff"] / base / slow_base, clip, eps), alpha=diff_amp)
        if group["centralization"] != 0 and full.dim() > 1:
            full = centralized(full, group["centralization"])
        p.add_(full, alpha=-group["lr"] / (1 - beta1**t))


class OriginalFARMSCrop(Original):
    def __init__(self, params, lr=1e-4, betas=(0.999, 0.9999), eps=1e-8, weight_decay=1e-6, centralization=1.0,
                 diff_mult=1.0, momentum_beta=0.9999, momentum_amp=5.0):  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      centralization=centralization, diff_mult=diff_mult,
                                      momentum_beta=momentum_beta, momentum_amp=momentum_amp))  # fmt: skip

    def update(self, p, g, state, group, t):
        if "fim" not in state:
            state.update(fim=torch.ones_like(p), momentum=torch.zeros_like(p))
            state.update(previous_grad=torch.zeros_like(p), grad_diff_fim=torch.ones_like(p))
        beta1, beta2 = group["betas"]
        eps, mb = group["eps"], group["momentum_beta"]
        fim_beta = math.sqrt(soft(beta2, t))
        difference = (g + state["previous_grad"]).mul_(group["diff_mult"])
        diff_fim, fim, momentum = state["grad_diff_fim"], state["fim"], state["momentum"]
        diff_fim.mul_(beta1).addcmul_(difference, difference, value=1 - beta1)
        diff_base = diff_fim.sqrt().add_(eps)
        approx = clip_unit(g / diff_base)
        fim.mul_(fim_beta).addcmul_(approx, approx, value=1 - fim_beta)
        base = fim.sqrt().add_(eps)
        natural = clip_unit(g / base * diff_base)
        if group["centralization"] != 0 and natural.dim() > 1:
            natural = centralized(natural, group["centralization"])
        momentum.mul_(mb).add_(natural, alpha=1 - mb)
        full = natural + group["momentum_amp"] * momentum
        if group["weight_decay"] != 0:
            full.add_(clip_unit(p / base * diff_base), alpha=group["weight_decay"])
        p.add_(full, alpha=-group["lr"])
        state["previous_grad"].copy_(-g)


class OriginalFARMSCropV2(Original):
    def __init__(self, params, lr=1e-4, betas=(0.999, 0.9999), eps=1e-6, weight_decay=0.0, centralization=0.0,
                 diff_mult=1.0, momentum_beta=0.9999, momentum_lambda=0.25, clip=1.0):  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      centralization=centralization, diff_mult=diff_mult, momentum_beta=momentum_beta,
                                      momentum_lambda=momentum_lambda, clip=clip))  # fmt: skip

    def update(self, p, g, state, group, t):
        beta1, beta2 = group["betas"]
        eps, clip, diff_mult, lr = group["eps"], group["clip"], group["diff_mult"], group["lr"]
        if "fim" not in state:
            state.update(fim=torch.ones_like(p), momentum=torch.zeros_like(p))
            if diff_mult > 0:
                state.update(previous_grad=-g, grad_diff_fim=torch.ones_like(p))
        bound, fim_beta = t**0.25, math.sqrt(soft(beta2, t))
        diff_base: Tensor | float = 1.0
        if diff_mult > 0:
            difference = clip_relative((g + state["previous_grad"]).mul_(diff_mult), clip)
            diff_fim = state["grad_diff_fim"]
            diff_base = diff_fim.sqrt().clamp_(min=eps)
            diff_fim.mul_(beta1).addcmul_(difference, difference, value=1 - beta1).clamp_(-bound, bound)
        g.div_(diff_base)  # the original writes into p.grad and keeps using it (its aliasing)
        g.div_(max(clip, rms(g)) / clip)
        fim, momentum = state["fim"], state["momentum"]
        base = fim.sqrt().clamp_(min=eps)
        natural = clip_relative(g / base / diff_base, clip)
        full = natural + t ** group["momentum_lambda"] * momentum
        if group["centralization"] != 0 and full.dim() > 1:
            full = centralized(full, group["centralization"])
        if group["weight_decay"] != 0:
            p.add_(clip_relative(p / base / diff_base, clip), alpha=-lr * group["weight_decay"])
        p.add_(full, alpha=-lr)
        fim.mul_(fim_beta).addcmul_(g, g, value=1 - fim_beta).clamp_(-bound, bound)
        momentum.mul_(group["momentum_beta"]).add_(natural, alpha=1 - group["momentum_beta"])
        if diff_mult > 0:
            state["previous_grad"].copy_(-g)


class OriginalFMARSCrop(Original):
    def __init__(self, params, lr=1e-4, betas=(0.999, 0.9999), eps=1e-6, weight_decay=0.0, centralization=0.0,
                 moment_centralization=1.0, diff_mult=1.0, momentum_beta=0.9999, momentum_lambda=0.25,
                 clip=1.0):  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      centralization=centralization, moment_centralization=moment_centralization,
                                      diff_mult=diff_mult, momentum_beta=momentum_beta,
                                      momentum_lambda=momentum_lambda, clip=clip))  # fmt: skip

    def update(self, p, g, state, group, t):
        beta1, beta2 = group["betas"]
        eps, clip, diff_mult, lr = group["eps"], group["clip"], group["diff_mult"], group["lr"]
        if "fim" not in state:
            state.update(momentum=torch.zeros_like(p), fim=torch.ones_like(p), prev_grad=-g)
            if diff_mult > 0:
                state["grad_diff_fim"] = torch.ones_like(p)
        change = g + state["prev_grad"]
        corrected = g + ((1 - beta1) / 2) * beta1 / (1 - beta1) * change
        norm = corrected.norm()
        if norm > clip:
            corrected = corrected * clip / norm
        fim, momentum = state["fim"], state["momentum"]
        centred = momentum - momentum.mean() if group["moment_centralization"] != 0 else momentum
        bound, fim_beta = t**0.25, math.sqrt(soft(beta2, t))
        diff_base: Tensor | float = 1.0
        if diff_mult > 0:
            difference = clip_relative(change * diff_mult, clip)
            diff_fim = state["grad_diff_fim"]
            diff_base = diff_fim.sqrt().clamp_(min=eps)
            diff_fim.mul_(beta1).addcmul_(difference, difference, value=1 - beta1).clamp_(-bound, bound)
        corrected.div_(diff_base)
        corrected.div_(max(clip, rms(corrected)) / clip)
        base = fim.sqrt().clamp_(min=eps)
        natural = clip_relative(corrected / base / diff_base, clip)
        full = natural + t ** group["momentum_lambda"] * centred
        if group["centralization"] != 0 and full.dim() > 1:
            full = centralized(full, group["centralization"])
        if group["weight_decay"] != 0:
            p.add_(clip_relative(p / base / diff_base, clip), alpha=-lr * group["weight_decay"])
        p.add_(full, alpha=-lr)
        fim.mul_(fim_beta).addcmul_(corrected, corrected, value=1 - fim_beta).clamp_(-bound, bound)
        momentum.mul_(group["momentum_beta"]).add_(natural, alpha=1 - group["momentum_beta"])
        state["prev_grad"].copy_(-g)


class OriginalFMARSCrop_ExMachina(Original):
    def __init__(self, params, lr=1.5e-4, betas=(0.999, 0.9999), eps=1e-6, eps2=1e-2, eps_floor=None,
                 weight_decay=0.01, centralization=0.0, moment_centralization=1.0, diff_mult=1.0,
                 momentum_beta=0.9999, momentum_lambda=0.25, gamma=5e-4, clip=1.0, cautious=True):  # fmt: skip
        if eps_floor is not None and eps_floor < eps and eps_floor <= 0:
            eps_floor = 1e-38
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, eps2=eps2, eps_floor=eps_floor,
                                      weight_decay=weight_decay, centralization=centralization,
                                      moment_centralization=moment_centralization, diff_mult=diff_mult,
                                      momentum_beta=momentum_beta, momentum_lambda=momentum_lambda, gamma=gamma,
                                      clip=clip, cautious=cautious))  # fmt: skip

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """A step counter per group, advanced once per call."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad, self.state[p], group, group["step"])
        return loss

    def update(self, p, g, state, group, t):
        beta1, beta2 = group["betas"]
        eps, clip, diff_mult, lr = group["eps"], group["clip"], group["diff_mult"], group["lr"]
        if "fim" not in state:
            state.update(momentum=torch.zeros_like(p), fim=torch.ones_like(p), prev_grad=-g)
            if diff_mult > 0:
                state["grad_diff_fim"] = torch.ones_like(p)
        change = g + state["prev_grad"]
        corrected = g + group["gamma"] * beta1 / (1 - beta1) * change
        norm = corrected.norm()
        if norm > clip:
            corrected = corrected * clip / norm
        bound, fim_beta = t**0.25, math.sqrt(soft(beta2, t))
        floor = group["eps_floor"]
        if floor is not None and floor < eps:
            eps = max(min(eps, group["eps2"] * rms(g).item()), floor)
        diff_base: Tensor | float = 1.0
        if diff_mult > 0:
            difference = clip_relative(change * diff_mult, clip)
            diff_fim = state["grad_diff_fim"]
            diff_base = diff_fim.sqrt().clamp_(min=eps)
            diff_fim.mul_(beta1).addcmul_(difference, difference, value=1 - beta1).clamp_(-bound, bound)
        approx = clip_relative(corrected / diff_base, clip)
        fim, momentum = state["fim"], state["momentum"]
        base = fim.sqrt().clamp_(min=eps)
        natural = clip_relative(corrected / base / diff_base, clip)
        centred = momentum - momentum.mean() if group["moment_centralization"] != 0 else momentum
        full = natural + t ** group["momentum_lambda"] * centred
        if group["centralization"] != 0 and full.dim() > 1:
            full = centralized(full, group["centralization"])
        if group["weight_decay"] != 0:
            p.add_(clip_relative(p / base / diff_base, clip), alpha=-lr * group["weight_decay"])
        if group["cautious"]:
            keep = (full * corrected > 0).to(full.dtype)
            full.mul_(keep.mul_(keep.numel() / (keep.sum() + 1)))
        p.add_(full, alpha=-lr)
        fim.mul_(fim_beta).addcmul_(approx, approx, value=1 - fim_beta).clamp_(-bound, bound)
        momentum.mul_(group["momentum_beta"]).add_(natural, alpha=1 - group["momentum_beta"])
        state["prev_grad"].copy_(-g)


#: The six Clybius optimizers and their originals' step structure.
ORIGINALS: dict[str, type] = {
    "FCompass": OriginalFCompass,
    "FishMonger": OriginalFishMonger,
    "FARMSCrop": OriginalFARMSCrop,
    "FARMSCropV2": OriginalFARMSCropV2,
    "FMARSCrop": OriginalFMARSCrop,
    "FMARSCrop_ExMachina": OriginalFMARSCrop_ExMachina,
}

#: pytorch_optimizer's nearest relatives: (their class, our optimizer, how their math compares).
RELATIVES: dict[str, tuple[str, str]] = {
    "FAdam": ("FCompass", "simpler: Fisher Adam without the Compass amplification, AMSGrad and centralisation"),
    "MARS": ("FMARSCrop", "simpler: MARS-AdamW, no gradient-difference Fisher, RMS clips or t^0.25 amplification"),
    "ADOPT": ("FARMSCropV2", "simpler: ADOPT alone, no gradient-difference Fisher, clips or amplification"),
    "SCION": ("SCORN", "simpler: momentum and the Scion LMO, without SCORN's atan2-ADOPT, OrthoGrad and resets"),
    "AdaFactor": ("EnhancedAdafactor", "about the same: factored Adafactor; EnhancedAdafactor is HF's"),
}


# -- measuring side by side --------------------------------------------------------------------


def side_by_side(
    baseline: speed.OptimizerFactory,
    candidate: speed.OptimizerFactory,
    shapes: Sequence[tuple[int, ...]],
    steps: int,
    rounds: int,
) -> dict[str, float]:
    """``candidate``'s ms/step over ``baseline``'s, interleaved; each steps its own copy of the
    same parameters and gradients (the originals write into ``p.grad``)."""
    base, cand = baseline(speed.make_parameters(shapes)), candidate(speed.make_parameters(shapes))
    for optimizer in (base, cand):
        speed.time_steps(optimizer, 2)  # creates the state, then one warm step
    base_ms, cand_ms = speed.interleaved_rounds(base, cand, steps, rounds, steps)
    per_round = [c / b for c, b in zip(cand_ms, base_ms)]
    return {
        "ratio": statistics.median(cand_ms) / statistics.median(base_ms),
        "low": min(per_round),
        "high": max(per_round),
    }


def ours(name: str, **options: Any) -> speed.OptimizerFactory:
    """Our ``name`` with its constructor defaults (the originals'), and ``options``."""
    cls = personalized.get_optimizer(name)
    return lambda params: cls(params, **options)


def compare_originals(names: Sequence[str], shapes, steps: int, rounds: int, out: Any) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        original = ORIGINALS[name]
        row = {"optimizer": name}
        row["original/ours"] = side_by_side(ours(name), original, shapes, steps, rounds)
        row["original/ours foreach=False"] = side_by_side(ours(name, foreach=False), original, shapes, steps, rounds)
        row["ours/fused AdamW"] = side_by_side(speed.fused_adamw, ours(name), shapes, steps, rounds)
        rows.append(row)
        print(f"  {name}: original / ours {row['original/ours']['ratio']:.2f}", file=out, flush=True)
    return rows


def compare_relatives(names: Sequence[str], shapes, steps: int, rounds: int, out: Any) -> list[dict[str, Any]]:
    import pytorch_optimizer

    rows = []
    for name in names:
        mine, note = RELATIVES[name]
        cls = getattr(pytorch_optimizer, name)
        row = {"optimizer": f"pytorch_optimizer.{name}", "nearest": mine, "math": note}
        row["theirs/ours"] = side_by_side(ours(mine), cls, shapes, steps, rounds)
        row["theirs/fused AdamW"] = side_by_side(speed.fused_adamw, cls, shapes, steps, rounds)
        rows.append(row)
        print(f"  {name}: theirs / {mine} {row['theirs/ours']['ratio']:.2f}", file=out, flush=True)
    return rows


def ratio_cell(figure: dict[str, float]) -> str:
    return f"{figure['ratio']:.2f} ({figure['low']:.2f}-{figure['high']:.2f})"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="CPU side by side: the originals, this package, pytorch_optimizer.")
    parser.add_argument("--optimizers", default=",".join(ORIGINALS), help="comma-separated Clybius optimizers")
    parser.add_argument("--relatives", default=",".join(RELATIVES), help="pytorch_optimizer classes ('' for none)")
    parser.add_argument("--steps", type=int, default=2, help="steps per timing round (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: see README)")
    parser.add_argument("--quick", action="store_true", help="8 LoRA tensors instead of 800, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    args.optimizers = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    args.relatives = [n.strip() for n in args.relatives.split(",") if n.strip()]
    for option, known in (("optimizers", ORIGINALS), ("relatives", RELATIVES)):
        unknown = [name for name in getattr(args, option) if name not in known]
        if unknown:
            parser.error(f"--{option}: unknown {', '.join(unknown)}; expected some of {', '.join(known)}")
    for option in ("steps", "rounds", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    return args


def run(args: argparse.Namespace, out: Any = sys.stdout) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    machine = speed.describe_machine(args.threads)
    print(speed.machine_line(machine), file=out)
    shapes = speed.lora_shapes(args.quick)
    print(f"LoRA set: {len(shapes)} tensors, {speed.shape_elements(shapes):,} float32 elements", file=out)
    originals = compare_originals(args.optimizers, shapes, args.steps, args.rounds, out)
    notes, relatives = [], []
    if args.relatives:
        try:
            relatives = compare_relatives(args.relatives, shapes, args.steps, args.rounds, out)
        except ImportError as error:
            notes.append(f"pytorch_optimizer relatives skipped: {error} (pip install pytorch-optimizer)")
    header = ["optimizer", "original / ours", "original / ours, foreach=False", "ours / fused AdamW"]
    rows = [[r["optimizer"], *(ratio_cell(r[k]) for k in list(r)[1:])] for r in originals]
    print("\n" + speed.format_table(header, rows), file=out)
    if relatives:
        header = ["optimizer", "nearest of ours", "theirs / ours", "theirs / fused AdamW", "their math"]
        rows = [
            [r["optimizer"], r["nearest"], ratio_cell(r["theirs/ours"]), ratio_cell(r["theirs/fused AdamW"]), r["math"]]
            for r in relatives
        ]
        print("\n" + speed.format_table(header, rows), file=out)
    for note in notes:
        print(note, file=out)
    figures = {"machine": machine, "originals": originals, "relatives": relatives, "notes": notes}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())

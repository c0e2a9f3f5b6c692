"""``personalized bench``: the suite of training tasks, from the command line.

``personalized bench [suite] [--task T,...] [--optimizers A,B] [--presets P,...]
[--peers] [--full | --lr LR[,LR...]] [--set KEY=VALUE] [--seeds N] [--steps K]
[--workers W] [--out DIR]``. The first positional names the mode; ``suite``
(the default) is the only one so far.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .contenders import Contender, Skipped, select, with_overrides
from .deps import MissingDependency, require
from .options import add_set_option, learning_rates
from .plots import write_plots
from .progress import ProgressBar
from .report import overall_table, text_table, write_json, write_markdown
from .runner import SuiteResult, most_work, run_suite
from .sweep import COARSE_GRID, FULL_GRID, Protocol
from .tasks import QUICK, TASKS, Task, get_task

#: The modes of ``personalized bench``.
MODES = ("suite",)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def default_workers() -> int:
    """One worker process per CPU this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def register(commands: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` command to the CLI's subparsers (``commands`` from ``add_subparsers``)."""
    coarse = ", ".join(f"{lr:g}" for lr in COARSE_GRID)
    bench = commands.add_parser(
        "bench",
        help="compare optimizers on small real training tasks, each at its best lr (CPU, minutes)",
        description="Train small seeded models (noisy landscapes, a digits classifier, a flow-matching model, "
        "LoRAs of a classifier and of a pretrained denoiser) on the CPU. Every optimizer, torch.optim.AdamW "
        "included, is swept over the same learning-rate grid with the same seeds and steps, and judged at its "
        f"best lr. The default quick sweep tries lr {coarse}, then the half-decade neighbours of the best, then "
        "every seed at the best (about three minutes on two idle cores); --full tries every lr of the grid with "
        "every seed. Prints a table per task and writes results.json, results.md and plots into --out.",
    )
    bench.add_argument("mode", nargs="?", default="suite", choices=MODES, help="what to run (default: suite)")
    bench.add_argument(
        "--task", type=_names, metavar="T[,T...]", help=f"tasks: {', '.join(TASKS)}, or all (default: all)"
    )
    bench.add_argument(
        "--optimizers",
        type=_names,
        metavar="A[,B...]",
        help="optimizers to run, each with its default/<Name> preset (default: all of them, unless --presets)",
    )
    bench.add_argument("--presets", type=_names, metavar="P[,Q...]", help="presets to run too, e.g. rvc/FCompass")
    bench.add_argument(
        "--peers",
        action="store_true",
        help="also run pytorch_optimizer's nearest relatives (FAdam, MARS, ADOPT, SCION), tuned the same way",
    )
    sweep = bench.add_mutually_exclusive_group()
    sweep.add_argument(
        "--full",
        action="store_true",
        help=f"every lr of the grid ({', '.join(f'{lr:g}' for lr in FULL_GRID)}) with every seed",
    )
    sweep.add_argument(
        "--lr",
        type=learning_rates,
        metavar="LR[,LR...]",
        help="run every optimizer at these lrs only (one value or a list), every seed",
    )
    add_set_option(
        bench,
        help="replace a preset's value for every optimizer that takes the keyword, e.g. betas=(0.9,0.99) "
        "(repeatable; the AdamW baseline keeps its defaults)",
    )
    bench.add_argument("--seeds", type=_positive, default=3, metavar="N", help="seeds 0..N-1 (default: 3)")
    bench.add_argument(
        "--steps",
        type=_positive,
        metavar="K",
        help="steps per run (default: each task's own; 3/4 of it in the quick sweep)",
    )
    bench.add_argument(
        "--workers",
        type=_positive,
        metavar="W",
        help=f"worker processes (default: one per CPU, here {default_workers()})",
    )
    bench.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: ./bench-<date>-<time>)")
    bench.set_defaults(run=run)
    return bench


def _tasks(names: Sequence[str] | None) -> list[Task]:
    if not names or [name.lower() for name in names] == ["all"]:
        return [TASKS[name] for name in QUICK]
    return list({task.name: task for task in map(get_task, names)}.values())


def check_out(out: Path) -> None:
    """Create ``out`` and check that files can be written there; ValueError in one line otherwise."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise ValueError(f"--out {out}: cannot write there ({error.strerror or error})") from None


def _prepare(args: argparse.Namespace) -> tuple[list[Task], list[Contender], list[Skipped], dict[str, list[str]]]:
    """Check everything that can be wrong before minutes of training."""
    tasks = _tasks(args.task)
    contenders, skipped = select(args.optimizers, args.presets, with_peers=args.peers)
    contenders, taken = with_overrides(contenders, dict(args.options))
    for task in tasks:
        for module, package in task.needs:
            require(module, package)
    require("matplotlib", "matplotlib")
    return tasks, contenders, skipped, taken


def _protocol(args: argparse.Namespace) -> Protocol:
    seeds = list(range(args.seeds))
    if args.lr:
        return Protocol.fixed(args.lr, seeds)
    return Protocol.full(seeds) if args.full else Protocol.quick(seeds)


def write_all(suite: SuiteResult, out: Path) -> list[Path]:
    """results.json, results.md and every plot of ``suite`` into ``out``."""
    written = [out / "results.json", out / "results.md"]
    write_json(suite, written[0])
    write_markdown(suite, written[1])
    return written + write_plots(suite, out)


def run(args: argparse.Namespace) -> int:
    """Run the suite; bad input raises personalized.cli.UsageError (exit 2, one line)."""
    from ..cli import UsageError

    out = args.out or Path(f"bench-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    try:
        tasks, contenders, skipped, taken = _prepare(args)
        check_out(out)
    except (ValueError, TypeError, MissingDependency) as error:
        raise UsageError(str(error)) from None
    for skip in skipped:
        print(f"note: skipping {skip.name}: {skip.reason}", file=sys.stderr)
    for key, labels in taken.items():
        print(f"note: --set {key} applies to {', '.join(labels)}", file=sys.stderr)
    protocol = _protocol(args)
    workers = args.workers or default_workers()
    print(f"{len(contenders)} optimizers x {len(tasks)} tasks, {protocol.describe()}", file=sys.stderr)
    bar = ProgressBar(most_work(tasks, contenders, protocol, args.steps))
    suite = run_suite(tasks, contenders, protocol, args.steps, skipped, workers=workers, progress=bar)
    bar.close()
    for task_result in suite.tasks:
        print(text_table(task_result, protocol))
        print()
    if suite.tasks:
        print(overall_table(suite))
        print()
    written = write_all(suite, out)
    minutes, seconds = divmod(round(suite.wall_time_s), 60)
    print(f"{len(contenders)} optimizers x {len(tasks)} tasks in {minutes}m{seconds:02d}s ({workers} worker(s))")
    print(f"wrote {out}/: " + ", ".join(path.name for path in written))
    if suite.partial:
        print(f"partial results ({suite.stopped}): only the runs that finished are in {out}/", file=sys.stderr)
        return 130 if suite.stopped == "interrupted" else 1
    return 0

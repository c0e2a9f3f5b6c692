"""``personalized bench``: the suite of training tasks, from the command line.

``personalized bench [suite] [--task T,...] [--optimizers A,B] [--presets P,...]
[--seeds N] [--steps K] [--out DIR]``. The first positional names the mode;
``suite`` (the default) is the only one so far.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .contenders import Contender, Skipped, select
from .deps import MissingDependency, require
from .plots import plot_task
from .progress import ProgressBar
from .report import text_table, write_json, write_markdown
from .runner import SuiteResult, run_suite, total_work
from .tasks import QUICK, TASKS, Task, get_task

#: The modes of ``personalized bench``; ``speed`` is planned.
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


def register(commands: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` command to the CLI's subparsers (``commands`` from ``add_subparsers``)."""
    bench = commands.add_parser(
        "bench",
        help="compare optimizers on small real training tasks (CPU, minutes)",
        description="Train small seeded models (noisy landscapes, a digits classifier, a flow-matching "
        "model, a LoRA) on the CPU with each optimizer's default preset; the baselines torch.optim.AdamW "
        "and default/Prodigy always run. Prints a table per task and writes results.json, results.md and "
        "one PNG of loss curves per task. The default suite takes about two minutes on two idle cores.",
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
    bench.add_argument("--seeds", type=_positive, default=3, metavar="N", help="seeds 0..N-1 (default: 3)")
    bench.add_argument("--steps", type=_positive, metavar="K", help="steps per run (default: each task's own)")
    bench.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: ./bench-<date>-<time>)")
    bench.set_defaults(run=run)
    return bench


def _tasks(names: Sequence[str] | None) -> list[Task]:
    if not names or [name.lower() for name in names] == ["all"]:
        return [TASKS[name] for name in QUICK]
    return list({task.name: task for task in map(get_task, names)}.values())


def _prepare(args: argparse.Namespace) -> tuple[list[Task], list[Contender], list[Skipped]]:
    """Check everything that can be wrong before minutes of training."""
    tasks = _tasks(args.task)
    contenders, skipped = select(args.optimizers, args.presets)
    for task in tasks:
        for module, package in task.needs:
            require(module, package)
    require("matplotlib", "matplotlib")
    return tasks, contenders, skipped


def _write(suite: SuiteResult, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json", out / "results.md"]
    write_json(suite, written[0])
    write_markdown(suite, written[1])
    for task_result in suite.tasks:
        path = out / f"{task_result.task.name}.png"
        plot_task(task_result, path)
        written.append(path)
    return written


def run(args: argparse.Namespace) -> int:
    """Run the suite; bad input raises personalized.cli.UsageError (exit 2, one line)."""
    from ..cli import UsageError

    try:
        tasks, contenders, skipped = _prepare(args)
    except (ValueError, MissingDependency) as error:
        raise UsageError(str(error)) from None
    for skip in skipped:
        print(f"note: skipping {skip.name}: {skip.reason}", file=sys.stderr)
    out = args.out or Path(f"bench-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    seeds = list(range(args.seeds))
    bar = ProgressBar(total_work(tasks, contenders, seeds, args.steps))
    try:
        suite = run_suite(tasks, contenders, seeds, args.steps, skipped, progress=bar)
    except KeyboardInterrupt:
        bar.close()
        print("interrupted; nothing written", file=sys.stderr)
        return 130
    bar.close()
    for task_result in suite.tasks:
        print(text_table(task_result))
        print()
    written = _write(suite, out)
    minutes, seconds = divmod(round(suite.wall_time_s), 60)
    print(f"{len(contenders)} optimizers x {len(tasks)} tasks x {len(seeds)} seed(s) in {minutes}m{seconds:02d}s")
    print(f"wrote {out}/: " + ", ".join(path.name for path in written))
    return 0

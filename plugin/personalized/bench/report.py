"""The bench's results: ``results.json`` (a stable schema), and the tables printed and saved.

results.json, schema version 2 (lrs as JSON keys are written with ``format(lr, "g")``,
e.g. ``"0.001"``, ``"3e-05"``; ``"preset"`` stands for an adaptive contender's own lr)::

    {
      "schema": "personalized-bench",
      "schema_version": 2,
      "created": "2026-01-31T12:00:00+00:00",       # UTC, ISO 8601
      "partial": false,                              # true: interrupted; only the finished runs are here
      "stopped": null,                               # why a partial run stopped ("interrupted", an error)
      "environment": {"personalized", "torch", "python", "platform", "threads", "workers"},
      "protocol": {
        "mode": "quick",                             # quick | full | fixed (see personalized.bench.sweep)
        "description": "...",                        # the protocol in one sentence
        "lr_grid": [1e-05, ...],                     # the grid every swept contender draws from
        "seeds": [0, 1, 2],
        "tolerance": 0.1, "tie": 0.01,               # see personalized.bench.analysis
        "tie_standard_errors": 2.0
      },
      "wall_time_s": 180.0,                          # the whole suite, on a possibly busy machine
      "skipped": [{"name": "default/AdamW8bitKahan", "reason": "..."}],
      "tasks": {
        "<task>": {
          "family", "description", "loss",           # what the task is and what its loss measures
          "steps", "eval_every",                     # every run of every contender gets these
          "adamw_best_lr": 0.01,                     # null if AdamW never finished
          "contenders": {
            "<label>": {                             # "torch.optim.AdamW", a preset name, "pytorch_optimizer.FAdam"
              "optimizer": "FCompass", "preset": "default/FCompass",
              "baseline": false, "adaptive": false,  # adaptive: runs at its preset's lr, not swept
              "lr_grid": [0.0001, ...],              # the lrs it ran at (empty when adaptive)
              "best_lr": 0.001,                      # null when adaptive or when every lr failed
              "best_at_edge": false,                 # the best lr is the grid's smallest or largest
              "loss": {"mean", "std", "min", "max", "seeds"},   # final loss at the best lr; null if none
              "loss_by_lr": {"0.001": 0.12, ...},    # mean final loss per lr; null where a run went NaN/failed
              "nan_by_lr": {"0.001": 0, ...},        # runs that went NaN, per lr
              "errors_by_lr": {"0.001": 0, ...},     # runs whose optimizer raised, per lr
              "seeds_by_lr": {"0.001": 3, ...},      # runs per lr
              "tolerance_decades": 1.0,              # lr span within 10% of the best loss; null when adaptive
              "lr_multiplier": 3.0,                  # best_lr / adamw_best_lr; null when not both exist
              "vs_adamw": "win",                     # win | tie | loss | null (AdamW itself)
              "metrics": {"accuracy": 0.95},         # at the best lr, mean over seeds
              "wall_time_s": 0.4,                    # mean seconds of training steps per run (wall time)
              "state_bytes": 18000,                  # nbytes of every optimizer state tensor after a run
              "settings": {"lr": 0.001, ...},        # the param group's hyperparameters at the best lr
              "runs": [{                             # every run; curves only at the best lr
                "lr", "seed", "final", "best", "nan_step", "error", "wall_time_s",
                "steps", "losses"                    # the evaluation curve (best lr only; step 0 is before training)
              }]
            }
          }
        }
      },
      "overall": {"<label>": {"wins", "ties", "losses", "lr_multiplier_median",
                              "lr_multiplier_min", "lr_multiplier_max", "lr_multipliers": {"<task>": 3.0}}}
    }

Losses are evaluation losses (held-out data, or the noise-free landscape);
non-finite numbers never appear (a NaN run has ``final: null`` and a ``nan_step``).
New keys may be added within a version; renaming or removing one bumps it.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import re
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .analysis import STANDARD_ERRORS, TIE, TOLERANCE, Overall, Summary, overall, summarize_task
from .contenders import ADAMW
from .runner import SeedRun, SuiteResult, TaskResult
from .sweep import Protocol

SCHEMA = "personalized-bench"
SCHEMA_VERSION = 2


def lr_key(lr: float | None) -> str:
    """An lr as a results.json key: ``format(lr, "g")``, or ``"preset"`` for an adaptive contender."""
    return "preset" if lr is None else format(lr, "g")


def _by_lr(values: dict[float | None, Any]) -> dict[str, Any]:
    return {lr_key(lr): value for lr, value in values.items()}


def _run_json(run: SeedRun, curve: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "lr": run.lr,
        "seed": run.seed,
        "final": run.final,
        "best": run.best,
        "nan_step": run.nan_step,
        "error": run.error,
        "wall_time_s": run.wall_time_s,
    }
    if curve:
        entry["steps"] = run.steps
        entry["losses"] = [float(f"{value:.6g}") for value in run.losses]  # 6 digits keep the file small
    return entry


def _contender_json(task_result: TaskResult, summary: Summary) -> dict[str, Any]:
    result = next(r for r in task_result.results if r.contender.label == summary.label)
    contender = result.contender
    return {
        "optimizer": contender.optimizer,
        "preset": contender.preset,
        "baseline": contender.baseline,
        "adaptive": contender.adaptive,
        "lr_grid": summary.lr_grid,
        "best_lr": summary.best_lr,
        "best_at_edge": summary.at_edge,
        "loss": summary.loss,
        "loss_by_lr": _by_lr(summary.loss_by_lr),
        "nan_by_lr": _by_lr(summary.nan_by_lr),
        "errors_by_lr": _by_lr(summary.errors_by_lr),
        "seeds_by_lr": _by_lr(summary.seeds_by_lr),
        "tolerance_decades": summary.tolerance_decades,
        "lr_multiplier": summary.lr_multiplier,
        "vs_adamw": summary.verdict,
        "metrics": summary.metrics,
        "wall_time_s": summary.wall_time_s,
        "state_bytes": summary.state_bytes,
        "settings": summary.settings,
        "runs": [_run_json(run, any(run is best for best in summary.best_runs)) for run in result.runs],
    }


def _task_json(task_result: TaskResult, summaries: list[Summary]) -> dict[str, Any]:
    task = task_result.task
    adamw = next((s for s in summaries if s.label == ADAMW), None)
    return {
        "family": task.family,
        "description": task.description,
        "loss": task.loss,
        "steps": task_result.steps,
        "eval_every": task_result.eval_every,
        "adamw_best_lr": adamw.best_lr if adamw else None,
        "contenders": {summary.label: _contender_json(task_result, summary) for summary in summaries},
    }


def _overall_json(entry: Overall) -> dict[str, Any]:
    spread = entry.multiplier_range
    return {
        "wins": entry.wins,
        "ties": entry.ties,
        "losses": entry.losses,
        "lr_multiplier_median": entry.multiplier_median,
        "lr_multiplier_min": spread[0] if spread else None,
        "lr_multiplier_max": spread[1] if spread else None,
        "lr_multipliers": entry.multipliers,
    }


def to_json(suite: SuiteResult) -> dict[str, Any]:
    """The results.json document for ``suite``."""
    protocol = suite.protocol
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "partial": suite.partial,
        "stopped": suite.stopped,
        "environment": {
            "personalized": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "threads": 1 if suite.workers > 1 else torch.get_num_threads(),
            "workers": suite.workers,
        },
        "protocol": {
            "mode": protocol.mode,
            "description": protocol.describe(),
            "lr_grid": list(protocol.grid),
            "seeds": list(protocol.seeds),
            "tolerance": TOLERANCE,
            "tie": TIE,
            "tie_standard_errors": STANDARD_ERRORS,
        },
        "wall_time_s": suite.wall_time_s,
        "skipped": [{"name": skip.name, "reason": skip.reason} for skip in suite.skipped],
        "tasks": {
            task_result.task.name: _task_json(task_result, summarize_task(task_result, protocol))
            for task_result in suite.tasks
        },
        "overall": {entry.label: _overall_json(entry) for entry in overall(suite)},
    }


#: A list of numbers as ``json.dumps(indent=...)`` spreads it over lines.
_NUMBER_LIST = re.compile(r"\[\s+((?:-?[\d.eE+-]+,\s+)*-?[\d.eE+-]+)\s+\]")


def write_json(suite: SuiteResult, path: Path) -> None:
    """Write :func:`to_json` to ``path``: strict JSON (no NaN or Infinity), indented, each curve on one line."""
    text = json.dumps(to_json(suite), indent=1, allow_nan=False)
    text = _NUMBER_LIST.sub(lambda match: "[" + re.sub(r",\s+", ", ", match.group(1)) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")


# -- tables ---------------------------------------------------------------------------------


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _lr(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _factor(value: float | None) -> str:
    return "-" if value is None else f"x{value:.3g}"


def _seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"


def _bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    return f"{count / 1024:.1f} KiB" if count < 1024**2 else f"{count / 1024**2:.1f} MiB"


def _failures(summary: Summary) -> str:
    runs = sum(summary.seeds_by_lr.values())
    nans, errors = sum(summary.nan_by_lr.values()), sum(summary.errors_by_lr.values())
    text = f"{nans}/{runs}"
    return text + (f" ({errors} err)" if errors else "")


def _best_lr(summary: Summary) -> str:
    if summary.adaptive:
        return "adaptive"
    return _lr(summary.best_lr) + (" (edge)" if summary.at_edge else "")


def _loss_spread(summary: Summary) -> str:
    if summary.loss is None:
        return "NaN/error at every lr"
    if summary.loss["seeds"] < 2:
        return _loss(summary.loss["mean"])
    return f"{_loss(summary.loss['mean'])} ± {summary.loss['std']:.2g}"


HEADER = (
    "optimizer",
    "best lr",
    "loss at best lr",
    "vs AdamW",
    "lr x AdamW",
    "tolerance",
    "NaN runs",
    "time/run (wall)",
    "state",
    "accuracy",
)


def _row(summary: Summary) -> tuple[str, ...]:
    accuracy = summary.metrics.get("accuracy")
    tolerance = summary.tolerance_decades
    return (
        summary.label,
        _best_lr(summary),
        _loss_spread(summary),
        summary.verdict or ("baseline" if summary.label == ADAMW else "-"),
        _factor(summary.lr_multiplier),
        "-" if tolerance is None else f"{tolerance:.1f} dec",
        _failures(summary),
        _seconds(summary.wall_time_s),
        _bytes(summary.state_bytes),
        "-" if accuracy is None else f"{accuracy:.1%}",
    )


def rows(task_result: TaskResult, protocol: Protocol) -> list[tuple[str, ...]]:
    """The task's table rows, lowest loss at the best lr first; contenders with no finished lr last."""

    def order(summary: Summary) -> tuple[bool, float]:
        return summary.loss is None, math.inf if summary.loss is None else summary.loss["mean"]

    table = [_row(summary) for summary in sorted(summarize_task(task_result, protocol), key=order)]
    if all(row[-1] == "-" for row in table):
        return [row[:-1] for row in table]
    return table


def grid_rows(task_result: TaskResult, protocol: Protocol) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The loss at every lr of the grid, a row per contender: mean loss, ``NaN k/n``, ``error`` or blank."""
    lrs = list(protocol.grid)
    header = ("optimizer", *(_lr(lr) for lr in lrs), "adaptive")
    body = []
    for summary in summarize_task(task_result, protocol):

        def cell(lr: float | None, summary: Summary = summary) -> str:
            if lr not in summary.seeds_by_lr:
                return ""
            if summary.loss_by_lr[lr] is not None:
                marker = "**" if lr == summary.best_lr or (lr is None and summary.adaptive) else ""
                return f"{marker}{_loss(summary.loss_by_lr[lr])}{marker}"
            nans = summary.nan_by_lr[lr]
            return f"NaN {nans}/{summary.seeds_by_lr[lr]}" if nans else "error"

        body.append((summary.label, *(cell(lr) for lr in lrs), cell(None)))
    if all(row[-1] == "" for row in body):
        header, body = header[:-1], [row[:-1] for row in body]
    return header, body


def heading(task_result: TaskResult) -> str:
    """One line naming the task, its loss and its size."""
    task = task_result.task
    return f"{task.name}: {task.description}; {task.loss}, {task_result.steps} steps"


def _aligned(header: tuple[str, ...], body: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return [
        "  ".join([row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:]))])
        for row in [header, *body]
    ]


def text_table(task_result: TaskResult, protocol: Protocol) -> str:
    """The task's table as aligned plain text (the label left, numbers right)."""
    body = rows(task_result, protocol)
    header = HEADER[: len(body[0])] if body else HEADER
    return "\n".join([heading(task_result), *_aligned(header, body)])


def _markdown(header: tuple[str, ...], body: list[tuple[str, ...]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in body),
    ]


def markdown_table(task_result: TaskResult, protocol: Protocol) -> str:
    """The task's tables in Markdown: the summary at the best lr, then the loss at every lr."""
    body = rows(task_result, protocol)
    header = HEADER[: len(body[0])] if body else HEADER
    grid_header, grid_body = grid_rows(task_result, protocol)
    return "\n".join(
        [
            f"### {task_result.task.name}",
            "",
            heading(task_result),
            "",
            *_markdown(header, body),
            "",
            "Mean final loss at every lr (**bold**: the best; `NaN k/n`: k of n runs went NaN):",
            "",
            *_markdown(grid_header, grid_body),
        ]
    )


OVERALL_HEADER = ("optimizer", "wins", "ties", "losses", "lr x AdamW (median)", "lr x AdamW (min-max)")


def overall_rows(suite: SuiteResult) -> list[tuple[str, ...]]:
    """One row per contender across the tasks: wins/ties/losses against AdamW and the lr multiplier."""
    table = []
    for entry in sorted(overall(suite), key=lambda e: (-(e.wins + e.ties), -e.wins, e.label)):
        spread = entry.multiplier_range
        table.append(
            (
                entry.label,
                str(entry.wins),
                str(entry.ties),
                str(entry.losses),
                _factor(entry.multiplier_median),
                "-" if spread is None else f"{_factor(spread[0])} - {_factor(spread[1])}",
            )
        )
    return table


def overall_table(suite: SuiteResult) -> str:
    """The across-tasks table as aligned plain text."""
    return "\n".join(
        ["all tasks: against torch.optim.AdamW at both best lrs", *_aligned(OVERALL_HEADER, overall_rows(suite))]
    )


def protocol_text(suite: SuiteResult) -> str:
    """How the figures were made, in plain words (for results.md and the README)."""
    protocol = suite.protocol
    minutes, seconds = divmod(round(suite.wall_time_s), 60)
    return (
        f"Protocol: every contender, AdamW included, on the same {protocol.describe()}; same seeds and "
        f"steps for all; other hyperparameters from each preset (AdamW and peers: library defaults). "
        f"Adaptive contenders (Prodigy, Automagic, Adafactor's relative step) run at their preset's lr. "
        f"Best lr = lowest mean held-out final loss; a tie is a difference within {TIE:.0%} of AdamW's loss or within "
        f"{STANDARD_ERRORS:g} standard errors over the seeds; tolerance = "
        f"the lr span (decades) within {TOLERANCE:.0%} of the best loss; lr x AdamW = best lr / AdamW's best lr. "
        f"{suite.workers} worker process(es), {minutes}m{seconds:02d}s wall time in all; time/run is wall time "
        f"of training steps on a possibly busy machine."
    )


def write_markdown(suite: SuiteResult, path: Path) -> None:
    """results.md: the protocol, the across-tasks table, then each task's tables."""
    parts = ["# personalized bench results", ""]
    if suite.partial:
        parts += [f"**Partial results** ({suite.stopped}): only the runs that finished are included.", ""]
    parts += [protocol_text(suite), "", "## All tasks", "", *_markdown(OVERALL_HEADER, overall_rows(suite)), ""]
    parts += ["## Per task", ""]
    parts += [markdown_table(task_result, suite.protocol) + "\n" for task_result in suite.tasks]
    path.write_text("\n".join(parts), encoding="utf-8")

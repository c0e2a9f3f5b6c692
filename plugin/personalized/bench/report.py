"""The bench's results: ``results.json`` (a stable schema), and the tables printed and saved.

results.json, schema version 1::

    {
      "schema": "personalized-bench",
      "version": 1,
      "created": "2025-01-31T12:00:00+00:00",        # UTC, ISO 8601
      "environment": {"personalized", "torch", "python", "platform", "threads"},
      "seeds": [0],
      "wall_time_s": 180.0,                          # the whole suite
      "skipped": [{"name": "default/AdamW8bitKahan", "reason": "..."}],
      "tasks": {
        "<task>": {
          "family", "description", "loss",           # what the task is and what its loss measures
          "steps", "eval_every", "adamw_lr",         # how it ran
          "target": 0.12,                            # AdamW's final loss, mean over seeds (null if none finished)
          "optimizers": {
            "<label>": {                             # "torch.optim.AdamW" or a preset name, "default/FCompass"
              "optimizer": "FCompass", "preset": "default/FCompass", "baseline": false,
              "settings": {"lr": 0.001, ...},        # the param group's hyperparameters as run
              "summary": {                           # over the seeds; what the table shows
                "final", "best",                     # mean over the seeds that finished (null if none)
                "steps_to_target", "reached",        # median steps to the target, over the `reached` seeds
                "nan_count", "error_count",
                "wall_time_s", "state_bytes", "metrics"
              },
              "seeds": [{
                "seed", "steps", "losses",           # the evaluation curve (step 0 is before training)
                "final", "best",
                "steps_to_target",                   # first step at or below AdamW's final loss on this seed
                "nan_step",                          # the step whose loss was first non-finite, or null
                "error",                             # "TypeName: message" if the optimizer raised, or null
                "wall_time_s",                       # seconds in training steps, evaluation excluded
                "state_bytes",                       # nbytes of every optimizer state tensor after the run
                "metrics"                            # e.g. {"accuracy": 0.95}
              }]
            }
          }
        }
      }
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
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .runner import ContenderResult, SeedRun, SuiteResult, TaskResult

SCHEMA = "personalized-bench"
SCHEMA_VERSION = 1

#: The keys of each level of results.json, for the tests and for readers.
TOP_KEYS = ("schema", "version", "created", "environment", "seeds", "wall_time_s", "skipped", "tasks")
TASK_KEYS = ("family", "description", "loss", "steps", "eval_every", "adamw_lr", "target", "optimizers")
OPTIMIZER_KEYS = ("optimizer", "preset", "baseline", "settings", "summary", "seeds")
SUMMARY_KEYS = (
    "final",
    "best",
    "steps_to_target",
    "reached",
    "nan_count",
    "error_count",
    "wall_time_s",
    "state_bytes",
    "metrics",
)
SEED_KEYS = (
    "seed",
    "steps",
    "losses",
    "final",
    "best",
    "steps_to_target",
    "nan_step",
    "error",
    "wall_time_s",
    "state_bytes",
    "metrics",
)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarize(result: ContenderResult) -> dict[str, Any]:
    """One contender on one task over its seeds (see the module docstring)."""
    runs = result.runs
    finished = [run for run in runs if run.final is not None]
    reached = [run.steps_to_target for run in runs if run.steps_to_target is not None]
    names = sorted({name for run in finished for name in run.metrics})
    metrics = {name: _mean([run.metrics[name] for run in finished if name in run.metrics]) for name in names}
    return {
        "final": _mean([run.final for run in finished if run.final is not None]),
        "best": _mean([run.best for run in runs if run.best is not None]),
        "steps_to_target": int(statistics.median(reached)) if reached else None,
        "reached": len(reached),
        "nan_count": sum(run.nan_step is not None for run in runs),
        "error_count": sum(run.error is not None for run in runs),
        "wall_time_s": _mean([run.wall_time_s for run in runs]) or 0.0,
        "state_bytes": max((run.state_bytes for run in runs), default=0),
        "metrics": metrics,
    }


def _seed_json(run: SeedRun) -> dict[str, Any]:
    entry = {key: asdict(run)[key] for key in SEED_KEYS}
    entry["losses"] = [float(f"{value:.6g}") for value in run.losses]  # 6 digits keep the file small
    return entry


def _task_json(task_result: TaskResult) -> dict[str, Any]:
    task = task_result.task
    return {
        "family": task.family,
        "description": task.description,
        "loss": task.loss,
        "steps": task_result.steps,
        "eval_every": task_result.eval_every,
        "adamw_lr": task.adamw_lr,
        "target": task_result.target,
        "optimizers": {
            result.contender.label: {
                "optimizer": result.contender.optimizer,
                "preset": result.contender.preset,
                "baseline": result.contender.baseline,
                "settings": result.settings,
                "summary": summarize(result),
                "seeds": [_seed_json(run) for run in result.runs],
            }
            for result in task_result.results
        },
    }


def to_json(suite: SuiteResult) -> dict[str, Any]:
    """The results.json document for ``suite``."""
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": {
            "personalized": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
        },
        "seeds": suite.seeds,
        "wall_time_s": suite.wall_time_s,
        "skipped": [{"name": skip.name, "reason": skip.reason} for skip in suite.skipped],
        "tasks": {task_result.task.name: _task_json(task_result) for task_result in suite.tasks},
    }


#: A list of numbers as ``json.dumps(indent=...)`` spreads it over lines.
_NUMBER_LIST = re.compile(r"\[\s+((?:-?[\d.eE+-]+,\s+)*-?[\d.eE+-]+)\s+\]")


def write_json(suite: SuiteResult, path: Path) -> None:
    """Write :func:`to_json` to ``path``: strict JSON (no NaN or Infinity), indented, each curve on one line."""
    text = json.dumps(to_json(suite), indent=1, allow_nan=False)
    text = _NUMBER_LIST.sub(lambda match: "[" + re.sub(r",\s+", ", ", match.group(1)) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"


def _bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    return f"{count / 1024:.1f} KiB" if count < 1024**2 else f"{count / 1024**2:.1f} MiB"


def _row(result: ContenderResult, seeds: int) -> tuple[str, ...]:
    summary = summarize(result)
    final = _loss(summary["final"])
    if summary["final"] is None:
        nan_steps = [run.nan_step for run in result.runs if run.nan_step is not None]
        final = f"NaN@{min(nan_steps)}" if nan_steps else "error"
    steps = "-"
    if summary["steps_to_target"] is not None:
        steps = str(summary["steps_to_target"])
        if summary["reached"] < seeds:
            steps += f" ({summary['reached']}/{seeds})"
    accuracy = summary["metrics"].get("accuracy")
    return (
        result.contender.label,
        final,
        _loss(summary["best"]),
        steps,
        str(summary["nan_count"]),
        _seconds(summary["wall_time_s"]),
        _bytes(summary["state_bytes"]),
        "-" if accuracy is None else f"{accuracy:.1%}",
    )


HEADER = ("optimizer", "final loss", "best loss", "steps to AdamW", "NaN", "time/run", "state", "accuracy")


def rows(task_result: TaskResult) -> list[tuple[str, ...]]:
    """The table's rows, best final loss first; runs that went NaN or failed last."""
    seeds = max((len(result.runs) for result in task_result.results), default=1)

    def order(result: ContenderResult) -> tuple[bool, float]:
        final = summarize(result)["final"]
        return final is None, math.inf if final is None else final

    table = [_row(result, seeds) for result in sorted(task_result.results, key=order)]
    if all(row[-1] == "-" for row in table):
        return [row[:-1] for row in table]
    return table


def heading(task_result: TaskResult) -> str:
    """One line naming the task, its loss and its size."""
    task = task_result.task
    return f"{task.name}: {task.description}; {task.loss}, {task_result.steps} steps"


def text_table(task_result: TaskResult) -> str:
    """The task's table as aligned plain text (the label left, numbers right)."""
    body = rows(task_result)
    header = HEADER[: len(body[0])] if body else HEADER
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join([row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:]))])
        for row in [header, *body]
    ]
    return "\n".join([heading(task_result), *lines])


def markdown_table(task_result: TaskResult) -> str:
    """The task's table in Markdown, for a README."""
    body = rows(task_result)
    header = HEADER[: len(body[0])] if body else HEADER
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in body),
    ]
    return "\n".join([f"**{heading(task_result)}**", "", *lines])


def write_markdown(suite: SuiteResult, path: Path) -> None:
    """All the tables in Markdown, one section per task."""
    sections = [markdown_table(task_result) for task_result in suite.tasks]
    path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")

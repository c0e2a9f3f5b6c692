"""The bench's pictures (matplotlib, without pyplot or a GUI backend).

Per task, ``<task>-lr.png``: the lr-sensitivity plot, final loss against lr on
a log axis, one line per contender; and ``<task>.png``: the loss curves at each
contender's best lr. Across tasks, ``summary.png``: every contender's loss at
its best lr relative to AdamW's, and its lr multiplier, per task. Legends
carry the lrs. AdamW is thick and black, Prodigy grey and dashed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .analysis import Summary, overall, summarize_task
from .contenders import ADAMW, PRODIGY
from .deps import require
from .runner import SuiteResult, TaskResult
from .sweep import Protocol

#: Markers cycle with the colours so that no two lines look alike.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")
#: After twenty colours the lines change style.
LINESTYLES = ("-", "-.", ":")


def _figure(width: float, height: float) -> Any:
    require("matplotlib", "matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def styles(labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A distinct colour, marker and line style per label; AdamW black and thick, Prodigy grey dashed."""
    from matplotlib import colormaps

    palette = colormaps["tab20"]
    result: dict[str, dict[str, Any]] = {}
    others = 0
    for label in labels:
        if label == ADAMW:
            result[label] = {"color": "black", "linewidth": 2.6, "marker": "o", "zorder": 4}
        elif label == PRODIGY:
            result[label] = {"color": "dimgray", "linewidth": 1.8, "linestyle": "--", "marker": "s", "zorder": 3}
        else:
            result[label] = {
                "color": palette(others % 20),
                "linewidth": 1.3,
                "linestyle": LINESTYLES[others // 20 % 3],
                "marker": MARKERS[others % len(MARKERS)],
            }
            others += 1
    return result


def _legend(axes: Any) -> None:
    axes.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _lr_text(summary: Summary) -> str:
    if summary.adaptive:
        return "adaptive lr"
    return "no finite lr" if summary.best_lr is None else f"best lr {summary.best_lr:g}"


def plot_lr_sensitivity(task_result: TaskResult, protocol: Protocol, path: Path) -> None:
    """Final loss (mean over seeds) against lr, log axes; an lr where runs went NaN is an x at the top.

    Adaptive contenders, which have no lr axis, are a horizontal dotted line at their loss.
    """
    figure = _figure(10, 5.5)
    axes = figure.add_subplot()
    summaries = summarize_task(task_result, protocol)
    style = styles([s.label for s in summaries])
    finite = [v for s in summaries for v in s.loss_by_lr.values() if v is not None]
    starts = [run.losses[0] for result in task_result.results for run in result.runs if run.losses]
    # Losses far above the untrained model's say only "diverged": keep the axis on the useful range.
    top = min(max(finite), 3 * max(starts)) if finite and starts else max(finite, default=1.0)
    for summary in summaries:
        own = style[summary.label]
        label = f"{summary.label} ({_lr_text(summary)})"
        if summary.adaptive:
            if summary.loss is not None:
                axes.axhline(summary.loss["mean"], color=own["color"], linestyle=":", linewidth=1.4, label=label)
            continue
        points = [(lr, v) for lr, v in summary.loss_by_lr.items() if lr is not None and v is not None]
        failed = [lr for lr, v in summary.loss_by_lr.items() if lr is not None and v is None]
        if points:
            xs, ys = zip(*points)
            axes.plot(xs, ys, label=label, markersize=5, **own)
        else:
            axes.plot([], [], label=label, **own)
        if failed:
            axes.plot(failed, [top] * len(failed), linestyle="none", marker="x", color=own["color"], markersize=8)
    axes.set_xscale("log")
    if finite and min(finite) > 0:
        axes.set_yscale("log")
        axes.set_ylim(min(finite) / 1.2, top * 1.2)
    task = task_result.task
    axes.set_title(
        f"{task.name}: final loss against lr (x at the top: NaN; lines leaving the top diverged)", fontsize=10
    )
    axes.set_xlabel("learning rate")
    axes.set_ylabel(f"final {task.loss}")
    axes.grid(alpha=0.3, which="both")
    _legend(axes)
    figure.tight_layout()
    figure.savefig(path)


def plot_curves(task_result: TaskResult, protocol: Protocol, path: Path) -> None:
    """Every contender's evaluation curve at its best lr: the mean over its seeds and, shaded, their range."""
    figure = _figure(10, 5.5)
    axes = figure.add_subplot()
    summaries = summarize_task(task_result, protocol)
    style = styles([s.label for s in summaries])
    values = []
    for summary in summaries:
        if not summary.best_runs:
            continue
        own = {key: value for key, value in style[summary.label].items() if key != "marker"}
        curves = [run.losses for run in summary.best_runs]
        steps = summary.best_runs[0].steps
        mean = [math.fsum(points) / len(points) for points in zip(*curves)]
        values += [value for curve in curves for value in curve]
        axes.plot(steps, mean, label=f"{summary.label} ({_lr_text(summary)})", **own)
        if len(curves) > 1:
            low, high = [min(points) for points in zip(*curves)], [max(points) for points in zip(*curves)]
            axes.fill_between(steps, low, high, color=own["color"], alpha=0.1, linewidth=0)
    if values and min(values) > 0:
        axes.set_yscale("log")
        axes.set_ylim(min(values) / 1.5, max(values) * 1.5)
    task = task_result.task
    axes.set_title(f"{task.name}: {task.description}, each at its best lr", fontsize=10)
    axes.set_xlabel("step")
    axes.set_ylabel(task.loss)
    axes.grid(alpha=0.3, which="both")
    _legend(axes)
    figure.tight_layout()
    figure.savefig(path)


def plot_summary(suite: SuiteResult, path: Path) -> None:
    """Across tasks: loss at the best lr relative to AdamW's (left) and the lr multiplier (right), a marker per task."""
    figure = _figure(12, 0.45 * len(suite.contenders) + 2)
    left, right = figure.subplots(1, 2, sharey=True)
    labels = [entry.label for entry in overall(suite)]
    rows = {label: index for index, label in enumerate(reversed(labels))}
    for number, task_result in enumerate(suite.tasks):
        summaries = {s.label: s for s in summarize_task(task_result, suite.protocol)}
        adamw = summaries.get(ADAMW)
        if adamw is None or adamw.loss is None:
            continue
        marker = MARKERS[number % len(MARKERS)]
        xs, ys, multipliers, multiplier_rows = [], [], [], []
        for label, row in rows.items():
            summary = summaries.get(label)
            if summary is None or summary.loss is None:
                continue
            xs.append(summary.loss["mean"] / adamw.loss["mean"])
            ys.append(row)
            if summary.lr_multiplier is not None:
                multipliers.append(summary.lr_multiplier)
                multiplier_rows.append(row)
        name = f"{task_result.task.name} (AdamW lr {adamw.best_lr:g})"
        left.scatter(xs, ys, marker=marker, s=36, alpha=0.8, label=name)
        right.scatter(multipliers, multiplier_rows, marker=marker, s=36, alpha=0.8)
    left.axvline(1.0, color="black", linewidth=1.2)
    right.axvline(1.0, color="black", linewidth=1.2)
    left.set_xscale("log")
    right.set_xscale("log")
    left.set_yticks(list(rows.values()), list(rows))
    left.set_xlabel("loss at best lr / AdamW's (left of 1: better)")
    right.set_xlabel("best lr / AdamW's best lr")
    left.set_title("loss against AdamW, each at its best lr", fontsize=10)
    right.set_title("lr multiplier (adaptive contenders have none)", fontsize=10)
    for axes in (left, right):
        axes.grid(alpha=0.3, which="both")
    left.legend(fontsize=7.5, loc="lower left", bbox_to_anchor=(0.0, 1.06), ncol=3, frameon=False)
    figure.tight_layout()
    figure.savefig(path)


def write_plots(suite: SuiteResult, out: Path) -> list[Path]:
    """Every picture of ``suite`` into ``out``; the paths written."""
    written = []
    for task_result in suite.tasks:
        name = task_result.task.name
        plot_curves(task_result, suite.protocol, out / f"{name}.png")
        plot_lr_sensitivity(task_result, suite.protocol, out / f"{name}-lr.png")
        written += [out / f"{name}.png", out / f"{name}-lr.png"]
    if suite.tasks:
        plot_summary(suite, out / "summary.png")
        written.append(out / "summary.png")
    return written

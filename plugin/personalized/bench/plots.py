"""One PNG of the evaluation-loss curves per task (matplotlib, without pyplot or a GUI backend)."""

from __future__ import annotations

import math
from pathlib import Path

from .contenders import ADAMW, PRODIGY
from .deps import require
from .runner import TaskResult

#: After ten colours the curves change line style.
LINESTYLES = ("-", "-.", ":")


def plot_task(task_result: TaskResult, path: Path) -> None:
    """Draw every contender's curve on ``task_result``: the mean over its seeds and, shaded, their range.

    The baselines are black (AdamW) and grey dashed (Prodigy). Runs that went
    NaN are drawn alone up to their last finite loss, where a cross marks them;
    the dotted line is AdamW's final loss (mean over seeds).
    """
    require("matplotlib", "matplotlib")
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 5.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    palette = colormaps["tab10"]
    others = 0
    values = [value for result in task_result.results for run in result.runs for value in run.losses]
    for result in task_result.results:
        label = result.contender.label
        if label == ADAMW:
            style = {"color": "black", "linewidth": 2.2, "zorder": 3}
        elif label == PRODIGY:
            style = {"color": "dimgray", "linewidth": 1.8, "linestyle": "--", "zorder": 3}
        else:
            style = {"color": palette(others % 10), "linewidth": 1.3, "linestyle": LINESTYLES[others // 10 % 3]}
            others += 1
        finished = [run for run in result.runs if run.final is not None]
        stopped = [run for run in result.runs if run.final is None]
        nans, errors = sum(run.nan_step is not None for run in stopped), sum(run.error is not None for run in stopped)
        suffix = (f" (NaN {nans}/{len(result.runs)})" if nans else "") + (" (error)" if errors else "")
        if finished:
            curves = [run.losses for run in finished]
            steps = finished[0].steps
            mean = [sum(points) / len(points) for points in zip(*curves)]
            axes.plot(steps, mean, label=label + suffix, **style)
            if len(curves) > 1:
                low, high = [min(points) for points in zip(*curves)], [max(points) for points in zip(*curves)]
                axes.fill_between(steps, low, high, color=style["color"], alpha=0.12, linewidth=0)
        for index, run in enumerate(stopped):
            name = label + suffix if not finished and index == 0 else None
            axes.plot(run.steps, run.losses, label=name, **{**style, "linewidth": 0.9})
            axes.plot(run.steps[-1:], run.losses[-1:], marker="x", markersize=9, color=style["color"])
    if task_result.target is not None:
        axes.axhline(task_result.target, color="black", linestyle=":", linewidth=0.9, label="AdamW's final loss")
    finite = [value for value in values if math.isfinite(value)]
    if finite and min(finite) > 0:
        axes.set_yscale("log")
        start = max(run.losses[0] for result in task_result.results for run in result.runs)
        axes.set_ylim(min(finite) / 1.5, start * 3)  # runs that blow up leave the top
    task = task_result.task
    axes.set_title(f"{task.name}: {task.description}", fontsize=10)
    axes.set_xlabel("step")
    axes.set_ylabel(task.loss)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.tight_layout()
    figure.savefig(path)

"""Progress on stderr: a one-line bar on a terminal, one plain line per finished task otherwise."""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import TextIO

from .runner import Progress, TaskResult


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


class ProgressBar(Progress):
    """Shows how far the suite is, with an estimate of the time left.

    On a terminal (or with ``terminal=True``) a bar is redrawn at most ten
    times a second and each finished task prints a line above it; otherwise
    (output to a file or a pipe) only the line per finished task is written.
    ``total`` is the most work the suite can take (:func:`.runner.most_work`).
    """

    def __init__(self, total: float, stream: TextIO | None = None, terminal: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.total, self.done, self.text = max(total, 1e-9), 0.0, ""
        self.start = time.monotonic()
        self.drawn = -math.inf

    def advance(self, work: float, text: str) -> None:
        self.done = min(self.total, self.done + work)
        if text:
            self.text = text
        now = time.monotonic()
        if self.terminal and now - self.drawn >= 0.1:
            self.drawn = now
            self.stream.write("\r" + self.line(now) + "\033[K")
            self.stream.flush()

    def task_done(self, result: TaskResult, done: int, total: int) -> None:
        now = time.monotonic()
        runs = sum(len(r.runs) for r in result.results)
        left = " (done)" if done == total else self._left(now) or ""
        text = f"[{done}/{total}] {result.task.name}: {runs} runs finished, {_clock(now - self.start)} elapsed{left}"
        self.stream.write(("\r\033[K" if self.terminal else "") + text + "\n")
        self.stream.flush()
        self.drawn = -math.inf

    def _left(self, now: float) -> str | None:
        fraction = self.done / self.total
        if not 0.02 < fraction < 1:
            return None
        elapsed = now - self.start
        return f" (about {_clock(elapsed / fraction - elapsed)} left)"

    def line(self, now: float) -> str:
        """The bar as text: ``[####....]  42%  0:51 (about 1:10 left)  task: optimizer, lr, seed``."""
        fraction = self.done / self.total
        width = 24
        filled = int(fraction * width)
        head = f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}  {_clock(now - self.start)}"
        head += (self._left(now) or "") + "  "
        room = max(10, shutil.get_terminal_size((100, 20)).columns - len(head) - 1)
        return head + self.text[:room]

    def close(self) -> None:
        """Clear the bar's line."""
        if self.terminal:
            self.stream.write("\r\033[K")
            self.stream.flush()

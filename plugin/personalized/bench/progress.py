"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


class ProgressBar:
    """``bar(advance, text)`` moves the bar by ``advance`` units of work; a non-empty ``text`` replaces the label.

    Draws at once, then at most ten times a second; :meth:`close` clears the
    line. Writes nothing when ``stream`` is not a terminal (unless ``force``).
    """

    def __init__(self, total: float, stream: TextIO | None = None, force: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or self.stream.isatty()
        self.total, self.done, self.text = max(total, 1e-9), 0.0, ""
        self.start = time.monotonic()
        self.drawn = -math.inf

    def __call__(self, advance: float, text: str) -> None:
        self.done = min(self.total, self.done + advance)
        if text:
            self.text = text
        now = time.monotonic()
        if self.enabled and now - self.drawn >= 0.1:
            self.drawn = now
            self.stream.write("\r" + self.line(now) + "\033[K")
            self.stream.flush()

    def line(self, now: float) -> str:
        """The bar as text: ``[####....]  42%  0:51 (about 1:10 left)  task: optimizer, seed``."""
        fraction = self.done / self.total
        elapsed = now - self.start
        left = f" (about {_clock(elapsed / fraction - elapsed)} left)" if 0.02 < fraction < 1 else ""
        width = 24
        filled = int(fraction * width)
        head = f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}  {_clock(elapsed)}{left}  "
        room = max(10, shutil.get_terminal_size((100, 20)).columns - len(head) - 1)
        return head + self.text[:room]

    def close(self) -> None:
        """Clear the bar's line."""
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

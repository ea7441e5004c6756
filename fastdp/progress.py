"""A one-line progress bar on stderr, for rank 0 of a fit (`verbose=True`)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class Progress:
    """Redraws `[#####.....] step/total  objective  elapsed` in place; does nothing when disabled."""

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None,
                 min_interval: float = 0.1) -> None:
        self.total, self.enabled = max(int(total), 1), enabled
        self.stream = sys.stderr if stream is None else stream
        self.min_interval = min_interval
        self.start = time.perf_counter()
        self.last_draw = -float("inf")
        self.drawn = False
        self.pending: tuple[int, float] | None = None  # the latest state not yet drawn

    def update(self, step: int, objective: float) -> None:
        """Show that `step` (0-based) is done with this objective value (at most every min_interval s)."""
        now = time.perf_counter()
        if not self.enabled:
            return
        if now - self.last_draw < self.min_interval:
            self.pending = (step, objective)
            return
        self._draw(step, objective, now)

    def _draw(self, step: int, objective: float, now: float) -> None:
        self.last_draw, self.pending = now, None
        done = min(step + 1, self.total)
        filled = WIDTH * done // self.total
        self.stream.write(f"\r[{'#' * filled}{'.' * (WIDTH - filled)}] {done}/{self.total}"
                          f"  objective {objective:.6g}  {now - self.start:.1f} s")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """Draw the last state and end the bar's line."""
        if self.pending is not None:
            self._draw(*self.pending, time.perf_counter())
        if self.enabled and self.drawn:
            self.stream.write("\n")
            self.stream.flush()

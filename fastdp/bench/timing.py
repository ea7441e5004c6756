"""Timing helpers shared by the benchmark suites."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

SETTLE_S = 0.15  # idle time before each timed call of interleaved_times (see there)


def best_time(run: Callable[[], Any], repeat: int, warmup: int = 1) -> float:
    """Minimum wall seconds of `repeat` calls of run(), after `warmup` untimed calls."""
    if repeat < 1 or warmup < 0:
        raise ValueError(f"repeat must be >= 1 and warmup >= 0, got {repeat} and {warmup}")
    for _ in range(warmup):
        run()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def interleaved_times(runs: Mapping[str, Callable[[], Any]], rounds: int,
                      settle_s: float = SETTLE_S) -> dict[str, list[float]]:
    """Wall seconds of each contender in each of `rounds` rounds; a round times one call of each
    in turn, each after settle_s seconds idle.

    Interleaving spreads the machine's slow and fast moments over every contender, and the calls
    of one round ran close together in time, under the same conditions. The idle time is for the
    thread pools: after a call, OpenBLAS's threads spin for 30-100 ms (measured here), and a
    kernel timed in that window ran 1.5x slower, its threads sharing the cores with the spinning
    ones. settle_s lets every pool go to sleep first, so each contender is timed on an idle
    machine, as it would run in a training loop of its own.
    """
    if rounds < 1 or settle_s < 0:
        raise ValueError(f"rounds must be >= 1 and settle_s >= 0, got {rounds} and {settle_s}")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            time.sleep(settle_s)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_best(runs: Mapping[str, Callable[[], Any]], rounds: int,
                     settle_s: float = SETTLE_S) -> dict[str, float]:
    """Minimum wall seconds of each contender over the rounds of interleaved_times."""
    return {name: min(t) for name, t in interleaved_times(runs, rounds, settle_s).items()}

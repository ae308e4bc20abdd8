"""Helpers shared by the bench scripts (run them from the repository root: python bench/NAME.py)."""
from __future__ import annotations

import statistics
import time


def _timed(fn, repeat: int, clock=time.perf_counter) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeat):
        t = clock()
        out = fn()
        times.append(clock() - t)
    return times, out


def best(fn, repeat: int, clock=time.perf_counter) -> tuple[float, object]:
    """Best time of `repeat` calls, and the last result (best-of-N damps a shared machine's noise).

    `clock`: wall time by default; time.process_time for this process's CPU time (steadier on a loaded machine)."""
    times, out = _timed(fn, repeat, clock)
    return min(times), out


def median(fn, repeat: int) -> tuple[float, object]:
    """Median wall time of `repeat` calls, and the last result (for same-run ratios)."""
    times, out = _timed(fn, repeat)
    return statistics.median(times), out

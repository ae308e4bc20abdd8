"""Helpers shared by the bench scripts (run them from the repository root: python bench/NAME.py)."""
from __future__ import annotations

import statistics
import time


def _timed(fn, repeat: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def best(fn, repeat: int) -> tuple[float, object]:
    """Best wall time of `repeat` calls, and the last result (best-of-N damps a shared machine's noise)."""
    times, out = _timed(fn, repeat)
    return min(times), out


def median(fn, repeat: int) -> tuple[float, object]:
    """Median wall time of `repeat` calls, and the last result (for same-run ratios)."""
    times, out = _timed(fn, repeat)
    return statistics.median(times), out

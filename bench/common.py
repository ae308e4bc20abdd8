"""Helpers shared by the bench scripts (run them from the repository root: python bench/NAME.py)."""
from __future__ import annotations

import time


def best(fn, repeat: int) -> tuple[float, object]:
    """Best wall time of `repeat` calls, and the last result (best-of-N damps a shared machine's noise)."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out

"""Helpers shared by the bench scripts (run them from the repository root: python bench/NAME.py)."""
from __future__ import annotations

import time


def best(fn, repeat: int, clock=time.perf_counter) -> tuple[float, object]:
    """Best time of `repeat` calls, and the last result (best-of-N damps a shared machine's noise).

    `clock`: wall time by default; time.process_time for this process's CPU time (steadier on a loaded machine)."""
    times, out = [], None
    for _ in range(repeat):
        t = clock()
        out = fn()
        times.append(clock() - t)
    return min(times), out

"""Deterministic measures of how much work a call does, for tests that bound it (never a clock).

`measure(fn)` runs `fn()` under cProfile (which counts every Python-level function call and every
builtin called from Python) and tracemalloc (peak bytes allocated).  For a given input and a given
version of the code both figures are the same on a quiet laptop and on a CI machine running three
other jobs, so a bound on them is a test that passes or fails for a reason: a quadratic loop or a
list built before its size was checked shows up as calls or bytes, not as a flaky timeout.
"""
from __future__ import annotations

import cProfile
import pstats
import tracemalloc
from dataclasses import dataclass
from typing import Callable

MB = 1 << 20


@dataclass(frozen=True)
class Work:
    calls: int  # Python function calls and builtin calls made while fn ran
    peak: int  # peak bytes traced by tracemalloc while fn ran
    error: BaseException | None  # what fn raised (None if it returned)
    value: object = None  # what fn returned

    def within(self, calls: int, peak_mb: int = 300) -> None:
        """Assert the bounds, with the figures in the message."""
        assert self.calls <= calls, f"{self.calls:,} calls (bound {calls:,})"
        assert self.peak <= peak_mb * MB, f"peak {self.peak / MB:.0f} MB (bound {peak_mb} MB)"


def measure(fn: Callable[[], object], memory: bool = True) -> Work:
    """Run fn once and count its calls (and, with memory=True, its peak allocation)."""
    prof = cProfile.Profile()
    tracing = memory and not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    value, error = None, None
    prof.enable()
    try:
        value = fn()
    except Exception as e:  # the caller decides whether this error was the expected one
        error = e
    finally:
        prof.disable()
        peak = tracemalloc.get_traced_memory()[1] if tracing else 0
        if tracing:
            tracemalloc.stop()
    return Work(pstats.Stats(prof).total_calls, peak, error, value)

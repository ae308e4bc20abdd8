"""Test-wide settings that keep the suite deterministic and quick on a small, busy CI machine.

- hypothesis: no deadline and no `too_slow` health check (both time the examples: wall-clock
  assertions that fail when the machine is loaded), no example database (no state carried between
  runs), derandomized (every run draws the same inputs).  Tests that pass their own settings keep
  them; this is the default.
- torch: one thread per test process.  `make test` runs two xdist workers on two cores; with torch's
  default of one thread per core they would oversubscribe the machine and each wait on the other.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("resdsl", deadline=None, database=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("resdsl")

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def pytest_configure(config) -> None:
    import sys

    if "torch" in sys.modules:  # already imported by a plugin: set it directly
        sys.modules["torch"].set_num_threads(1)

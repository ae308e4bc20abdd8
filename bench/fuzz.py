"""Long fuzz run with progress: random programs, mostly-valid programs and example mutants.

    .venv/bin/python bench/fuzz.py [N]          # N inputs per generator (default 20000)

Prints a progress line on stderr every 500 inputs and, at the end, the counts
of successes and of each error code.  Any exception other than ResdslError
is a bug: the input is saved under bench/fuzz-failures/ and the run goes on.
Uses a random seed each run (printed) so long runs explore new inputs.
"""
from __future__ import annotations

import collections
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, settings, seed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import fuzzgen  # noqa: E402
import resdsl  # noqa: E402

FAILURES = ROOT / "bench" / "fuzz-failures"


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    run_seed = random.randrange(2**32)
    print(f"fuzz: {n} inputs per generator, seed {run_seed}", file=sys.stderr)
    counts: collections.Counter = collections.Counter()
    bugs: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="resdsl-fuzz-"))
    for name, data in fuzzgen.EXAMPLE_BYTES.items():
        (tmp / name).write_bytes(data)
    start = time.time()
    done = [0]

    def tick(kind: str, outcome: str) -> None:
        counts[(kind, outcome)] += 1
        done[0] += 1
        if done[0] % 500 == 0:
            rate = done[0] / (time.time() - start)
            print(f"\r  {done[0]} inputs, {rate:.0f}/s, {len(bugs)} bugs", end="", file=sys.stderr, flush=True)

    def attempt(kind: str, label: str, fn) -> None:
        try:
            net = fn()
            tick(kind, "ok" if net is not None else "error")
        except Exception:  # a bug: keep the input and go on
            FAILURES.mkdir(exist_ok=True)
            out = FAILURES / f"{kind}-{len(bugs)}.txt"
            out.write_text(label + "\n\n" + traceback.format_exc())
            bugs.append(str(out))
            tick(kind, "BUG")

    common = dict(max_examples=n, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))

    @seed(run_seed)
    @settings(**common)
    @given(fuzzgen.program())
    def programs(src):
        attempt("program", src, lambda: fuzzgen.check_one(src))

    @seed(run_seed)
    @settings(**common)
    @given(fuzzgen.valid_program())
    def valid(src):
        attempt("valid", src, lambda: fuzzgen.check_one(src))

    @seed(run_seed)
    @settings(**common)
    @given(fuzzgen.mutant())
    def mutants(m):
        name, data = m
        f = tmp / f"mutant_{name}"
        f.write_bytes(data)
        attempt("mutant", repr(data), lambda: fuzzgen.check_file(f))

    for run in (programs, valid, mutants):
        run()
    print(file=sys.stderr)
    elapsed = time.time() - start
    print(f"{done[0]} inputs in {elapsed:.1f} s ({done[0] / elapsed:.0f}/s), {len(bugs)} bugs")
    for (kind, outcome), k in sorted(counts.items()):
        print(f"  {kind:8} {outcome:6} {k}")
    for b in bugs[:20]:
        print("  bug:", b)
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())

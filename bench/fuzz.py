"""Long fuzz run over every fuzzer registered in tests/fuzzgen.py, with a table of outcomes.

    .venv/bin/python bench/fuzz.py [N] [--seed S] [--only NAME,NAME]   # N inputs per fuzzer (default 2000)

Each input ends in one outcome: ok (a network / exit 0), diagnostic (located errors / exit 1), usage
(a one-line usage error or a missing tool / exit 2 or 3) or internal (a bug: any other exception, a
broken property, a traceback, exit 70, or an input over its budget of calls and memory).  Internal
inputs are saved under bench/fuzz-failures/ and the run goes on.  Every input is measured against the
per-input budget (RESDSL_FUZZ_BUDGET_EVERY=1).  The seed is random unless given (printed either way),
so long runs explore new inputs; with --seed S a run is repeatable.  Exit status 1 if any input was
internal.
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("RESDSL_FUZZ_BUDGET_EVERY", "1")  # before fuzzgen reads it

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import fuzzgen  # noqa: E402

FAILURES = ROOT / "bench" / "fuzz-failures"


def run_fuzzer(fz: fuzzgen.Fuzzer, n: int, run_seed: int, ws: fuzzgen.Workspace, bugs: list[str],
               counts: collections.Counter, details: collections.Counter) -> None:
    """Draw n inputs from fz and tally each one's outcome; an internal one is saved with its traceback."""

    @seed(run_seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(fz.strategy)
    def one(x):
        try:
            outcome, detail = fz.oracle(x, ws)
        except Exception:  # a bug: keep the input and go on
            FAILURES.mkdir(exist_ok=True)
            out = FAILURES / f"{fz.name.replace(':', '-')}-{len(bugs)}.txt"
            out.write_text(repr(x) + "\n\n" + traceback.format_exc())
            bugs.append(str(out))
            outcome, detail = "internal", "see " + out.name
        counts[(fz.name, outcome)] += 1
        details[(fz.name, outcome, detail)] += 1

    one()


def table(counts: collections.Counter, names: list[str]) -> list[str]:
    """One row per fuzzer, one column per outcome, and a total row."""
    cols = fuzzgen.OUTCOMES
    w = max(len("fuzzer"), *map(len, names))
    lines = [f"{'fuzzer':<{w}}  " + "  ".join(f"{c:>10}" for c in cols) + f"  {'total':>7}"]
    for name in names + ["total"]:
        row = [sum(k for (f, o), k in counts.items() if o == c and (name == "total" or f == name)) for c in cols]
        lines.append(f"{name:<{w}}  " + "  ".join(f"{v:>10}" for v in row) + f"  {sum(row):>7}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=2000, help="inputs per fuzzer (default 2000)")
    ap.add_argument("--seed", type=int, default=None, help="repeat a run (default: a random seed)")
    ap.add_argument("--only", default=None, help="comma-separated fuzzer names (default: all)")
    args = ap.parse_args()
    run_seed = args.seed if args.seed is not None else random.randrange(2**32)
    names = sorted(fuzzgen.FUZZERS) if not args.only else [s.strip() for s in args.only.split(",")]
    unknown = [s for s in names if s not in fuzzgen.FUZZERS]
    if unknown:
        ap.error(f"no fuzzer {', '.join(unknown)}; known: {', '.join(sorted(fuzzgen.FUZZERS))}")
    print(f"fuzz: {args.n} inputs per fuzzer, {len(names)} fuzzers, seed {run_seed}", file=sys.stderr)
    counts: collections.Counter = collections.Counter()
    details: collections.Counter = collections.Counter()
    bugs: list[str] = []
    ws = fuzzgen.Workspace(Path(tempfile.mkdtemp(prefix="resdsl-fuzz-")))
    start = time.time()
    for name in names:
        t = time.time()
        run_fuzzer(fuzzgen.FUZZERS[name], args.n, run_seed, ws, bugs, counts, details)
        done = sum(k for (f, _), k in counts.items() if f == name)
        print(f"  {name}: {done} inputs in {time.time() - t:.1f} s", file=sys.stderr, flush=True)
    total = sum(counts.values())
    print(f"{total} inputs in {time.time() - start:.1f} s, seed {run_seed}, {len(bugs)} internal")
    print("\n".join(table(counts, names)))
    print("\nmost frequent details (error codes, exit codes) per fuzzer:")
    for name in names:
        top = sorted(((k, o, d) for (f, o, d), k in details.items() if f == name), reverse=True)[:6]
        print(f"  {name}: " + ", ".join(f"{o}{' ' + d if d else ''} x{k}" for k, o, d in top))
    for b in bugs[:20]:
        print("  internal:", b)
    shutil.rmtree(ws.root, ignore_errors=True)
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())

"""Fuzzing: whatever a .res file or a command line holds, resdsl answers with a result, located
diagnostics or a one-line usage error -- within a per-input budget of calls and memory.

Every fuzzer registered in tests/fuzzgen.py (`@register`) runs here: grammar-aware random programs full
of mistakes, mostly-valid programs (compared against the PyTorch module built from them), byte-level
mutants of every examples/*.res, token soup for the parser, and hostile command lines for every
subcommand.  Runs are deterministic (derandomize, no example database) and small enough for CI; set
RESDSL_FUZZ_EXAMPLES=N to run N inputs per fuzzer, or run `make fuzz` (bench/fuzz.py: a long run with
fresh seeds and a table of outcomes per fuzzer).
"""
from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, given, settings

import fuzzgen
import resdsl

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return fuzzgen.Workspace(tmp_path_factory.mktemp("fuzz"))


@pytest.mark.parametrize("name", sorted(fuzzgen.FUZZERS))
def test_fuzzer(name, workspace):
    """Each input: an outcome (ok / diagnostic / usage), never a bug; the run as a whole reaches what the
    fuzzer is for (its `expect`: many error codes, mostly successes, every exit class)."""
    fz = fuzzgen.FUZZERS[name]
    counts: collections.Counter = collections.Counter()
    fuzzgen.reset_budget_count()

    @settings(max_examples=fuzzgen.fuzz_examples(fz.examples), **SETTINGS)
    @given(fz.strategy)
    def run(x):
        outcome, detail = fz.oracle(x, workspace)
        assert outcome in fuzzgen.OUTCOMES[:3], outcome
        counts[(outcome, detail)] += 1

    run()
    if fz.expect:
        fz.expect(counts)


def test_registry_covers_each_class_of_input():
    assert {"program", "valid", "mutant", "soup", "cli:check", "cli:render"} <= set(fuzzgen.FUZZERS)
    assert {f"cli:{name}" for name in fuzzgen.subcommands() if name != "lsp"} <= set(fuzzgen.FUZZERS)  # every command line
    for fz in fuzzgen.FUZZERS.values():
        assert fz.doc and fz.examples > 0


def test_budget_catches_runaway_work(monkeypatch):
    """The per-input budget is real: a loop that the limits allow but the budget does not is a failure."""
    src = "network n() {\n    input x: [3, 8, 8]\n    for i in range(2000) {\n        relu\n    }\n}\n"
    monkeypatch.setattr(fuzzgen, "MAX_CALLS", 10_000)
    with pytest.raises(AssertionError, match="calls"):
        fuzzgen.within_budget(lambda: resdsl.loads(src), measured=True)
    outcome, detail, net = fuzzgen.within_budget(lambda: resdsl.loads(src.replace("2000", "3")), measured=True)
    assert (outcome, detail, len(net.nodes)) == ("ok", "", 4)

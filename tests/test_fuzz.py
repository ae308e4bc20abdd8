"""Fuzzing: whatever a .res file holds, resdsl answers with located diagnostics or a correct network.

Four generators (tests/fuzzgen.py): grammar-aware random programs full of
mistakes, mostly-valid programs (compared against the PyTorch module built
from them), byte-level mutants of every examples/*.res, and token soup for
the parser.  Runs are deterministic (derandomize, no example database); set
RESDSL_FUZZ_EXAMPLES=N to run N examples per test (`make fuzz`), or use
bench/fuzz.py for a long run with progress.
"""
from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzgen
import resdsl
from resdsl.parser import parse

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

try:  # the PyTorch backend; without it the shape/parameter cross-check cannot run
    import torch

    from resdsl.backends import pytorch as _backend  # noqa: F401
    HAVE_TORCH = True
except ImportError:  # pragma: no cover
    HAVE_TORCH = False


@settings(max_examples=fuzzgen.fuzz_examples(500), **SETTINGS)
@given(fuzzgen.program())
def test_random_programs_succeed_or_report_located_errors(src):
    net = fuzzgen.check_one(src)
    if net is not None and HAVE_TORCH:
        compare_with_torch(net)


@settings(max_examples=fuzzgen.fuzz_examples(1000), **SETTINGS)
@given(fuzzgen.mutant())
def test_mutated_examples_succeed_or_report_located_errors(tmp_path_factory, m):
    # Mutants sit beside copies of all examples so that their imports resolve.
    d = tmp_path_factory.getbasetemp() / "mutants"
    if not d.exists():
        d.mkdir()
        for name, data in fuzzgen.EXAMPLE_BYTES.items():
            (d / name).write_bytes(data)
    name, data = m
    f = d / f"mutant_{name}"
    f.write_bytes(data)
    fuzzgen.check_file(f)


TOKENS = st.sampled_from(["network", "block", "n", "(", ")", "{", "}", "[", "]", ",", ":", "=", "->", "\n", ";",
                          "input", "x:", "output", "from", "for", "in", "if", "else", "residual", "branch",
                          "shortcut", "1", "2.5", "\"s\"", "+", "-", "*", "**", "//", "not", "and", "{i}:", "#c",
                          "conv", "relu", "import", "true", "none", "\\\n", "'", "\"", "é", "\x00", "\t", "1e999"])


@settings(max_examples=fuzzgen.fuzz_examples(2000), **SETTINGS)
@given(st.lists(TOKENS, max_size=40).map(" ".join))
def test_token_soup_parses_or_reports_located_errors(src):
    try:
        parse(src, "<soup>")
    except resdsl.ResdslError as e:
        fuzzgen.check_error(e)


def _outputs(y) -> list:
    if isinstance(y, dict):
        return list(y.values())
    if isinstance(y, (tuple, list)):
        return list(y)
    return [y]


def compare_with_torch(net: resdsl.Network) -> None:
    """The static parameter/buffer counts and output shapes equal those of the built torch module."""
    if net.param_count > 2_000_000 or any(n.shape and _numel(n.shape) > 1_000_000 for n in net.nodes):
        return  # too big to build quickly
    torch.set_num_threads(1)
    model = net.to_torch(seed=0)
    # Counts: the static ones must equal what torch allocated.
    assert sum(p.numel() for p in model.parameters()) == net.param_count
    assert sum(b.numel() for b in model.buffers()) == net.buffer_count
    # Shapes: run a batch of 2 and compare every output with the static shape.
    model.eval()
    with torch.no_grad():
        ys = _outputs(model(*[torch.randn(2, *s) for s in net.inputs.values()]))
    assert [tuple(y.shape[1:]) for y in ys] == [tuple(s) for s in net.outputs.values()]


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@pytest.mark.skipif(not HAVE_TORCH, reason="the PyTorch backend is not importable")
@settings(max_examples=fuzzgen.fuzz_examples(300), **SETTINGS)
@given(fuzzgen.valid_program())
def test_valid_programs_match_the_torch_module(src):
    net = fuzzgen.check_one(src)
    if net is not None:
        compare_with_torch(net)


def test_generators_reach_both_outcomes():
    """The fuzzers are only useful if they reach many kinds of error, and successes that get compared."""
    outcomes: dict[str, dict[str, int]] = {"program": {}, "valid": {}}

    def tally(kind: str, src: str) -> None:
        try:
            resdsl.loads(src)
            key = "ok"
        except resdsl.ResdslError as e:
            key = e.first.code
        outcomes[kind][key] = outcomes[kind].get(key, 0) + 1

    @settings(max_examples=100, **SETTINGS)
    @given(fuzzgen.program())
    def run_programs(src):
        tally("program", src)

    @settings(max_examples=50, **SETTINGS)
    @given(fuzzgen.valid_program())
    def run_valid(src):
        tally("valid", src)

    run_programs()
    run_valid()
    assert len(outcomes["program"]) >= 8, outcomes
    assert outcomes["valid"].get("ok", 0) >= 40, outcomes

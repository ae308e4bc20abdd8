"""Network contracts: the `assert`s that name network totals, checked on the finished graph.

Reads `ir.Graph.contracts` (each an assert's expressions and the variables it
saw) and the graph's totals: `params` and `buffers` from the nodes, `macs`
from the cost pass (torchvision convention, as `resdsl summary` prints it),
run only when some assert reads it.  Writes nothing; raises `ResdslError`
(E042 per failed assert, all of them together).
"""
from __future__ import annotations

from .diagnostics import ResdslError, did_you_mean, error
from .evaluate import Evaluator, check_assertion, names_in
from .ir import Graph
from .span import Span


def totals(graph: Graph) -> dict[str, int]:
    """The values of `params`, `buffers` and (when an assert reads it) `macs`."""
    out = {"params": graph.param_count, "buffers": graph.buffer_count}
    if any("macs" in names_in(c.test) | names_in(c.message) for c in graph.contracts):
        from .analysis.cost import analyze  # a later stage, needed only for `macs`
        out["macs"] = analyze(graph).total
    return out


def check_contracts(graph: Graph) -> None:
    """Evaluate every deferred assert of `graph`; raise all failures as one `ResdslError`."""
    if not graph.contracts:
        return
    known = totals(graph)
    diags = []
    for c in graph.contracts:
        env = {**known, **c.env}

        def lookup(name: str, span: Span, env=env) -> object:
            if name in env:
                return env[name]
            raise error("E010", f"undefined name `{name}`", span, hint=did_you_mean(name, env))

        try:
            check_assertion(Evaluator(lookup, lambda env=env: list(env)), c.test, c.message)
        except ResdslError as e:
            diags.extend(e.diagnostics)
    if diags:
        raise ResdslError(diags)

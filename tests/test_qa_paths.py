"""The linear path DP (resdsl/analysis/paths.py: dominators, segments in series, powers of equal segments)
against the plainest count there is: per (input, output) pair, each node's length polynomial is the sum
over its input slots of the producer's polynomial shifted by the node's and the slot's weights -- no
segments, no powers, no sharing -- on random programs (tests/qa_programs.py) and a third of the zoo."""
from collections import Counter

import pytest

import resdsl
from qa_programs import program
from resdsl.analysis.paths import count_paths, edge_weights
from resdsl.models import get_network, list_models


def _plain(g, length: str) -> dict[int, int]:
    w, sw = edge_weights(g, length)  # the definition of a length (docs/paths.md); the counting is ours
    total: Counter = Counter()
    for inode in g.inputs.values():
        memo: dict[int, Counter] = {}
        order = sorted({i for n in g.nodes for i in n.inputs} | set(g.outputs.values()))
        for v in order:  # nodes are numbered in topological order: producers first
            if v == inode:
                memo[v] = Counter({0: 1})
                continue
            r: Counter = Counter()
            for s, u in enumerate(g.nodes[v].inputs):
                extra = w[v] + (sw[v][s] if sw[v] else 0)
                for k, c in memo.get(u, {}).items():
                    r[k + extra] += c
            memo[v] = r
        for onode in g.outputs.values():
            total.update(memo.get(onode, {}))
    return {k: v for k, v in total.items() if v}


def _nets() -> list:
    out = []
    for seed in range(150):
        for extras in (False, True):
            try:
                out.append((f"seed {seed}{' extras' if extras else ''}", resdsl.loads(program(seed, extras))))
            except resdsl.ResdslError:
                pass
    return out


@pytest.mark.parametrize("length", ["blocks", "layers"])
def test_path_counts_of_random_programs_equal_the_plain_count(length):
    nets = _nets()
    assert len(nets) >= 100
    for name, net in nets:
        counted = count_paths(net.graph, length)
        plain = _plain(net.graph, length)
        assert counted.total == sum(plain.values()), name
        assert {k: v for k, v in counted.by_length.items() if v} == plain, name


@pytest.mark.parametrize("name", list_models()[::3])
def test_path_counts_of_zoo_models_equal_the_plain_count(name):
    g = get_network(name).graph
    for length in ("blocks", "layers"):
        counted = count_paths(g, length)
        plain = _plain(g, length)
        assert counted.total == sum(plain.values()) and {k: v for k, v in counted.by_length.items() if v} == plain

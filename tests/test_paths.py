"""Exact path counting: closed forms, brute-force enumeration on random DAGs, the CLI."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest

import resdsl
from resdsl.analysis.paths import branches, count_paths, cut_nodes, live_inputs, on_pair

ROOT = Path(__file__).resolve().parents[1]


def chain(K: int, body: str = "relu; linear(D)", D: int = 8) -> resdsl.Network:
    return resdsl.loads(f"""
network chain(K = {K}, D = {D}) {{
  input x: [D]
  for i in range(K) {{
    residual {{ {body} }}
  }}
  output y
}}""")


def branch_edges(g) -> set[tuple[int, int]]:
    """docs/paths.md, written out independently: at a region's merge its branch slots, at any other
    add/concat the first operand; every other merge input is a skip."""
    region_slots = {r.merge: set(r.branch_slots) for r in g.regions}
    return {(n.id, s) for n in g.nodes if n.op in ("add", "concat") for s in region_slots.get(n.id, {0})}


def all_paths(net: resdsl.Network):
    """Every input->output edge path of the MultiDiGraph (parallel edges = separate paths), per output name."""
    g = net.graph
    mg = g.to_networkx()
    for iname, i in g.inputs.items():
        for oname, o in g.outputs.items():
            if i == o:
                yield iname, oname, []
                continue
            for ep in nx.all_simple_edge_paths(mg, i, o):
                yield iname, oname, ep


def path_length(g, ep, length: str) -> int:
    if length == "blocks":
        br = branch_edges(g)
        return sum((v, key) in br for _, v, key in ep)
    return sum(g.nodes[v].spec.weighted for _, v, _ in ep)


def brute_force(net: resdsl.Network, length: str, removed=frozenset()) -> Counter:
    """Histogram of path lengths by enumeration (edges in `removed`, (node, slot), are left out)."""
    g = net.graph
    br = branch_edges(g)
    hist: Counter = Counter()
    for _, _, ep in all_paths(net):
        if any((v, key) in removed for _, v, key in ep):
            continue
        if length == "blocks":
            hist[sum((v, key) in br for _, v, key in ep)] += 1
        else:
            hist[sum(g.nodes[v].spec.weighted for _, v, _ in ep)] += 1
    return hist


def poly_mul(a: list[int], b: list[int]) -> list[int]:
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


# ------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("K", [3, 4, 5])
def test_chain_is_binomial(K):
    net = chain(K)
    for length in ("blocks", "layers"):  # one linear per branch: both lengths agree
        r = count_paths(net.graph, length)
        assert r.total == 2 ** K
        assert r.by_length == {k: math.comb(K, k) for k in range(K + 1)}
        assert r.mean_length == K / 2
        assert r.median_length == K // 2


def test_textbook_f1_on_8_of_16_paths():
    # UDL fig. 11.4: with four residual blocks there are 16 paths, and f1 lies on 8 of them.
    r = chain(4).paths()
    assert r.total == 16
    assert [c for _, c in r.blocks] == [8, 8, 8, 8]
    assert r.band_share(0, 0) == 1 / 16 and r.band_share(2, 2) == 6 / 16 and r.band_share(0, 4) == 1.0


def test_layers_length_counts_convs():
    # two weighted layers per branch: every length doubles
    r = count_paths(chain(5, "linear(D); relu; linear(D)").graph, "layers")
    assert r.by_length == {2 * k: math.comb(5, k) for k in range(6)}


def test_empty_branch_and_duplicate_slots():
    net = resdsl.loads("""
network n() {
  input x: [4]
  residual { }
  add(x, x)
  output y
}""")
    # residual { } is add(x, x): 2 paths (lengths 0 and 1); then add(cur, x, x) enters its first operand
    # (a branch: lengths 1 and 2) and skips through the two named ones (length 0 each)
    r = net.paths()
    assert r.total == 4
    assert r.by_length == {0: 2, 1: 1, 2: 1} == brute_force(net, "blocks")


def test_resnet50_closed_form():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=50)
    r = net.paths("blocks")
    assert r.total == 2 ** 16
    assert r.by_length == {k: math.comb(16, k) for k in range(17)}
    # layers: stem conv + fc on every path; 12 identity blocks (0 or 3 convs), 4 projection blocks (1 or 3)
    expected = [0, 0, 1]
    for _ in range(12):
        expected = poly_mul(expected, [1, 0, 0, 1])
    for _ in range(4):
        expected = poly_mul(expected, [0, 1, 0, 1])
    r = net.paths("layers")
    assert r.by_length == {k: c for k, c in enumerate(expected) if c}
    assert r.total == sum(expected)


def test_densenet_block_chain():
    net = resdsl.loads("""
network d() {
  input x: [4, 8, 8]
  for i in range(6) { dense { batchnorm(); relu; conv(2, 3, padding=1) } }
  output y
}""")
    r = net.paths()
    assert r.total == 64 and r.by_length == {k: math.comb(6, k) for k in range(7)}
    assert r.by_length == brute_force(net, "blocks")


def test_unet_long_skips_and_two_outputs():
    net = resdsl.loads("""
network u() {
  input x: [2, 16, 16]
  conv(4, 3, padding=1) -> e1
  maxpool(2)
  conv(4, 3, padding=1) -> e2
  maxpool(2)
  conv(4, 3, padding=1)
  upsample(scale_factor=2)
  concat(e2)
  conv(4, 3, padding=1) -> d2
  output aux
  upsample(scale_factor=2)
  concat(e1)
  conv(4, 3, padding=1)
  output y
}""")
    for length in ("blocks", "layers"):
        r = count_paths(net.graph, length)
        assert r.by_length == brute_force(net, length)
    # closed form: to aux: 2 paths; to y: (2 paths to d2) + 1 (e1 skip) = 3
    assert net.paths().total == 5


def test_ten_thousand_blocks_exact():
    net = chain(10_000, D=2)
    r = net.paths()
    assert r.total == 2 ** 10_000
    assert len(r.by_length) == 10_001
    for k in (0, 1, 2, 17, 4999, 5000, 9999, 10_000):
        assert r.by_length[k] == math.comb(10_000, k)
    assert sum(r.by_length.values()) == r.total
    assert r.mean_length == 5000.0 and r.median_length == 5000
    assert r.blocks[0][1] == 2 ** 9999


# ------------------------------------------------------------------ random DAGs vs brute force


def random_program(rng: random.Random, D: int = 4) -> str:
    """A random chain of residual / dense / parallel / nested blocks with long skips and extra outputs."""
    lines = ["network r() {", f"  input x: [{D}]"]
    two_inputs = rng.random() < 0.3
    if two_inputs:
        lines.append(f"  input z: [{D}]")
    names: list[str] = []
    outputs = 0

    def body(depth: int) -> str:
        parts = []
        for _ in range(rng.randint(0, 2)):
            parts.append(block(depth + 1) if depth < 2 and rng.random() < 0.4 else rng.choice(["relu", f"linear({D})"]))
        return "; ".join(parts)

    def block(depth: int) -> str:
        kind = rng.choice(["residual", "residual", "custom", "dense", "padd", "pcat"])
        if kind == "residual":
            return f"residual {{ {body(depth)} }}"
        if kind == "custom":
            return f"residual {{ {body(depth)} }} shortcut {{ linear({D}) }}"
        if kind == "dense":
            return f"dense {{ linear(2) }}; linear({D})"
        n = rng.randint(2, 3)
        merge = "add" if kind == "padd" else "concat"
        branches = "; ".join(f"branch {{ {body(depth)} }}" for _ in range(n))
        tail = "" if merge == "add" else f"; linear({D})"
        return f"parallel(merge=\"{merge}\") {{ {branches} }}{tail}"

    for i in range(rng.randint(2, 6)):
        r = rng.random()
        if r < 0.15:
            names.append(f"t{i}")
            lines.append(f"  linear({D}) -> t{i}")
        elif r < 0.24 and names:
            lines.append(f"  add({', '.join(rng.choice(names) for _ in range(rng.randint(1, 2)))})")
        elif r < 0.3 and names:  # a concat skip: the linear over it sums its inputs, so paths split
            lines.append(f"  concat({rng.choice(names)}); linear({D})")
        elif r < 0.38:
            lines.append(f"  output o{outputs}")
            outputs += 1
        else:
            lines.append("  " + block(0))
    if two_inputs:
        lines.append("  add(z)")
    lines += ["  output y", "}"]
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(40))
def test_random_dags_match_brute_force(seed):
    src = random_program(random.Random(seed))
    net = resdsl.loads(src)
    for length in ("blocks", "layers"):
        r = count_paths(net.graph, length)
        expected = brute_force(net, length)
        assert r.by_length == dict(expected), src
        assert r.total == sum(expected.values())
        assert r.length_sum == sum(k * c for k, c in expected.items())


@pytest.mark.parametrize("seed", [1234, 7, 21])
def test_blocks_through_match_brute_force(seed):
    net = resdsl.loads(random_program(random.Random(seed)))
    g = net.graph
    counts = Counter()
    for _, _, ep in all_paths(net):
        for _, v, key in ep:
            counts[(v, key)] += 1
    bs = branches(g)
    assert {(b.merge, b.slot) for b in bs} == branch_edges(g)
    assert net.paths().blocks == [(b.name, counts[(b.merge, b.slot)]) for b in bs]


@pytest.mark.parametrize("seed", range(12))
def test_cut_nodes_are_the_nodes_on_every_path(seed):
    net = resdsl.loads(random_program(random.Random(seed)))
    g = net.graph
    ins = live_inputs(g)
    for iname, i in g.inputs.items():
        for oname, o in g.outputs.items():
            eps = [ep for a, b, ep in all_paths(net) if (a, b) == (iname, oname)]
            on = on_pair(g, ins, i, o)
            assert [v for v in range(len(g.nodes)) if on[v]] == sorted({i} | {v for ep in eps for _, v, _ in ep}
                                                                       if eps else set())
            if eps:
                common = set.intersection(*({i} | {v for _, v, _ in ep} for ep in eps))
                assert cut_nodes(ins, on, i, o) == sorted(common)


# ------------------------------------------------------------------ issue 12: graphs that are not chains


SMALL = {
    # name: (source body, expected histogram by blocks)
    "named add skip": ("linear(D) -> a\n  relu; linear(D)\n  add(a)", {0: 1, 1: 1}),
    "nested residuals": ("residual { relu; residual { linear(D) }; residual { linear(D) } }", {0: 1, 1: 1, 2: 2, 3: 1}),
    "long skip around three blocks": ("linear(D) -> a\n  for i in range(3) { residual { linear(D) } }\n  add(a)",
                                      {0: 1, 1: 1, 2: 3, 3: 3, 4: 1}),
    "parallel add": ('parallel(merge="add") { branch { linear(D) }; branch { relu }; branch { } }', {1: 3}),
    "concat skip": ("linear(D) -> a\n  relu\n  concat(a)\n  linear(D)", {0: 1, 1: 1}),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_graphs(name):
    body, hist = SMALL[name]
    net = resdsl.loads(f"network n(D = 4) {{\n  input x: [D]\n  {body}\n  output y\n}}")
    r = net.paths()
    assert r.by_length == hist == dict(brute_force(net, "blocks"))
    assert r.mean_length == sum(k * c for k, c in hist.items()) / sum(hist.values())


TWO_INPUTS = """
network n(D = 4) {
  input x: [D]
  input z: [D]
  for i in range(3) { residual { linear(D) } }
  add(z)
  residual { linear(D) }
  output y
}"""


def test_two_inputs_each_pair_counted():
    net = resdsl.loads(TWO_INPUTS)
    r = net.paths()
    # x: 2^3 ways through the chain, then add(z) (first operand: +1), then 2 ways; z: skip into add, 2 ways
    assert r.total == 16 + 2 == sum(brute_force(net, "blocks").values())
    assert r.by_length == dict(brute_force(net, "blocks"))


def test_unet_example_lengths():
    # each decoder concat enters its first operand (the deeper path) or skips through the encoder's map
    net = resdsl.load(ROOT / "examples/unet.res", size=188)
    r = net.paths()
    assert r.total == 5 and r.by_length == {0: 1, 1: 1, 2: 1, 3: 1, 4: 1} == dict(brute_force(net, "blocks"))
    assert [c for _, c in r.blocks] == [1, 2, 3, 4]  # up1's first operand comes from the bottom: 1 path
    assert r.mean_length == 2.0


def test_lengths_of_a_path_sum_to_length_sum():
    net = resdsl.loads(random_program(random.Random(5)))
    r = net.paths("layers")
    assert r.length_sum == sum(path_length(net.graph, ep, "layers") for _, _, ep in all_paths(net))


@pytest.mark.parametrize("wrap", ["chain", "long skip", "nested long skips"])
def test_decomposition_leaves_only_small_flat_parts(wrap, monkeypatch):
    # linear work, deterministically: the polynomial DP only ever runs on parts of at most SMALL nodes,
    # and each node is in one part (a long skip around 3,000 blocks used to be one 9,000-node DP)
    import resdsl.analysis.paths as paths_mod
    body = "for i in range(K) { residual { relu; linear(D) } }"
    if wrap == "long skip":
        body = f"linear(D) -> a\n  {body}\n  add(a)"
    elif wrap == "nested long skips":
        body = f"linear(D) -> a\n  linear(D) -> b\n  {body}\n  add(b)\n  add(a)"
    net = resdsl.loads(f"network c(K = 3000, D = 2) {{\n  input x: [D]\n  {body}\n  output y\n}}")
    sizes = []
    real = paths_mod._flat

    def counted(ins, member, a, b, interior, *rest):
        sizes.append(len(interior) + 1)
        return real(ins, member, a, b, interior, *rest)
    monkeypatch.setattr(paths_mod, "_flat", counted)
    r = paths_mod.count_paths(net.graph)
    assert max(sizes) <= paths_mod.SMALL and sum(sizes) <= len(net.graph.nodes)
    assert r.total == 2 ** 3000 + (wrap != "chain") + (wrap == "nested long skips")


def test_long_chain_memory():
    # issue 14: `paths` on 50,000 blocks took 1.9 GB, big integers kept per node.  The histogram itself (every
    # C(K, k)) is Theta(K^2) bits; nothing of that size may be kept beside it.  (50,000 blocks: bench/.)
    import tracemalloc
    K = 12_000  # the old code peaked at 86 MB here, 6x the histogram; now 24 MB (bench/: 50,000 blocks)
    net = resdsl.loads(f"network c(K = {K}) {{\n  input x: [2]\n  for i in range(K) {{ residual {{ }} }}\n  output y\n}}")
    tracemalloc.start()
    try:
        r = count_paths(net.graph)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.total == 2 ** K and r.by_length[K // 2] == math.comb(K, K // 2)
    distinct = {id(c): c for c in r.by_length.values()}  # C(K, k) and C(K, K - k) may be one object
    hist_bytes = sum(sys.getsizeof(c) for c in distinct.values())
    assert peak < 2 * hist_bytes + 5e6, (peak, hist_bytes)


# ------------------------------------------------------------------ the unraveled diagram draws the same paths


def _lane_histogram(d) -> dict[int, int]:
    """Paths per length as the picture shows them: lanes per length cluster, or the fan's lane counts."""
    if any(c.id == "cluster_lengths" for c in d.clusters):
        out = {}
        for n in d.nodes:
            if n.cluster == "cluster_lengths":
                lo = int(n.id.split("_")[1])
                out[lo] = n.repeat
        return {k: c for k, c in out.items() if c}
    sums = {n.id for n in d.nodes if n.id.startswith("sum")}
    by_cluster = Counter(d.node(e.src).cluster for e in d.edges if e.dst in sums)
    return {int(c.removeprefix("cluster_len")): k for c, k in by_cluster.items()}


@pytest.mark.parametrize("seed", range(25))
def test_unraveled_diagram_draws_every_path(seed, monkeypatch):
    from resdsl.render import diagram
    import resdsl.render.unravel as unravel
    net = resdsl.loads(random_program(random.Random(seed)))
    expected = brute_force(net, "blocks")
    d = diagram(net, "unraveled")
    assert unravel.drawn_paths(d) == sum(expected.values())
    if sum(expected.values()) <= unravel.MAX_LANES:
        assert _lane_histogram(d) == dict(expected)
        labels = {c.id: c.label for c in d.clusters}
        for k, c in expected.items():
            assert labels[f"cluster_len{k}"] == f"length {k}: {c} path{'s' if c != 1 else ''}"
    # the fan, for any size: forced here by allowing no lanes
    monkeypatch.setattr(unravel, "MAX_LANES", 0)
    fan = diagram(net, "unraveled")
    assert unravel.drawn_paths(fan) == sum(expected.values())
    assert _lane_histogram(fan) == dict(expected)  # (these small networks have fewer than MAX_BINS lengths)
    ids = [n.id for n in fan.nodes]
    assert len(ids) == len(set(ids)) and all(e.src in ids and e.dst in ids for e in fan.edges)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_unraveled_small_graphs(name):
    from resdsl.render import diagram
    from resdsl.render.unravel import drawn_paths
    body, hist = SMALL[name]
    net = resdsl.loads(f"network n(D = 4) {{\n  input x: [D]\n  {body}\n  output y\n}}")
    d = diagram(net, "unraveled")
    assert drawn_paths(d) == sum(hist.values()) and _lane_histogram(d) == hist


def test_unraveled_two_inputs_both_drawn():
    from resdsl.render import diagram
    from resdsl.render.unravel import drawn_paths
    net = resdsl.loads(TWO_INPUTS)
    d = diagram(net, "unraveled")
    assert drawn_paths(d) == 18
    lanes_from = Counter(e.src for e in d.edges if e.kind == "lane" and e.src.startswith("in_"))
    assert sorted(lanes_from.values()) == [2, 16]  # every lane starts at its own input


def test_unraveled_big_zoo_networks():
    from resdsl.render import diagram, to_dot
    from resdsl.render.unravel import drawn_paths
    r110 = resdsl.load(ROOT / "examples/cifar_resnet.res", depth=110)
    d = diagram(r110, "unraveled")
    assert drawn_paths(d) == 2 ** 54
    assert _lane_histogram(d) == {k: math.comb(54, k) for k in range(55)}  # one lane per length
    assert "1.801e16 paths" in to_dot(r110, level="unraveled")
    dense = resdsl.load(ROOT / "examples/densenet.res")
    d = diagram(dense, "unraveled")
    assert drawn_paths(d) == dense.paths().total == 2 ** 58
    unet = resdsl.load(ROOT / "examples/unet.res")
    d = diagram(unet, "unraveled")
    assert drawn_paths(d) == 5 and _lane_histogram(d) == {k: 1 for k in range(5)}


# ------------------------------------------------------------------ CLI


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resdsl", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_json_and_band(tmp_path):
    p = run_cli("paths", "examples/resnet.res", "--set", "depth=18", "--band", "3:5", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["total"] == 256
    assert out["by_length"] == {str(k): math.comb(8, k) for k in range(9)}
    assert out["band_share"] == sum(math.comb(8, k) for k in (3, 4, 5)) / 256
    assert [b["paths_through"] for b in out["blocks"]] == [128] * 8
    assert out["mean_length"] == 4.0


@pytest.mark.parametrize("n", [2 ** 54, 2 ** 10_000, 10 ** 24, 10 ** 24 - 1, 10 ** 30 - 1, 10 ** 30, 7 * 10 ** 99])
def test_fmt_big_exponent_is_exact(n):
    from resdsl.analysis.paths import fmt_big
    s = str(n)
    text = fmt_big(n)
    if len(s) <= 24:
        assert text == f"{n:,}"
    else:
        assert text.endswith(f"e{len(s) - 1} ({len(s)} digits)") and text[0] == s[0]


def test_cli_text_and_plot(tmp_path):
    png = tmp_path / "h.png"
    p = run_cli("paths", "examples/resnet.res", "--set", "depth=34", "--plot", str(png))
    assert p.returncode == 0, p.stderr
    assert "65,536 input->output paths" in p.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_cli("paths", "examples/resnet.res", "--band", "x").returncode == 2


def test_long_chain_with_two_inputs_and_an_early_output():
    # no node lies on every path of every (input, output) pair here: each pair is decomposed separately
    net = resdsl.loads("""
network c(K = 3000, D = 2) {
  input x: [D]
  input z: [D]
  linear(D)
  output aux
  for i in range(K) { residual { relu; linear(D) } }
  add(z)
  output y
}""")
    r = net.paths()
    K = 3000
    assert r.total == 2 ** K + 2  # x -> aux, z -> y, and 2^K from x through the chain
    # add(z) enters its first operand (the chain: one block more) and skips in z
    assert r.by_length[0] == 2 and r.by_length[1] == 1 and r.by_length[2] == K
    assert r.by_length[K // 2 + 1] == math.comb(K, K // 2)
    assert sum(r.by_length.values()) == r.total


# ------------------------------------------------------------------ the shape memo and the one-sweep cuts (issue 14)


def interleaved(K: int, step_a: str, block_b: str) -> resdsl.Network:
    """Two chains from x whose node ids alternate (`step_a` must end in `-> a`), added at the end."""
    return resdsl.loads(f"""
network il(K = {K}, D = 2) {{
  input x: [D]
  linear(D) -> a
  from x
  linear(D) -> b
  for i in range(K) {{
    from a
    {step_a}
    from b
    {block_b} -> b
  }}
  from a
  add(b)
  output y
}}""")


PLAIN = ("residual { relu } -> a", "residual { relu; linear(D) }")
# chain a alternates two block kinds of three nodes; chain b's six nodes follow each of them
MIXED = ("if i % 2 == 0 { residual { relu; relu } -> a } else { residual { relu -> t; add(t) } -> a }",
         "residual { relu; relu; relu; relu; relu }")


@pytest.mark.parametrize("K", [2, 4, 40])
def test_interleaved_chains_of_two_kinds(K):
    # the on-nodes following a block of chain a are chain b's, all alike: a key made of them would be one key
    # (40 blocks: each chain is more than SMALL nodes, so it is decomposed, block by block)
    net = interleaved(K, *MIXED)
    chain_a = [1]
    for i in range(K):
        chain_a = poly_mul(chain_a, [1, 1] if i % 2 == 0 else [1, 1, 1])
    want = poly_mul([0, 1], chain_a)  # the final add enters chain a or skips in chain b
    for k, c in enumerate(math.comb(K, j) for j in range(K + 1)):
        want[k] += c
    assert net.paths().by_length == {k: c for k, c in enumerate(want) if c}
    if K <= 4:
        assert net.paths().by_length == dict(brute_force(net, "blocks"))


def test_merges_with_equal_edges_and_other_branch_slots_are_counted_apart():
    # residual { relu } merges (skip, branch); `from t; add(r)` merges the same two tensors in the same order,
    # but its first operand is the branch: same edges, other branch slot, other paths through each branch
    rng = random.Random(5)
    for K in (9, 40):  # 40 blocks: more than SMALL nodes, decomposed into blocks
        body = "\n  ".join(rng.choice(["residual { relu }", "-> t; relu -> r; from t; add(r)"]) for _ in range(K))
        net = resdsl.loads(f"network mx() {{\n  input x: [2]\n  {body}\n  output y\n}}")
        bs = branches(net.graph)
        assert {b.slot for b in bs} == {0, 1} and len(bs) == K
        assert net.paths().blocks == [(b.name, 2 ** (K - 1)) for b in bs]  # each block's branch: half the paths
        if K == 9:
            counts = Counter()
            for _, _, ep in all_paths(net):
                for _, v, key in ep:
                    counts[(v, key)] += 1
            assert [counts[(b.merge, b.slot)] for b in bs] == [2 ** (K - 1)] * K


@pytest.mark.parametrize("K", [1, 2, 4])
def test_interleaved_chains_match_brute_force(K):
    # two chains whose node ids alternate: the blocks of one are not all the on-nodes between its cuts, so
    # they must not be keyed by the pair's per-node codes (the other chain's nodes lie in between)
    net = interleaved(K, *PLAIN)
    for length in ("blocks", "layers"):
        r = count_paths(net.graph, length)
        assert r.by_length == dict(brute_force(net, length))


def test_interleaved_chains_closed_form():
    K = 300
    r = interleaved(K, *PLAIN).paths()
    # the merge enters chain a (+1) or skips in chain b: x (1 + x)^K + (1 + x)^K = (1 + x)^(K + 1)
    assert r.by_length == {k: math.comb(K + 1, k) for k in range(K + 2)}
    # every block's branch: 2^(K-1) paths; the final add's first operand: all 2^K paths through chain a
    assert [c for _, c in r.blocks] == [2 ** (K - 1)] * (2 * K) + [2 ** K]


# block kinds of three nodes each (two relus or a relu and an add, then a merge), wired differently
KINDS = {"plain": ("residual { relu; relu }", [1, 1]),
         "doubled": ("residual { relu -> t; add(t) }", [1, 1, 1]),  # inside, add(t) enters its first operand
         "pair": ('parallel(merge="add") { branch { relu }; branch { relu } }', [0, 2]),
         "nested": ("residual { relu; residual { relu } }", [1, 1, 1])}  # four nodes, doubled's polynomial


@pytest.mark.parametrize("seed", range(6))
def test_blocks_of_one_size_and_different_wiring_are_counted_apart(seed, monkeypatch):
    import resdsl.analysis.paths as paths_mod
    rng = random.Random(seed)
    kinds = [rng.choice(sorted(KINDS)) for _ in range(rng.randint(20, 60))]
    body = "\n  ".join(KINDS[k][0] for k in kinds)
    net = resdsl.loads(f"network m() {{\n  input x: [2]\n  {body}\n  output y\n}}")
    for k in set(kinds):  # each kind's own polynomial, by brute force on a one-block network
        one = resdsl.loads(f"network one() {{\n  input x: [2]\n  {KINDS[k][0]}\n  output y\n}}")
        assert dict(brute_force(one, "blocks")) == {j: c for j, c in enumerate(KINDS[k][1]) if c}
    want = [1]
    for k in kinds:
        want = poly_mul(want, KINDS[k][1])
    dps = []
    real = paths_mod._flat
    monkeypatch.setattr(paths_mod, "_flat", lambda *args: dps.append(1) or real(*args))
    r = net.paths()
    assert r.by_length == {k: c for k, c in enumerate(want) if c}
    assert len(dps) <= 2 * len(set(kinds))  # one DP per kind (the first block of a chain may differ once)


@pytest.mark.parametrize("seed", range(5))
def test_lesioned_chain_closed_form(seed):
    from resdsl.analysis.lesion import deletable, paths_after_lesion
    K = 60
    g = chain(K, D=2).graph
    units = deletable(g)
    cut = sorted(random.Random(seed).sample(range(K), random.randint(1, K - 1)))
    r = paths_after_lesion(g, [units[j] for j in cut])
    left = K - len(cut)  # a deleted branch leaves its skip only: factor 1 instead of 1 + x
    assert r.by_length == {k: math.comb(left, k) for k in range(left + 1)}
    assert [c for _, c in r.blocks] == [0 if j in cut else 2 ** (left - 1) for j in range(K)]


@pytest.mark.parametrize("wrap", ["long skip", "nested long skips", "two chains in parallel"])
def test_chains_inside_other_structure_closed_form(wrap):
    K = 400
    blocks = "for i in range(K) { residual { relu; linear(D) } }"
    body = {"long skip": f"linear(D) -> a\n  {blocks}\n  add(a)",
            "nested long skips": f"linear(D) -> a\n  linear(D) -> b\n  {blocks}\n  add(b)\n  add(a)",
            "two chains in parallel": f"parallel(merge=\"add\") {{ branch {{ {blocks} }}; branch {{ {blocks} }} }}"}[wrap]
    r = resdsl.loads(f"network c(K = {K}, D = 2) {{\n  input x: [D]\n  {body}\n  output y\n}}").paths()
    row = [math.comb(K, k) for k in range(K + 1)]  # (1 + x)^K
    if wrap == "long skip":  # enter the chain (+1) or skip it: 1 + x (1 + x)^K
        want = poly_mul([0, 1], row)
        want[0] += 1
    elif wrap == "nested long skips":  # 1 + x (1 + x (1 + x)^K)
        want = poly_mul([0, 0, 1], row)
        want[0] += 1
        want[1] += 1
    else:  # either branch: 2 x (1 + x)^K
        want = poly_mul([0, 2], row)
    assert r.by_length == {k: c for k, c in enumerate(want) if c}


@pytest.mark.parametrize("p0, p1", [(1, 1), (2, 3), (3, 1), (5, 5), (1, 7)])
def test_power_of_two_terms_is_the_binomial_row(p0, p1):
    # (p0 + p1 x)^n: C(n, k) p0^(n-k) p1^k, made by one multiplication and one exact division per coefficient
    from resdsl.analysis.paths import _power
    for n in list(range(40)) + [501]:
        assert _power([p0, p1], n) == [math.comb(n, k) * p0 ** (n - k) * p1 ** k for k in range(n + 1)], n

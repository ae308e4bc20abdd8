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
from resdsl.analysis.paths import count_paths

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


def brute_force(net: resdsl.Network, length: str) -> Counter:
    """Enumerate every input->output edge path of the MultiDiGraph (parallel edges = separate paths)."""
    g = net.graph
    mg = g.to_networkx()
    branch_slots = {(r.merge, s) for r in g.regions for s in r.branch_slots}
    hist: Counter = Counter()
    for i in g.inputs.values():
        for o in g.outputs.values():
            if i == o:
                hist[0] += 1
                continue
            for ep in nx.all_simple_edge_paths(mg, i, o):
                if length == "blocks":
                    k = sum((v, key) in branch_slots for _, v, key in ep)
                else:
                    k = sum(g.nodes[v].spec.weighted for _, v, _ in ep)
                hist[k] += 1
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
    # residual { } is add(x, x): 2 paths (lengths 0 and 1); then add(cur, x, x): 2 + 1 + 1
    r = net.paths()
    assert r.total == 4
    assert r.by_length == {0: 3, 1: 1}


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
        elif r < 0.3 and names:
            lines.append(f"  add({', '.join(rng.choice(names) for _ in range(rng.randint(1, 2)))})")
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


def test_blocks_through_match_brute_force():
    src = random_program(random.Random(1234))
    net = resdsl.loads(src)
    g = net.graph
    mg = g.to_networkx()
    r = net.paths()
    names = [n for n, _ in r.blocks]
    slots = [(rg.merge, s) for rg in g.regions for s in rg.branch_slots]
    counts = Counter()
    for i in g.inputs.values():
        for o in g.outputs.values():
            for ep in nx.all_simple_edge_paths(mg, i, o):
                for _, v, key in ep:
                    if (v, key) in slots:
                        counts[(v, key)] += 1
    assert [c for _, c in r.blocks] == [counts[s] for s in slots], names


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
    assert r.by_length[0] == 3 and r.by_length[1] == K and r.by_length[K // 2] == math.comb(K, K // 2)
    assert sum(r.by_length.values()) == r.total


def test_false_cut_candidates_are_caught(monkeypatch):
    # the modular cut test may (very rarely) propose a node that is not on every path:
    # the exact check on the histogram's sum must catch it and fall back to exact verification
    import resdsl.analysis.paths as paths_mod
    src = random_program(random.Random(12))  # 1,728 paths through 15 regions
    net = resdsl.loads(src)
    expected = brute_force(net, "blocks")
    assert sum(expected.values()) == 1728
    monkeypatch.setattr(paths_mod, "_cut_candidates", lambda g, removed, i, o: list(range(i, o + 1)))
    r = paths_mod.count_paths(net.graph, "blocks")
    assert r.by_length == dict(expected)

"""Lesions and effective paths: static path counts after deleting blocks, the compiled module with
branches deleted against a hand-written forward, and the per-length gradient decomposition."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

import resdsl
from resdsl.analysis.lesion import (deletable, deletable_blocks, find_blocks, instrument, lesion_study,
                                    path_gradients, paths_after_lesion)
from resdsl.analysis.paths import PathSampler
from test_paths import all_paths, brute_force, random_program

ROOT = Path(__file__).resolve().parents[1]

CHAIN = """
network c(K = 4, D = 8) {
  input x: [D]
  for i in range(K) { b{i}: residual { relu; linear(D, init="he") } }
  output y
}"""


# ------------------------------------------------------------------ static


def test_deletable_blocks_resnet18():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=18)
    units = deletable_blocks(net.graph)
    # every block's branch has its shortcut around it; the first block of stages 2-4 a projection
    assert [b.name for b in units] == [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]
    assert [b.skip for b in units] == ["identity", "identity"] + ["projection", "identity"] * 3
    with pytest.raises(ValueError, match="no branch named 'nope'"):
        find_blocks(net.graph, ["nope"])


def test_deletable_on_graphs_that_are_not_chains():
    net = resdsl.loads("""
network n(D = 4) {
  input x: [D]
  linear(D) -> a
  relu; linear(D)
  add(a)
  p: parallel(merge="add") { branch { linear(D) }; branch { relu } }
  concat(a)
  linear(D)
  output y
}""")
    units = deletable(net.graph)
    assert [(b.name, b.skip) for b in units] == [("add", "skip"), ("p[0]", "parallel"), ("p[1]", "parallel"),
                                                 ("concat", "skip")]
    # a parallel branch: the other branch is the path around it
    assert net.paths().total == 5 and paths_after_lesion(net.graph, [units[1]]).total == 2 + 1
    unet = resdsl.load(ROOT / "examples/unet.res", size=188)
    assert [b.name for b in deletable(unet.graph)] == [f"up{i}.concat" for i in range(1, 5)]
    assert [paths_after_lesion(unet.graph, [b]).total for b in deletable(unet.graph)] == [4, 3, 2, 1]


@pytest.mark.parametrize("seed", range(10))
def test_lesion_path_shares_match_brute_force(seed):
    net = resdsl.loads(random_program(random.Random(seed)))
    total = sum(brute_force(net, "blocks").values())
    for b in deletable(net.graph):
        left = brute_force(net, "blocks", removed={(b.merge, b.slot)})
        r = paths_after_lesion(net.graph, [b])
        assert (r.total, r.by_length) == (sum(left.values()), dict(left)), b.name
        assert 0 < r.total < total or not left


@pytest.mark.parametrize("K", [3, 4, 6])
def test_deleting_blocks_halves_paths(K):
    net = resdsl.loads(CHAIN, K=K)
    blocks = deletable_blocks(net.graph)
    assert len(blocks) == K
    for j in range(K + 1):
        r = paths_after_lesion(net.graph, blocks[:j])
        assert r.total == 2 ** (K - j)
        assert r.by_length == {k: math.comb(K - j, k) for k in range(K - j + 1)}


def test_resnet50_lesion_paths():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=50)
    r = paths_after_lesion(net.graph, find_blocks(net.graph, ["layer3.2"]))
    assert r.total == 2 ** 15


def test_instrumented_graph_keeps_names_and_shapes():
    net = resdsl.loads(CHAIN)
    g = net.graph
    r = g.regions[1]
    ig, gates, taps = instrument(g, {(r.merge, 1)}, {r.merge})
    assert len(ig.nodes) == len(g.nodes) + 2
    ig.lint()
    assert [n.name for n in ig.nodes if not n.name.startswith("resdsl_")] == [n.name for n in g.nodes]
    assert gates == {(r.merge, 1): f"resdsl_gate_{r.merge}_1"} and taps == {r.merge: f"resdsl_tap_{r.merge}"}


# ------------------------------------------------------------------ dynamic (needs torch)

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


def manual_forward(model, x, skip: set[int], K: int):
    sd = model.state_dict()
    h = x
    for i in range(K):
        if i in skip:
            continue
        f = torch.relu(h) @ sd[f"b{i}.linear.weight"].T + sd[f"b{i}.linear.bias"]
        h = h + f
    return h


def test_lesion_matches_hand_written_forward():
    K = 4
    net = resdsl.loads(CHAIN, K=K)
    model = net.to_torch(seed=0).eval()
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x)
        assert torch.allclose(manual_forward(model, x, set(), K), y, atol=1e-5)
        report = lesion_study(net, [["b1"], ["b0", "b3"]], inputs=[x])
        for row, skip in zip(report.rows, [{1}, {0, 3}]):
            y2 = manual_forward(model, x, skip, K)
            assert row.rel_change == pytest.approx(float((y2 - y).norm() / y.norm()), rel=1e-4)
            assert row.paths_left == 2 ** (K - len(skip)) and row.paths_total == 2 ** K


def test_lesion_all_blocks_default():
    net = resdsl.load(ROOT / "examples/resnet.res", depth=18, size=32)
    report = lesion_study(net, batch=2)
    assert [r.blocks for r in report.rows] == [[b.name] for b in deletable_blocks(net.graph)]
    assert all(0 < r.rel_change < 10 and r.paths_left * 2 == r.paths_total for r in report.rows)


def test_lesion_named_skip_matches_hand_forward():
    net = resdsl.loads("""
network n(D = 6) {
  input x: [D]
  fc: linear(D) -> a
  relu
  g: linear(D)
  add(a)
  output y
}""")
    model = net.to_torch(seed=0).eval()
    sd = model.state_dict()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = x @ sd["fc.weight"].T + sd["fc.bias"]
        y = model(x)
        y_del = a  # the branch (relu -> g) deleted: only the skip is left
    report = lesion_study(net, inputs=[x])
    assert [r.blocks for r in report.rows] == [["add"]]
    assert report.rows[0].paths_left == 1 and report.rows[0].paths_total == 2
    assert report.rows[0].rel_change == pytest.approx(float((y_del - y).norm() / y.norm()), rel=1e-5)


GAINS = """
network gains(D = 3) {
  input x: [D]
  input z: [D]
  residual { scale(2) }
  scale(0.5) -> a
  scale(4)
  add(a)
  parallel(merge="add") { branch { scale(8) }; branch { scale(0.25) } }
  add(z)
  output y
}"""


def hand_gain(net, path) -> float:
    """The product of the scales a path passes (every other op on it is an add: Jacobian 1)."""
    g = 1.0
    for v in path.nodes(net.graph):
        n = net.graph.nodes[v]
        if n.op == "scale":
            g *= n.attrs["value"]
    return g


def test_linear_gains_every_path_exact():
    # known answer: blocks are constant scales, so the gradient along a path is (product of its gains) * (y - t)
    # and, with powers of two, its per-sample norm is exactly |gain| * ||y - t|| in floating point
    net = resdsl.loads(GAINS)
    pg = path_gradients(net, samples=64, batch=5, seed=3)
    assert sum(pg.paths.values()) == 9 and all(pg.exhaustive.values())
    assert pg.paths == dict(brute_force(net, "blocks")) == {0: 1, 2: 2, 3: 4, 4: 2}
    measured = [p for k in pg.lengths for p in pg.per_path[k]]
    assert len(measured) == 9 and len({p.edges for p, _ in measured}) == 9
    (zpath, m), = pg.per_path[0]
    assert zpath.input == "z" and hand_gain(net, zpath) == 1.0
    # the z path's gradient is y - t itself: recompute it from the module and the same targets
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(5, 3, generator=gen) for _ in range(2)]
    with torch.no_grad():
        y = net.to_torch(seed=3).eval()(*xs)
        t = torch.randn(y.shape, generator=gen)
    assert m == float((y - t).norm(dim=1).mean())
    gains = sorted(hand_gain(net, p) for p, _ in measured)
    assert gains == sorted([1.0] + [a * 0.5 * b * c for a in (1, 2) for b in (4, 1) for c in (8, 0.25)])
    for p, mag in measured:
        assert mag == hand_gain(net, p) * m  # exact, not approximate
    for k in pg.lengths:
        assert pg.magnitude[k] == sum(hand_gain(net, p) * m for p, _ in pg.per_path[k]) / pg.paths[k]


def test_path_gradients_sum_to_the_full_gradient():
    # the chain rule on a DAG: the input gradient is the sum over all paths of the path gradients
    from resdsl.analysis.lesion import _PathRouter
    net = resdsl.loads("""
network n(D = 5) {
  input x: [D]
  linear(D) -> a
  residual { relu; linear(D); residual { linear(D); relu } }
  concat(a)
  linear(D)
  p: parallel(merge="add") { branch { relu; linear(D) }; branch { linear(D) } }
  add(a)
  output y
}""")
    router = _PathRouter(net, 0, None)
    router.module.eval()
    gen = torch.Generator().manual_seed(1)
    xs, t = [torch.randn(4, 5, generator=gen)], [torch.randn(4, 5, generator=gen)]
    router.route(None)
    full = router.input_grad(xs, t, None)
    sampler = PathSampler(net.graph)
    paths = [p for k in range(20) for p in sampler.all(k)]
    assert len(paths) == net.paths().total == len(list(all_paths(net)))
    acc = torch.zeros_like(full)
    for p in paths:
        router.route(p)
        acc += router.input_grad(xs, t, p)
    assert torch.allclose(acc, full, rtol=1e-4, atol=1e-5 * float(full.abs().max()))


@pytest.mark.parametrize("seed", range(8))
def test_sampler_counts_and_paths_match_brute_force(seed):
    net = resdsl.loads(random_program(random.Random(seed)))
    for length in ("blocks", "layers"):
        hist = brute_force(net, length)
        sampler = PathSampler(net.graph, length)
        rng = random.Random(seed)
        for k, c in hist.items():
            assert sampler.count(k) == c
            if c <= 300:
                got = sampler.all(k)
                assert len(got) == c == len({(p.input, p.output, p.edges) for p in got})
            p = sampler.sample(k, rng)
            g = net.graph
            nodes = p.nodes(g)
            assert p.length == k and nodes[-1] == g.outputs[p.output] and nodes[0] == g.inputs[p.input]
            for u, (v, slot) in zip(nodes, p.edges):  # consecutive edges join up
                assert g.nodes[v].inputs[slot] == u


@pytest.mark.parametrize("seed", [0, 3, 12])
def test_gradient_table_path_counts_match_brute_force(seed):
    net = resdsl.loads(random_program(random.Random(seed)))
    pg = path_gradients(net, samples=1, batch=2, seed=seed)
    assert pg.paths == dict(brute_force(net, "blocks"))
    assert all(len(pg.per_path[k]) == 1 for k in pg.lengths)


def test_sampling_is_uniform():
    # 3 paths of length 2 in "nested residuals" style: each drawn about a third of the time
    net = resdsl.loads("""
network n(D = 2) {
  input x: [D]
  residual { residual { linear(D) }; residual { linear(D) } }
  residual { linear(D) }
  output y
}""")
    sampler = PathSampler(net.graph)
    assert sampler.count(2) == 3
    rng = random.Random(0)
    draws = [sampler.sample(2, rng).edges for _ in range(3000)]
    freq = sorted(draws.count(e) for e in set(draws))
    assert len(freq) == 3 and all(900 < f < 1100 for f in freq)


def test_path_gradients_report():
    net = resdsl.loads(CHAIN, K=5)
    pg = path_gradients(net, samples=4, batch=8)
    assert pg.lengths == list(range(6))
    assert pg.paths == {k: math.comb(5, k) for k in range(6)}
    assert [pg.exhaustive[k] for k in range(6)] == [True, False, False, False, False, True]
    assert all(len(pg.per_path[k]) == min(4, math.comb(5, k)) for k in range(6))
    assert all(pg.magnitude[k] > 0 for k in pg.lengths)
    assert pg.contribution(2) == pg.magnitude[2] * 10


# ------------------------------------------------------------------ CLI


class _Done:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run_cli(capsys):
    """The CLI in-process (importing torch once, not per call)."""
    from resdsl.cli import main

    def run(*args):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own usage errors (exit 2 on the command line too)
            code = e.code
        out, err = capsys.readouterr()
        return _Done(code, out, err)
    return run


def test_cli_lesion(tmp_path, run_cli):
    src = tmp_path / "c.res"
    src.write_text(CHAIN)
    p = run_cli("lesion", str(src), "--blocks", "b0,b2", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["lesions"][0]["blocks"] == ["b0", "b2"] and out["lesions"][0]["paths_left"] == 4
    p = run_cli("lesion", str(src), "--list")
    assert p.stdout.splitlines() == [f"b{i}  (identity)" for i in range(4)]
    p = run_cli("lesion", str(src))
    assert p.returncode == 0 and "50.00%" in p.stdout and "\r" not in p.stderr  # progress: terminals only
    assert run_cli("lesion", str(src), "--blocks", "zz").returncode == 2
    x = torch.randn(3, 8)
    torch.save(x, tmp_path / "x.pt")
    p = run_cli("lesion", str(src), "--blocks", "b1", "--inputs", str(tmp_path / "x.pt"), "--json")
    assert p.returncode == 0, p.stderr
    net = resdsl.loads(CHAIN)
    with torch.no_grad():
        model = net.to_torch(seed=0).eval()
        y, y2 = model(x), manual_forward(model, x, {1}, 4)
    assert json.loads(p.stdout)["lesions"][0]["relative_output_change"] == pytest.approx(
        float((y2 - y).norm() / y.norm()), rel=1e-4)
    torch.save(torch.randn(3, 5), tmp_path / "bad.pt")
    assert run_cli("lesion", str(src), "--inputs", str(tmp_path / "bad.pt")).returncode == 2


def test_cli_paths_gradients(tmp_path, run_cli):
    src = tmp_path / "c.res"
    src.write_text(CHAIN)
    png = tmp_path / "g.png"
    p = run_cli("paths", str(src), "--gradients", "--samples", "2", "--json", "--plot", str(png))
    assert p.returncode == 0, p.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"
    out = json.loads(p.stdout)
    assert out["gradients"]["by_length"]["2"]["paths"] == 6
    assert "\r" not in p.stderr  # progress is redrawn in place on terminals only; a log gets plain lines
    plain = tmp_path / "p.res"
    plain.write_text("network p() {\n  input x: [4]\n  linear(4)\n  output y\n}\n")
    p = run_cli("paths", str(plain), "--gradients", "--json")  # a single path (length 0) is measured too
    assert p.returncode == 0 and json.loads(p.stdout)["gradients"]["by_length"]["0"]["paths"] == 1


def _no_build(monkeypatch):
    """Make building a module fail loudly: the checks below must answer before anything is built."""
    import resdsl.analysis.lesion as lesion_mod
    import resdsl.analysis.variance as variance_mod  # imported now, so it never binds the patched function

    def boom(*a, **k):
        raise AssertionError("a module was built")
    monkeypatch.setattr(lesion_mod, "build_instrumented", boom)
    monkeypatch.setattr(variance_mod, "build_instrumented", boom)


def test_cli_checks_before_building(tmp_path, run_cli, monkeypatch):
    src = tmp_path / "c.res"
    src.write_text(CHAIN)
    _no_build(monkeypatch)
    p = run_cli("lesion", str(src), "--blocks", "b1,zz")
    assert p.returncode == 2 and "no branch named 'zz'" in p.stderr and "deletable: b0, b1, b2, b3" in p.stderr
    p = run_cli("lesion", str(src), "--weights", str(tmp_path))
    assert p.returncode == 2 and "is a directory" in p.stderr
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    p = run_cli("lesion", str(src), "--weights", str(tmp_path / "junk.pt"))
    assert p.returncode == 2 and "not a torch.save file" in p.stderr
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    p = run_cli("lesion", str(src), "--weights", str(tmp_path / "list.pt"))
    assert p.returncode == 2 and "not a state_dict" in p.stderr
    p = run_cli("lesion", str(src), "--weights", str(tmp_path / "missing.pt"))
    assert p.returncode == 2 and "no such file" in p.stderr
    plain = tmp_path / "p.res"
    plain.write_text("network p() {\n  input x: [4]\n  linear(4)\n  output y\n}\n")
    p = run_cli("lesion", str(plain))
    assert p.returncode == 0 and "nothing to delete" in p.stdout
    p = run_cli("paths", str(src), "--gradients", "--samples", "0")
    assert p.returncode == 2 and "--samples" in p.stderr
    for args in (("lesion", "--batch", "\u0663"), ("lesion", "--batch", "0"), ("variance", "--seeds", "0"),
                 ("paths", "--gradients", "--seed", "-1"), ("paths", "--gradients", "--batch", "\u0663")):
        p = run_cli(args[0], str(src), *args[1:])  # Unicode digits and out-of-range counts: usage errors
        assert p.returncode == 2 and "expected a whole number" in p.stderr, args
    p = run_cli("paths", str(src), "--weights", "w.pt")
    assert p.returncode == 2 and "needs --gradients" in p.stderr
    p = run_cli("variance", str(src), "--batch", str(10 ** 12))
    assert p.returncode == 2 and "GiB" in p.stderr and "use --batch" in p.stderr
    p = run_cli("lesion", str(src), "--batch", str(10 ** 12))
    assert p.returncode == 2 and "GiB" in p.stderr


def test_cli_weights_that_do_not_fit(tmp_path, run_cli):
    src = tmp_path / "c.res"
    src.write_text(CHAIN)
    torch.save({"b0.linear.weight": torch.zeros(3, 3)}, tmp_path / "w.pt")
    p = run_cli("lesion", str(src), "--weights", str(tmp_path / "w.pt"))
    assert p.returncode == 2 and "do not fit" in p.stderr
    sd = resdsl.loads(CHAIN).to_torch(seed=5).state_dict()
    torch.save(sd, tmp_path / "good.pt")
    p = run_cli("lesion", str(src), "--weights", str(tmp_path / "good.pt"), "--blocks", "b0", "--json")
    assert p.returncode == 0, p.stderr


def test_progress_lines():
    import io

    from resdsl.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True
    log, tty = io.StringIO(), Tty()
    for stream in (log, tty):
        prog = Progress("lesion", 40, stream)
        for _ in range(40):
            prog.step()
        prog.close()
    assert "\r" not in log.getvalue() and log.getvalue().splitlines() == [f"lesion {2 * i}/40" for i in range(1, 21)]
    assert tty.getvalue().count("\r") == 40 and tty.getvalue().endswith("lesion 40/40\x1b[K\n")

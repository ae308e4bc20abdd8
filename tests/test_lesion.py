"""Lesions and effective paths: static path counts after deleting blocks, the compiled module with
branches deleted against a hand-written forward, and the per-length gradient decomposition."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

import resdsl
from resdsl.analysis.lesion import (deletable_blocks, find_blocks, instrument, lesion_study, path_gradients,
                                    paths_after_lesion)

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
    names = [r.name for r in deletable_blocks(net.graph)]
    # the first block of stages 2-4 has a projection shortcut and cannot be deleted
    assert names == ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
    with pytest.raises(ValueError, match="without an identity shortcut"):
        find_blocks(net.graph, ["layer2.0"])
    with pytest.raises(ValueError, match="no residual block"):
        find_blocks(net.graph, ["nope"])


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


def test_effective_paths_decompose_the_gradient():
    from resdsl.analysis.lesion import _GradientRouter
    net = resdsl.loads(CHAIN, K=4)
    router = _GradientRouter(net, deletable_blocks(net.graph), 0, None)
    router.module.eval()
    gen = torch.Generator().manual_seed(1)
    xs, t = [torch.randn(5, 8, generator=gen)], [torch.randn(5, 8, generator=gen)]
    router.route(None)
    full = router.input_grad(xs, lambda ys: t)[0]
    # k = 0: only the skips carry the gradient, which is then dL/dy = y - t itself
    router.route(set())
    g0 = router.input_grad(xs, lambda ys: t)[0]
    with torch.no_grad():
        y = router.module(xs[0])
    assert torch.equal(g0, y - t[0])
    # backprop is linear in the paths: the 16 subsets' gradients add up to the full gradient
    acc = torch.zeros_like(full)
    for k in range(5):
        for s in itertools.combinations(range(4), k):
            router.route(set(s))
            acc += router.input_grad(xs, lambda ys: t)[0]
    assert torch.allclose(acc, full, rtol=1e-4, atol=1e-4 * float(full.abs().max()))


def test_path_gradients_report():
    net = resdsl.loads(CHAIN, K=5)
    pg = path_gradients(net, samples=4, batch=8)
    assert pg.lengths == list(range(6))
    assert pg.paths == {k: math.comb(5, k) for k in range(6)}
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
        code = main(list(args))
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
    assert p.stdout.split() == ["b0", "b1", "b2", "b3"]
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
    assert "gradient paths" not in p.stderr  # progress is drawn on terminals only
    plain = tmp_path / "p.res"
    plain.write_text("network p() {\n  input x: [4]\n  linear(4)\n  output y\n}\n")
    assert run_cli("paths", str(plain), "--gradients").returncode == 2  # no residual block

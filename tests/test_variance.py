"""Variance at initialisation: the findings of UDL chapter 11.4-11.5, reproduced on inline networks
(width 100, 50 blocks, He init, relu -> linear branch).  Per-block growth is read from the endpoints
(log2(var_50 / var_0) / 50) and the median over five seeds, because a finite-width network's
log-variance performs a random walk around the expected trend."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

import resdsl

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
from resdsl.analysis.variance import variance_at_init  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
K = 50


def chain(body: str, after: str = "") -> resdsl.Network:
    return resdsl.loads(f"""
network n(K = {K}, D = 100) {{
  input x: [D]
  for i in range(K) {{ b{{i}}: residual {body} {after} }}
  output y
}}""")


def slopes(net, seeds=5):
    """Median over seeds of the per-block log2 growth of activation and gradient variance."""
    acts, grads = [], []
    for s in range(seeds):
        r = variance_at_init(net, batch=512, seed=s)
        a, g = r.points[0], r.points[-1]
        acts.append(math.log2(g.act_var / a.act_var) / K)
        grads.append(math.log2(a.grad_var / g.grad_var) / K)  # growth going backward
    return statistics.median(acts), statistics.median(grads)


def test_no_normalisation_doubles_per_block():
    net = chain('{ relu; linear(D, init="he") }')
    r = variance_at_init(net, batch=512)
    assert r.unit == "block" and len(r.points) == K + 1 and r.points[1].name == "b0"
    assert r.points[0].act_var == pytest.approx(1.0, abs=0.02)  # the N(0, 1) input
    assert r.points[1].act_var == pytest.approx(2.0, rel=0.06)  # Var(x + f(x)) = 1 + 1
    act, grad = slopes(net)
    assert 0.9 < act < 1.1  # x 2 per block
    assert 0.95 < grad < 1.25  # the gradient doubles going backward too


def test_branch_scale_gives_one_and_a_half():
    # residual(scale=s) scales the branch only: Var grows by 1 + s^2 = 1.5 per block
    act, grad = slopes(chain('(scale=1/sqrt(2)) { relu; linear(D, init="he") }'))
    assert abs(act - math.log2(1.5)) < 0.05
    assert 0.5 < grad < 0.8


def test_scaling_the_sum_keeps_variance_flat():
    # (x + f(x)) / sqrt(2): the variance stays put
    act, grad = slopes(chain('{ relu; linear(D, init="he") }', "; scale(1/sqrt(2))"))
    assert abs(act) < 0.05
    assert abs(grad) < 0.15


def test_batchnorm_at_branch_start_grows_linearly():
    # BN makes Var(f(x)) = 1 whatever Var(x) is: Var_k = k + 1
    net = chain('{ batchnorm(); relu; linear(D, init="he") }')
    ends, mids = [], []
    for s in range(5):
        r = variance_at_init(net, batch=512, seed=s)
        ends.append(r.points[K].act_var)
        mids.append(r.points[K // 2].act_var)
    assert statistics.median(ends) == pytest.approx(K + 1, rel=0.1)
    assert statistics.median(mids) == pytest.approx(K // 2 + 1, rel=0.1)
    # linear, not exponential: doubling the depth about doubles the variance
    assert 1.7 < statistics.median(e / m for e, m in zip(ends, mids)) < 2.2


def test_plain_bn_mlp_gradient_explodes():
    # Yang et al. 2019: with BN and ReLU, gradients grow by sqrt(pi / (pi - 1)) ~ 1.21 per layer going backward
    net = resdsl.loads("""
network mlp(K = 50, D = 100) {
  input x: [D]
  for i in range(K) { linear(D, init="he"); batchnorm(); relu }
  linear(D)
  output y
}""")
    r = variance_at_init(net, batch=512)
    assert r.unit == "layer" and len(r.points) == 51
    g = [p.grad_var for p in r.points]
    ratios = [math.sqrt(g[i] / g[i + 1]) for i in range(5, 45)]  # away from both ends
    mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
    assert mean == pytest.approx(math.sqrt(math.pi / (math.pi - 1)), abs=0.03)
    # and BN keeps the forward activations (after each linear) at a constant scale
    assert r.points[40].act_var == pytest.approx(r.points[10].act_var, rel=0.3)


def test_cli_json_and_plot(tmp_path, capsys):
    src = tmp_path / "c.res"
    src.write_text('network c(K = 6, D = 32) {\n  input x: [D]\n  for i in range(K) { residual { relu; linear(D, init="he") } }\n  output y\n}\n')
    png = tmp_path / "v.png"
    from resdsl.cli import main
    assert main(["variance", str(src), "--batch", "256", "--json", "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unit"] == "block" and len(out["points"]) == 7
    assert out["points"][6]["activation_variance"] > 8 * out["points"][0]["activation_variance"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["variance", str(src), "--batch", "1"]) == 2
    assert main(["variance", str(src), "--batch", "64"]) == 0
    out, err = capsys.readouterr()
    # progress is drawn on terminals only: none in a captured stream
    assert "variance at initialisation per block" in out and "\r" not in err

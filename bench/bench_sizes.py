"""Exact valid input sizes (analysis/symbolic.py) against deciding every size by elaboration.

    python bench/bench_sizes.py

For each network: the symbolic analysis of every spatial dim (median and best of 7), and, as the
peer a user would otherwise have, elaborating the file at each size 1..N and checking it (what
`check --sizes` did before: N = the size from which the symbolic rule is periodic, plus one period,
so both decide the same sizes).  Same process, same machine; ratio = peer / symbolic.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402
from resdsl.analysis.sizes import problems, valid_sizes  # noqa: E402
from resdsl.diagnostics import ResdslError  # noqa: E402

CASES = [("ResNet-152", "examples/resnet.res", {"depth": 152}), ("DenseNet-201", "examples/densenet.res", {"depth": 201}),
         ("U-Net", "examples/unet.res", {}), ("ResNet-50", "examples/resnet.res", {"depth": 50})]


def timed(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), min(ts), out


def brute(path, kw, d, top):
    base = list(resdsl.load(path, **kw).inputs[d.input])
    n = 0
    for H in range(1, top + 1):
        try:
            g = resdsl.load(path, input_shapes={d.input: tuple(base[:d.dim] + [H] + base[d.dim + 1:])}, **kw).graph
            problems(g)
        except ResdslError:
            pass
        n += 1
    return n


def main() -> None:
    print(f"{'network':<14}{'ops':>6}{'symbolic median':>17}{'best':>9}{'passes':>8}   {'elaborate 1..N':>15}{'N':>6}{'ratio':>8}")
    for name, rel, kw in CASES:
        path = ROOT / rel
        net = resdsl.load(path, **kw)
        valid_sizes(net)  # warm imports
        med, low, rep = timed(lambda: valid_sizes(net), 7)
        d = rep.dims[0]
        top = d.threshold + d.period
        peer = min(timed(lambda: brute(path, kw, d, top), 1)[0] * len(rep.dims), 1e9)
        print(f"{name:<14}{len(net.nodes):>6}{med * 1000:>14.1f} ms{low * 1000:>6.1f} ms{sum(x.runs for x in rep.dims):>8}"
              f"   {peer:>13.2f} s{top:>6}{peer / med:>7.0f}x")


TWO_INPUTS = """network two() {
  input x: [3, 32, 32]
  input y: [3, 64, 64]
  conv(8, 1) -> a
  from y
  maxpool(2)
  conv(8, 1)
  add(a)
  output z
}
"""


def joint() -> None:
    """Named sizes in the file, and sizes that meet (decided together on a grid, then each line exactly)."""
    print(f"\n{'case':<44}{'median':>10}{'best':>10}")
    text = (ROOT / "examples/resnet.res").read_text().replace("input x: [3, size, size]",
                                                              "input x: [3, H, W] where H % 32 == 0, W == H")
    cases = [("ResNet-50, input x: [3, H, W] where ..., W == H", lambda: resdsl.loads(text, depth=50)),
             ("two inputs meeting at an add: 2 x 512^2 grid", lambda: resdsl.loads(TWO_INPUTS))]
    for name, load in cases:
        net = load()
        valid_sizes(net, net.symbols or None, net.size_vars or None)
        med, low, _ = timed(lambda: valid_sizes(net, net.symbols or None, net.size_vars or None), 5)
        print(f"{name:<44}{med * 1000:>7.1f} ms{low * 1000:>7.1f} ms")


if __name__ == "__main__":
    main()
    joint()

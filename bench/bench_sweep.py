"""Benchmark a parameter sweep (not a test; issue 14): 100 settings of examples/resnet.res, each to a
checked graph + parameters + MACs, against building the 100 corresponding torchvision models on the
meta device and counting them as a user would (parameters by numel, MACs by FlopCounterMode // 2 on
a meta input).  Every setting's figures are asserted equal.  Same run, medians of whole sweeps,
ratio printed.

The settings: depth {50, 101, 152, 200} x width (groups, width per group) {(1, 64), (1, 128) wide,
(32, 4), (32, 8), (64, 4) ResNeXt} x input size {128, 160, 192, 224, 256}.  resdsl parses the file
once (its per-process cache); each setting is elaborated, checked and counted afresh.

    .venv/bin/python bench/bench_sweep.py [--quick]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402

RESNET = ROOT / "examples" / "resnet.res"
DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3], 200: [3, 24, 36, 3]}
WIDTHS = [(1, 64), (1, 128), (32, 4), (32, 8), (64, 4)]
SIZES = [128, 160, 192, 224, 256]


def settings(quick: bool) -> list[tuple[int, int, int, int]]:
    """(depth, groups, width per group, input size) for every point of the sweep."""
    grid = list(itertools.product(DEPTHS, WIDTHS, SIZES))
    picked = grid[::6] if quick else grid  # --quick: 17 settings, every depth, width and size among them
    return [(d, g, w, s) for d, (g, w), s in picked]


def with_resdsl(depth: int, groups: int, width: int, size: int) -> tuple[int, int]:
    net = resdsl.load(RESNET, depth=depth, groups=groups, width_per_group=width, size=size)
    return net.param_count, net.costs().total


def with_torchvision(depth: int, groups: int, width: int, size: int, macs: bool = True) -> tuple[int, int]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models.resnet import Bottleneck, ResNet

    with torch.device("meta"):
        model = ResNet(Bottleneck, DEPTHS[depth], groups=groups, width_per_group=width)
        params = sum(p.numel() for p in model.parameters())
        if not macs:
            return params, 0
        x = torch.empty(1, 3, size, size)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    return params, counter.get_total_flops() // 2


def sweep(fn, points) -> tuple[float, list]:
    t = time.perf_counter()
    out = [fn(*p) for p in points]
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="17 settings, one repetition")
    ap.add_argument("--repeat", type=int, default=None, help="whole sweeps per side (default 3, --quick 1)")
    args = ap.parse_args()
    import torch
    import torchvision

    torch.set_num_threads(1)
    points = settings(args.quick)
    repeat = args.repeat or (1 if args.quick else 3)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{len(points)} settings, {repeat} sweeps each")
    with_resdsl(*points[0])  # imports and the parse of the file, once, as in any process that sweeps
    with_torchvision(*points[0])
    ours, theirs, built = [], [], []
    for _ in range(repeat):  # interleaved: both sides see the same machine load
        t, a = sweep(with_resdsl, points)
        ours.append(t)
        t, b = sweep(with_torchvision, points)
        theirs.append(t)
        t, c = sweep(lambda *p: with_torchvision(*p, macs=False), points)
        built.append(t)
        assert a == b, [(p, x, y) for p, x, y in zip(points, a, b) if x != y][:3]
        assert [x[0] for x in a] == [x[0] for x in c]
    t_ours, t_theirs, t_built = (statistics.median(x) for x in (ours, theirs, built))
    n = len(points)
    print(f"resdsl: load + check + params + MACs        {t_ours:7.3f} s per sweep  ({t_ours / n * 1e3:6.2f} ms a setting)")
    print(f"torchvision on meta: build + numel + FlopCounterMode  {t_theirs:7.3f} s  ({t_theirs / n * 1e3:6.2f} ms)"
          f"   ratio {t_theirs / t_ours:5.1f}x")
    print(f"torchvision on meta: build + numel only       {t_built:7.3f} s  ({t_built / n * 1e3:6.2f} ms)"
          f"   ratio {t_built / t_ours:5.1f}x")
    print(f"all {n} settings: resdsl's parameters and MACs == torchvision's (params {a[0][0]:,} .. {a[-1][0]:,})")


if __name__ == "__main__":
    main()

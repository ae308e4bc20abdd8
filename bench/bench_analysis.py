"""Benchmark the static analyses (not a test).

1. A chain of K residual blocks (relu -> linear(16), He init) for K = 100, 1,000, 10,000:
   time to elaborate (parse + build + shape-check the IR), count parameters, compute MACs, and
   count paths exactly with the full length histogram (2**K paths).
2. ResNet-50 MACs at 224x224: resdsl's static count vs torch's FlopCounterMode and torchinfo,
   which both build the module and run it -- side by side in one process, ratios printed.

    .venv/bin/python bench/bench_analysis.py [--quick]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402
from resdsl.analysis.cost import analyze  # noqa: E402
from resdsl.analysis.paths import count_paths  # noqa: E402
from common import best  # noqa: E402  (bench/ is on sys.path when run as a script)

CHAIN = """
network chain(K = 100, D = 16) {
  input x: [D]
  for i in range(K) { residual { relu; linear(D, init="he") } }
  output y
}"""




def chains(sizes, repeat):
    """Times per chain length; returns {K: (total, paths)} for the ratios."""
    sys.set_int_max_str_digits(0)
    out = {}
    print(f"{'blocks':>7}  {'ops':>7}  {'elaborate':>9}  {'params':>7}  {'MACs':>7}  {'paths':>7}  {'total':>7}  "
          f"{'paths digits':>12}")
    for K in sizes:
        t_el, net = best(lambda: resdsl.loads(CHAIN, K=K), repeat)
        t_pa, _ = best(lambda: net.param_count, repeat)
        t_ma, cost = best(lambda: analyze(net.graph), repeat)
        t_ph, paths = best(lambda: count_paths(net.graph, "blocks"), repeat)
        assert paths.total == 2 ** K and paths.by_length[K // 2] == math.comb(K, K // 2)
        total = t_el + t_pa + t_ma + t_ph
        print(f"{K:>7,}  {len(net.nodes):>7,}  {t_el:8.3f}s  {t_pa:6.3f}s  {t_ma:6.3f}s  {t_ph:6.3f}s  "
              f"{total:6.3f}s  {len(str(paths.total)):>12,}")
        out[K] = (total, t_ph)
    if 1000 in out and 10_000 in out:
        (a, pa), (b, pb) = out[1000], out[10_000]
        print(f"10,000 / 1,000 blocks: whole analysis x{b / a:.1f}, paths alone x{pb / pa:.1f} "
              f"(linear would be x10; the histogram itself has Theta(K^2) bits)")
    return out


def paths_memory(K: int = 50_000):
    """Peak traced memory of count_paths on a K-block chain, next to the size of its histogram."""
    import tracemalloc
    net = resdsl.loads(CHAIN, K=K, limits=resdsl.Limits(max_nodes=5 * K))
    tracemalloc.start()
    paths = count_paths(net.graph, "blocks")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    hist = sum(sys.getsizeof(c) for c in paths.by_length.values())
    print(f"paths on {K:,} blocks: peak {peak / 1e6:.0f} MB traced; the histogram's integers alone {hist / 1e6:.0f} MB")


def resnet50(repeat):
    import torch
    import torchinfo
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(1)
    path = ROOT / "examples/resnet.res"
    t_static, macs = best(lambda: resdsl.load(path, depth=50).costs().total, repeat)
    t_build, model = best(lambda: resdsl.load(path, depth=50).to_torch(seed=0).eval(), 1)
    x = torch.randn(1, 3, 224, 224)

    def fcm():
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
        return fc.get_total_flops()

    t_fcm, flops = best(fcm, repeat)
    t_ti, ti = best(lambda: torchinfo.summary(model, input_data=x, verbose=0).total_mult_adds, repeat)
    print(f"ResNet-50 @224: resdsl static (load + elaborate + count) {macs:,} MACs in {t_static:.3f}s")
    print(f"  FlopCounterMode forward: {flops:,} FLOPs = 2 x {flops // 2:,} in {t_fcm:.3f}s "
          f"(+ {t_build:.2f}s to build the module); ratio {t_fcm / t_static:.1f}x slower")
    print(f"  torchinfo.summary: {ti:,} mult-adds in {t_ti:.3f}s; ratio {t_ti / t_static:.1f}x slower")
    print(f"  resdsl == FlopCounterMode / 2: {macs == flops // 2 and flops % 2 == 0}; "
          f"resdsl --convention torchinfo == torchinfo: {resdsl.load(path, depth=50).costs('torchinfo').total == ti}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only 100 and 1,000 blocks, one repetition")
    args = ap.parse_args()
    repeat = 1 if args.quick else 3
    chains([100, 1000] if args.quick else [100, 1000, 10_000], repeat)
    if not args.quick:
        paths_memory()
    print()
    resnet50(repeat)


if __name__ == "__main__":
    main()

"""Benchmark the static analyses (not a test).

1. A chain of K residual blocks (relu -> linear(16), He init; 3 IR ops per block) for K = 100, 1,000,
   10,000: time to elaborate (parse + build + shape-check the IR), count parameters, compute MACs, and
   count paths exactly with the full length histogram (2**K paths).  Medians of repeated runs (the
   sizes taken in turn in each round, so that load changes reach all of them), in CPU
   time (time.process_time: steadier on a shared machine) and wall time; elaboration per IR op; the
   10,000 / 1,000 ratios, whole and per phase, and the time of the histogram's binomial row (1 + x)^K alone
   (Theta(K^2) bits: the part of the path count that cannot be linear).
2. Elaboration alone (the file parsed once beforehand) of ResNet-50, ResNet-152, DenseNet-121 and ViT-B/16, per op;
   the cost pass alone on each (and with its per-node rows read).
3. `count_paths` on 50,000 blocks: peak traced memory, the histogram's own size, the process's peak RSS.
4. ResNet-50 MACs at 224x224: resdsl's static count vs torch's FlopCounterMode and torchinfo,
   which both build the module and run it -- side by side in one process, ratios printed.

    .venv/bin/python bench/bench_analysis.py [--quick] [--repeat N] [--tree PATH] [--no-torch]

`--tree PATH` imports resdsl from another checkout (e.g. the commit before a change, unpacked with
`git archive`), so before and after run the same script on the same machine minutes apart.
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _import_tree(tree: Path) -> None:
    sys.path.insert(0, str(tree))


CHAIN = """
network chain(K = 100, D = 16) {
  input x: [D]
  for i in range(K) { residual { relu; linear(D, init="he") } }
  output y
}"""


def timed(fn):
    """(CPU seconds, wall seconds, result) of one call."""
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c, time.perf_counter() - w, out


def chains(sizes, repeat):
    """Median CPU and wall time per phase and chain length; returns {K: (cpu total, wall total, cpu elaborate,
    cpu MACs, cpu paths)}."""
    import resdsl
    from resdsl.analysis.cost import analyze
    from resdsl.analysis.paths import _power, count_paths

    sys.set_int_max_str_digits(0)
    out = {}
    print(f"CPU time in ms, median of {repeat} runs (wall-clock total beside it):")
    print(f"{'blocks':>7}  {'ops':>7}  {'elaborate':>9}  {'us/op':>6}  {'params':>7}  {'MACs':>7}  {'paths':>7}  "
          f"{'total':>7}  {'wall':>7}  {'paths digits':>12}")
    runs: dict[int, list] = {K: [] for K in sizes}
    for _ in range(repeat):  # the sizes in turn, so that a change in the machine's load reaches them alike
        for K in sizes:
            rows = runs[K]
            el = timed(lambda: resdsl.loads(CHAIN, K=K))
            net = el[2]
            pa = timed(lambda: net.param_count)
            ma = timed(lambda: analyze(net.graph))
            ph = timed(lambda: count_paths(net.graph, "blocks"))
            rows.append((el[0], pa[0], ma[0], ph[0], el[1] + pa[1] + ma[1] + ph[1]))
            paths = ph[2]
            assert paths.total == 2 ** K and paths.by_length[K // 2] == math.comb(K, K // 2)
            del net, el, ph
    for K in sizes:
        rows = runs[K]
        t_el, t_pa, t_ma, t_ph, wall = (statistics.median(col) for col in zip(*rows))
        total = statistics.median(sum(r[:4]) for r in rows)
        ops = 3 * K + 1
        print(f"{K:>7,}  {ops:>7,}  {t_el * 1e3:9.2f}  {t_el / ops * 1e6:6.1f}  {t_pa * 1e3:7.2f}  {t_ma * 1e3:7.2f}  "
              f"{t_ph * 1e3:7.2f}  {total * 1e3:7.2f}  {wall * 1e3:7.2f}  {len(str(2 ** K)):>12,}")
        out[K] = (total, wall, t_el, t_ma, t_ph)
    if 1000 in out and 10_000 in out:
        (a, aw, ea, ma, pa), (b, bw, eb, mb, pb) = out[1000], out[10_000]
        print(f"10,000 / 1,000 blocks: whole analysis x{b / a:.2f} CPU, x{bw / aw:.2f} wall; elaborate x{eb / ea:.2f}, "
              f"MACs x{mb / ma:.2f}, paths x{pb / pa:.2f} CPU (linear would be x10)")
        row = [statistics.median(timed(lambda: _power([1, 1], K))[0] for _ in range(repeat)) for K in (1000, 10_000)]
        print(f"  of which the histogram's binomial row (1 + x)^K alone (Theta(K^2) bits: one multiplication and one "
              f"exact division by a small int per coefficient, half the row, mirrored): {row[0] * 1e3:.2f} -> "
              f"{row[1] * 1e3:.2f} ms; whole analysis without it x{(b - row[1]) / (a - row[0]):.2f}")
    return out


def zoo(repeat):
    """Elaboration alone (parsing done once before) of four zoo networks, per IR op."""
    from resdsl.elaborate import elaborate
    from resdsl.loader import load_file

    cases = [("ResNet-50", "examples/resnet.res", {"depth": 50}), ("ResNet-152", "examples/resnet.res", {"depth": 152}),
             ("DenseNet-121", "examples/densenet.res", {}), ("ViT-B/16", "examples/vit.res", {})]
    from resdsl.analysis.cost import analyze

    print(f"Elaboration alone, and the cost pass alone (`analyze`: MACs, memory, receptive fields; + `.layers`: "
          f"the per-node rows read too), CPU time, median of {repeat * 5} runs:")
    for title, path, params in cases:
        program = load_file(ROOT / path)
        times = []
        for _ in range(repeat * 5):
            cpu, _, graph = timed(lambda: elaborate(program, None, params))
            times.append(cpu)
        t = statistics.median(times)
        cost = statistics.median(timed(lambda: analyze(graph))[0] for _ in range(repeat * 20))
        rows = statistics.median(timed(lambda: analyze(graph).layers)[0] for _ in range(repeat * 20))
        print(f"  {title:<13} {len(graph.nodes):>4} ops  {t * 1e3:6.2f} ms  {t / len(graph.nodes) * 1e6:5.1f} us/op   "
              f"cost pass {cost * 1e3:5.3f} ms ({cost / len(graph.nodes) * 1e6:4.2f} us/op), + .layers "
              f"{rows * 1e3:5.3f} ms")


def paths_memory(K: int = 50_000):
    """Peak traced memory of count_paths on a K-block chain, next to the size of its histogram."""
    import tracemalloc

    import resdsl
    from resdsl.analysis.paths import count_paths

    net = resdsl.loads(CHAIN, K=K, limits=resdsl.Limits(max_nodes=5 * K))
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    paths = count_paths(net.graph, "blocks")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    distinct = {id(c): c for c in paths.by_length.values()}  # C(K, k) and C(K, K - k) are one object
    hist = sum(sys.getsizeof(c) for c in distinct.values())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"paths on {K:,} blocks: peak {peak / 1e6:.0f} MB traced; the histogram's integers alone {hist / 1e6:.0f} MB; "
          f"process peak RSS {loaded:.0f} MB after loading, {rss:.0f} MB after counting (tracemalloc's own tables included)")


def resnet50(repeat):
    import torch
    import torchinfo
    from torch.utils.flop_counter import FlopCounterMode

    import resdsl
    def median(fn, repeat):  # CPU time: steadier than wall time on a shared machine (torch runs on 1 thread)
        times = [timed(fn) for _ in range(repeat)]
        return statistics.median(t[0] for t in times), times[-1][2]

    torch.set_num_threads(1)
    path = ROOT / "examples/resnet.res"
    t_static, macs = median(lambda: resdsl.load(path, depth=50).costs().total, repeat)
    t_build, model = median(lambda: resdsl.load(path, depth=50).to_torch(seed=0).eval(), 1)
    x = torch.randn(1, 3, 224, 224)

    def fcm():
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
        return fc.get_total_flops()

    t_fcm, flops = median(fcm, repeat)
    t_ti, ti = median(lambda: torchinfo.summary(model, input_data=x, verbose=0).total_mult_adds, repeat)
    print(f"ResNet-50 @224 (CPU-time medians of {repeat}): resdsl static (load + elaborate + count) {macs:,} MACs "
          f"in {t_static:.4f}s")
    print(f"  FlopCounterMode forward: {flops:,} FLOPs = 2 x {flops // 2:,} in {t_fcm:.3f}s "
          f"(+ {t_build:.2f}s to build the module); ratio {t_fcm / t_static:.1f}x slower")
    print(f"  torchinfo.summary: {ti:,} mult-adds in {t_ti:.3f}s; ratio {t_ti / t_static:.1f}x slower")
    print(f"  resdsl == FlopCounterMode / 2: {macs == flops // 2 and flops % 2 == 0}; "
          f"resdsl --convention torchinfo == torchinfo: {resdsl.load(path, depth=50).costs('torchinfo').total == ti}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only 100 and 1,000 blocks, one repetition")
    ap.add_argument("--repeat", type=int, default=7, help="runs per measurement (medians are reported)")
    ap.add_argument("--tree", type=Path, default=ROOT, help="import resdsl from this checkout")
    ap.add_argument("--no-torch", action="store_true", help="skip the ResNet-50 comparison with torch")
    args = ap.parse_args()
    _import_tree(args.tree.resolve())
    import resdsl
    repeat = 1 if args.quick else args.repeat
    print(f"resdsl from {Path(resdsl.__file__).parent}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")
    chains([100, 1000] if args.quick else [100, 1000, 10_000], repeat)
    zoo(repeat)
    if not args.quick:
        paths_memory()
    if not args.no_torch:
        print()
        resnet50(repeat)
    print(f"load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

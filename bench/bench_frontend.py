"""Benchmark the front end: text -> checked graph + parameters + MACs (not a test; issue 14).

1. ResNet-50 from examples/resnet.res: `resdsl.load(...)` + param_count + MACs, warm (the parsed
   modules come from the per-process cache), with the parse (cache cleared), and cold (the first
   load in a fresh Python process, imports excluded); against building torchvision's resnet50 and
   counting it under FlopCounterMode at 224x224 -- same run, medians, ratio printed.
2. The chain of K residual blocks of bench/bench_analysis.py (K = 1,000 and 10,000): elaborate +
   params + MACs, and the same network as flat text (`resdsl expand` output) parsed and elaborated.

    .venv/bin/python bench/bench_frontend.py [--quick] [--cpu]

--cpu times everything (torchvision too, and inside the fresh processes) in CPU time, steadier than
wall time on a shared machine.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402
from resdsl import parser  # noqa: E402
from bench_analysis import CHAIN  # noqa: E402  (bench/ is on sys.path when run as a script)
from common import _timed  # noqa: E402

RESNET = ROOT / "examples" / "resnet.res"
CLOCK = "perf_counter"  # or process_time (--cpu)


def median(fn, repeat: int) -> tuple[float, object]:
    times, out = _timed(fn, repeat, getattr(time, CLOCK))
    return statistics.median(times), out


def median_unparsed(fn, repeat: int) -> tuple[float, object]:
    """Median time of `fn` with the parse cache emptied before each call -- outside the clock, with the
    previous result, so that freeing a large AST is not counted as parsing."""
    times, out, clock = [], None, getattr(time, CLOCK)
    for _ in range(repeat):
        out = None
        parser._CACHE.clear()
        t = clock()
        out = fn()
        times.append(clock() - t)
    return statistics.median(times), out


def count(net: resdsl.Network) -> tuple[int, int]:
    return net.param_count, net.costs().total


def resnet50(repeat: int) -> None:
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(1)
    count(resdsl.load(RESNET, depth=50))  # imports and the grammar tables, once

    t_warm, (params, macs) = median(lambda: count(resdsl.load(RESNET, depth=50)), repeat)
    t_parse, _ = median_unparsed(lambda: count(resdsl.load(RESNET, depth=50)), repeat)
    text = RESNET.read_text()
    t_parse_only, _ = median_unparsed(lambda: parser.parse(text, str(RESNET)), repeat)
    x = torch.randn(1, 3, 224, 224)

    def reference():
        model = torchvision.models.resnet50()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(x)
        return sum(p.numel() for p in model.parameters()), fc.get_total_flops() // 2

    t_ref, ref = median(reference, max(3, repeat // 5))
    assert (params, macs) == ref, (params, macs, ref)
    code = ("import time; t0 = time.{0}(); import resdsl; t = time.{0}(); "
            "n = resdsl.load({1!r}, depth=50); p, m = n.param_count, n.costs().total; "
            "print(time.{0}() - t, p, m, t - t0)").format(CLOCK, str(RESNET))
    colds, imports = [], []
    for _ in range(repeat // 2 + 1):  # bytecode is written (no PYTHONDONTWRITEBYTECODE), as an install has it
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONPATH": str(ROOT)}).stdout.split()
        assert (int(out[1]), int(out[2])) == (params, macs)
        colds.append(float(out[0]))
        imports.append(float(out[3]))
    t_cold, t_import = statistics.median(colds[1:]), statistics.median(imports[1:])  # the first may compile
    print(f"clock: time.{CLOCK}")
    print(f"ResNet-50 text -> checked graph + {params:,} params + {macs:,} MACs (== torchvision + FlopCounterMode // 2)")
    print(f"  resdsl warm (parse cache hit): {t_warm * 1e3:7.2f} ms   ratio {t_ref / t_warm:6.1f}x faster")
    print(f"  resdsl with the parse:         {t_parse * 1e3:7.2f} ms   ratio {t_ref / t_parse:6.1f}x faster")
    print(f"    of which the parse of examples/resnet.res ({text.count(chr(10))} lines): {t_parse_only * 1e3:.2f} ms")
    print(f"  resdsl cold (fresh process):   {t_cold * 1e3:7.2f} ms   ratio {t_ref / t_cold:6.1f}x faster"
          f"   (the first load after `import resdsl`, which took {t_import * 1e3:.1f} ms)")
    print(f"  torchvision resnet50() + FlopCounterMode forward: {t_ref * 1e3:7.1f} ms")


COLD_PARTS = """
import time
c = time.{clock}
t0 = c(); import resdsl; from resdsl import parser; t1 = c()
text = open({file!r}).read()
parser.parse(text, {file!r}); t2 = c()
parser._CACHE.clear(); parser.parse(text, {file!r}); t3 = c()
parser._CACHE.clear()
n = resdsl.load({file!r}, depth=50); t4 = c()
p, m = n.param_count, n.costs().total; t5 = c()
n = resdsl.load({file!r}, depth=50); t6 = c()
p, m = n.param_count, n.costs().total; t7 = c()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6)
"""


def cold_parts(processes: int) -> None:
    """Where a fresh process's first load goes: each step's median over `processes` fresh processes."""
    names = ["import resdsl", "first parse of resnet.res", "a second parse", "first load after that parse",
             "first count", "a warm load", "a warm count"]
    code = COLD_PARTS.format(clock=CLOCK, file=str(RESNET))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONPATH": str(ROOT)}).stdout.split() for _ in range(processes + 1)][1:]
    print(f"cold, step by step (medians of {processes} fresh processes):")
    for i, name in enumerate(names):
        print(f"  {name:<30} {statistics.median(float(r[i]) for r in runs) * 1e3:7.2f} ms")


def chains(sizes, repeat: int) -> None:
    timings = {}
    for K in sizes:
        t_el, net = median(lambda: resdsl.loads(CHAIN, K=K), repeat)
        t_ct, _ = median(lambda: count(net), repeat)
        flat = net.expand()

        limits = resdsl.Limits(max_source_bytes=10**8)  # 2 MB at 10,000 blocks

        t_flat, again = median_unparsed(lambda: resdsl.loads(flat, limits=limits), repeat)
        again = [n.name for n in again.nodes]
        t_parse, _ = median_unparsed(lambda: parser.parse(flat, "<flat>", limits), repeat)
        assert again == [n.name for n in net.nodes]
        timings[K] = t_el + t_ct
        print(f"chain K={K:>6,}: {len(net.nodes):>6,} ops  elaborate {t_el:6.3f}s  params+MACs {t_ct:6.3f}s  "
              f"flat text ({flat.count(chr(10)):,} lines) parse+elaborate {t_flat:6.3f}s (the parse {t_parse:6.3f}s)")
    if len(sizes) > 1:
        a, b = sizes[-2], sizes[-1]
        print(f"  {b:,}/{a:,} time ratio: {timings[b] / timings[a]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, chains up to 1,000 blocks")
    ap.add_argument("--cpu", action="store_true", help="CPU time (time.process_time) instead of wall time")
    args = ap.parse_args()
    global CLOCK
    CLOCK = "process_time" if args.cpu else "perf_counter"
    repeat = 5 if args.quick else 21
    print(f"python {sys.version.split()[0]}, lark {__import__('lark').__version__}")
    resnet50(repeat)
    cold_parts(repeat // 2)
    chains([100, 1000] if args.quick else [1000, 10000], 1 if args.quick else 3)


if __name__ == "__main__":
    main()

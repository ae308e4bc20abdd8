"""Time `resdsl render` for big networks: dot generation (ours) and dot layout (Graphviz) separately.

    .venv/bin/python bench/bench_render.py [--repeat 3] [--format svg]

For ResNet-152 and DenseNet-201 at block and layer level it prints, per case:
the IR size, the diagram size, the best-of-N time to build the dot text
(IR -> Diagram -> text), the best-of-N time for Graphviz `dot` to lay it out,
and the ratio layout / generation.  No peer renderer for these networks is
installed here (torchviz/torchview/hiddenlayer are not in the environment),
so the comparison is against the layout step every picture needs anyway.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402
from resdsl.render import diagram, layout, to_dot  # noqa: E402
from common import best  # noqa: E402  (bench/ is on sys.path when run as a script)

CASES = [("ResNet-152", "resnet.res", {"depth": 152}), ("DenseNet-201", "densenet.res", {"depth": 201})]




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--format", default="svg", choices=["svg", "png", "pdf"])
    args = ap.parse_args()
    print(f"# {platform.machine()} {platform.processor() or ''} python {platform.python_version()}, "
          f"best of {args.repeat}, layout to {args.format}")
    print(f"{'network':<13} {'level':<6} {'IR ops':>6} {'nodes':>6} {'edges':>6} {'clusters':>8} "
          f"{'dot text':>9} {'layout':>9} {'layout/text':>11}")
    for title, file, params in CASES:
        path = ROOT / "examples" / file
        if not path.exists():
            print(f"{title:<13} skipped: {path.name} not found")
            continue
        net = resdsl.load(path, **params)
        for level in ("block", "layer"):
            d = diagram(net, level)
            t_gen, text = best(lambda: to_dot(net, level=level), args.repeat)
            t_lay, _ = best(lambda: layout(text, args.format), args.repeat)
            print(f"{title:<13} {level:<6} {len(net.nodes):>6} {len(d.nodes):>6} {len(d.edges):>6} "
                  f"{len(d.clusters):>8} {t_gen * 1e3:>7.1f}ms {t_lay * 1e3:>7.0f}ms {t_lay / t_gen:>10.0f}x",
                  flush=True)


if __name__ == "__main__":
    main()

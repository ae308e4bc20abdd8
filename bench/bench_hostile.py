"""Time the hostile inputs of issue 10 that used to hang or take seconds (the tests bound them by counts).

    .venv/bin/python bench/bench_hostile.py [--repeat 3]

Cases: the same error 300,000 times in a loop inside a file padded to ~480 kB
(`check`); ~480 kB valid files of several shapes (parse only); the diagram and
dot text of 10,000 residual units at each level (no Graphviz); and nesting at
the ceiling of max_nesting (1,000 groups).  Prints the best-of-N CPU time and,
for parses, the throughput.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402
from resdsl.limits import Limits  # noqa: E402
from resdsl.loader import load_program  # noqa: E402
from resdsl.render import to_dot  # noqa: E402

from common import best  # noqa: E402  (bench/ is on sys.path when run as a script)


CPU = time.process_time  # CPU seconds of this process: meaningful on a shared, loaded machine
BIG = Limits(max_nodes=10**6, max_steps=10**7, max_source_bytes=10**7)


def loop_error() -> str:
    head = "network n() {\n    input x: [3, 8, 8]\n    for i in range(300000) {\n        y = 1 + \"a\"\n    }\n    relu\n}\n"
    return head + "# padding to about 480 kB\n" * 18_000


def _fill(line: str, size: int = 480_000) -> list[str]:
    return [line.format(i=i) for i in range(size // len(line.format(i=0)))]


def valid_files() -> dict[str, str]:
    return {
        "statements": "network n() {\n    input x: [8, 8, 8]\n" + "\n".join(_fill("    conv(8, 3, padding=1)  # {i}\n")) + "}\n",
        "one long list": "x = [" + ", ".join(["1"] * 160_000) + "]\n",
        "labels {i}": "network n() {\n    input x: [8, 8, 8]\n" + "".join(_fill("    a{{{i}}}: relu\n")) + "}\n",
        "comments": "".join(_fill("# a comment line {i}\n")) + "x = 1\n",
    }


UNITS = ("network n() {{\n    input x: [8, 4, 4]\n    for i in range({n}) {{\n        if i % 2 == 0 {{\n"
         "            residual {{\n                conv(8, 3, padding=1)\n            }}\n        }} else {{\n"
         "            residual(shortcut=\"project\") {{\n                relu\n            }}\n        }}\n    }}\n}}\n")


def nested(n: int) -> str:
    return "network n() {\n    input x: [3, 8, 8]\n" + "    group {\n" * n + "    relu\n" + "    }\n" * n + "}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"# {platform.machine()} python {platform.python_version()}, best of {args.repeat}, CPU seconds, "
          f"load average {os.getloadavg()[0]:.1f}")

    text = loop_error()

    def check_loop() -> str:
        try:
            resdsl.loads(text, limits=BIG)
        except resdsl.ResdslError as e:
            return e.render()
        return "ok?"

    t, out = best(check_loop, args.repeat, CPU)
    print(f"{'check, 1 error x 300,000 iterations':<44} {len(text) / 1e3:>6.0f} kB {t:>8.2f} s  ({out.count('error[')} shown)")
    for name, src in valid_files().items():
        t, _ = best(lambda src=src: load_program(src, "bench.res", BIG), args.repeat, CPU)
        print(f"{'parse, valid: ' + name:<44} {len(src) / 1e3:>6.0f} kB {t:>8.2f} s  ({len(src) / t / 1e3:.0f} kB/s)")
    net = resdsl.loads(UNITS.format(n=10_000), limits=BIG)
    for level in ("network", "block", "layer"):
        t, dot = best(lambda level=level: to_dot(net, level=level), args.repeat, CPU)
        print(f"{'dot text, 10,000 units, ' + level + ' level':<44} {len(net.nodes):>6} ops {t:>7.2f} s  "
              f"({dot.count(' -> ')} edges)")
    deep = nested(990)
    t, _ = best(lambda: resdsl.loads(deep, limits=Limits(max_nesting=1000)), args.repeat, CPU)
    print(f"{'check, 990 nested groups (max_nesting=1000)':<44} {len(deep) / 1e3:>6.0f} kB {t:>8.2f} s")


if __name__ == "__main__":
    main()

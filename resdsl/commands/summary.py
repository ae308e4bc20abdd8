"""resdsl summary FILE: per-layer output shapes and parameter counts, and totals."""
from __future__ import annotations

import argparse

from ._common import UsageError, add_common, load_from_args, nonnegative, print_json


def register(subs) -> None:
    p = subs.add_parser("summary", help="table of layers with output shapes and parameter counts",
                        description="Every layer's output shape and parameter count, and the totals, "
                                    "computed statically (no PyTorch module is built).",
                        epilog="examples:\n  resdsl summary examples/resnet.res --set depth=50\n"
                               "  resdsl summary examples/resnet.res --depth 1\n"
                               "  resdsl summary examples/densenet.res --json\n"
                               "  resdsl summary examples/resnet.res --convention fvcore",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="collapse the block tree below depth N (0: totals only)")
    p.add_argument("--convention", default="torchvision", metavar="NAME",
                   help="how MACs are counted: torchvision (default), torch, fvcore, torchinfo, thop, ptflops, "
                        "resdsl (see docs/counting.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.cost import CONVENTIONS
    from ..summary import summary_table

    if args.convention not in CONVENTIONS:
        raise UsageError(f"--convention must be one of {', '.join(CONVENTIONS)}")
    nonnegative("--depth", args.depth)
    net = load_from_args(args)
    if args.json:
        print_json(net.to_json(args.convention))
    else:
        print(summary_table(net, args.depth, args.convention))
    return 0

"""resdsl diff A.res [B.res]: per-layer differences in shape, parameters and MACs, and totals."""
from __future__ import annotations

import argparse
import copy
import sys

from ._common import EXIT_USAGE, add_common, load_from_args, print_json

EPILOG = """examples:
  resdsl diff examples/resnet.res --a depth=18 --b depth=34      one file, two parameter sets
  resdsl diff old.res new.res                                    two files (e.g. before and after a change)
  resdsl diff examples/resnet.res --a groups=1 --b groups=32 --b width_per_group=4 --json

Layers are matched by name (the state_dict names). Rows: ~ changed (op, shape, parameters or MACs),
+ only in b, - only in a; a scope found on one side only is one row with its totals."""


def register(subs) -> None:
    p = subs.add_parser("diff", help="compare two networks layer by layer (shapes, parameters, MACs)",
                        description="Per-layer differences between two networks -- two files, or one file with "
                                    "two parameter sets -- and the difference in totals.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("other", nargs="?", metavar="B", help="the second .res file (default: the first again)")
    p.add_argument("--a", metavar="NAME=VALUE", action="append", default=[], help="a parameter for side a only")
    p.add_argument("--b", metavar="NAME=VALUE", action="append", default=[], help="a parameter for side b only")
    p.add_argument("--convention", default="torchvision", metavar="NAME", help="how MACs are counted (see summary)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.cost import CONVENTIONS
    from ..diff import diff

    if args.convention not in CONVENTIONS:
        print(f"resdsl diff: error: --convention must be one of {', '.join(CONVENTIONS)}", file=sys.stderr)
        return EXIT_USAGE
    if args.other is None and not (args.a or args.b):
        print("resdsl diff: error: give a second file, or parameter sets with --a/--b", file=sys.stderr)
        return EXIT_USAGE
    side_a, side_b = copy.copy(args), copy.copy(args)
    side_a.set, side_b.set = args.set + args.a, args.set + args.b
    side_b.file = args.other or args.file
    d = diff(load_from_args(side_a), load_from_args(side_b), args.convention)
    if args.json:
        print_json(d.to_json())
    else:
        print(d.table())
    return 0

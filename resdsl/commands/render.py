"""resdsl render FILE -o OUT: a Graphviz diagram (.svg/.png/.pdf via dot, .dot as text)."""
from __future__ import annotations

import argparse
import sys

from ._common import ToolMissing, UsageError, add_common, load_from_args, wrote


def register(subs) -> None:
    p = subs.add_parser("render", help="draw the network with Graphviz (svg, png, pdf or dot)",
                        description="Draw the network: blocks as labelled clusters, each residual add as a '+' "
                                    "node with its shortcut as a side edge (dashed: identity; labelled: "
                                    "projection), concatenations as 'C' nodes, edges labelled with tensor "
                                    "shapes, one colour per op family. The output format is the suffix of "
                                    "OUT; .svg/.png/.pdf need Graphviz's `dot`, .dot does not. Without -o "
                                    "the dot source is printed.",
                        epilog="levels:\n"
                               "  network    one node per top-level part (stem, layer1..4, head)\n"
                               "  block      stages as clusters, each block as ops -> (+) with its shortcut;\n"
                               "             consecutive identical blocks collapsed into one with xN (default)\n"
                               "  layer      every op, every scope a cluster\n"
                               "  unraveled  every input->output path as its own lane, grouped by length\n"
                               "             (up to 6 residual blocks; use `resdsl paths` beyond)\n\n"
                               "examples:\n"
                               "  resdsl render examples/resnet.res --set depth=18 -o resnet18.svg\n"
                               "  resdsl render examples/resnet.res --set depth=50 --level layer -o r50.pdf\n"
                               "  resdsl render examples/unet.res --rankdir LR -o unet.png\n"
                               "  resdsl render examples/unravel4.res --level unraveled -o paths.svg\n"
                               "  resdsl render examples/resnet.res --level network > resnet.dot\n\n"
                               "exit codes: 0 ok, 1 errors in the .res file, 2 usage, 3 Graphviz's dot missing",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("-o", "--output", metavar="OUT", help="output file: .svg, .png, .pdf or .dot (default: dot to stdout)")
    p.add_argument("--level", choices=["network", "block", "layer", "unraveled"], default="block",
                   help="how much detail (default: block)")
    p.add_argument("--rankdir", choices=["TB", "LR"], default=None,
                   help="layout direction (default: TB; LR for --level unraveled)")
    p.add_argument("--no-shapes", action="store_true", help="no tensor shapes on edges")
    p.add_argument("--no-params", action="store_true", help="no parameter counts on nodes")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..render import GraphvizNotFound, format_of, render

    if args.output is not None:
        try:
            format_of(args.output)
        except ValueError as e:
            raise UsageError(str(e))
    net = load_from_args(args)
    opts = dict(level=args.level, rankdir=args.rankdir, shapes=not args.no_shapes, params=not args.no_params)
    try:
        if args.output is None:
            sys.stdout.write(render(net, None, **opts))
            return 0
        render(net, args.output, **opts)
    except GraphvizNotFound as e:
        raise ToolMissing(str(e))
    except OSError as e:  # e.g. a full disk (/dev/full): name the file, which the OSError of a write does not
        raise UsageError(f"cannot write {args.output}: {e.strerror or e}")
    wrote(args.output)
    return 0

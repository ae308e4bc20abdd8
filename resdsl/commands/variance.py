"""resdsl variance FILE: activation and gradient variance at initialisation, block by block."""
from __future__ import annotations

import argparse
import sys

from ._common import EXIT_USAGE, add_common, load_from_args, print_json, wrote


def register(subs) -> None:
    p = subs.add_parser("variance", help="activation / gradient variance at initialisation per block",
                        description="Build the module with its initialisation, run N(0, 1) inputs forward (training "
                                    "mode) and the loss 0.5*||y - t||^2 with random targets backward, and report the "
                                    "variance of the activations and of the gradients after every residual block "
                                    "(or after every conv/linear layer for a network without residual blocks).",
                        epilog="examples:\n  resdsl variance examples/residual_mlp.res --batch 1024\n"
                               "  resdsl variance examples/resnet.res --set depth=18 --set size=64 --batch 16\n"
                               "  resdsl variance net.res --seeds 4 --plot variance.png --json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--batch", type=int, default=512, metavar="N", help="inputs per forward pass (default 512)")
    p.add_argument("--seeds", type=int, default=1, metavar="S", help="average over S initialisations (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--plot", metavar="OUT.png", help="save both curves (log scale) as an image")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.variance import variance_at_init

    if args.batch < 2 or args.seeds < 1:
        print("resdsl variance: error: --batch must be at least 2 and --seeds at least 1", file=sys.stderr)
        return EXIT_USAGE
    net = load_from_args(args)
    try:
        report = variance_at_init(net, batch=args.batch, seeds=args.seeds, seed=args.seed, progress=True)
    except ValueError as e:
        print(f"resdsl variance: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.plot:
        report.plot(args.plot)
    if args.json:
        print_json(report.to_json())
        return 0
    print(f"{net.name}: variance at initialisation per {report.unit} (batch {args.batch}, {args.seeds} seed(s))")
    print("\n".join(report.table_lines()))
    if args.plot:
        wrote(args.plot)
    return 0

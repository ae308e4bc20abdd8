"""resdsl variance FILE: activation and gradient variance at initialisation, block by block."""
from __future__ import annotations

import argparse
import sys

from ._common import EXIT_USAGE, add_common, load_from_args, positive_int, print_json, seed_int, wrote


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
    p.add_argument("--batch", type=positive_int, default=512, metavar="N", help="inputs per forward pass (default 512)")
    p.add_argument("--seeds", type=positive_int, default=1, metavar="S", help="average over S initialisations (default 1)")
    p.add_argument("--seed", type=seed_int, default=0, help="first seed")
    p.add_argument("--plot", metavar="OUT.png", help="save both curves (log scale) as an image")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _usage(msg: str) -> int:
    print(f"resdsl variance: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def run(args) -> int:
    from ..analysis.runtime import check_batch
    from ..progress import Progress
    from ..analysis.variance import tap_points, variance_at_init

    if args.batch < 2 or args.seeds < 1:
        return _usage("--batch must be at least 2 and --seeds at least 1")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _usage("--plot needs matplotlib: pip install matplotlib")
    net = load_from_args(args)
    if not tap_points(net.graph)[1]:  # nothing to measure: say so before building anything
        return _usage("the network has neither residual blocks nor weighted layers to measure")
    too_big = check_batch(net.graph, args.batch, backward=True)
    if too_big:
        return _usage(too_big)
    prog = Progress("variance: seed", args.seeds)
    try:
        report = variance_at_init(net, batch=args.batch, seeds=args.seeds, seed=args.seed, progress=prog.step)
    except ValueError as e:
        return _usage(str(e))
    finally:
        prog.close()
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

"""resdsl lesion FILE: delete residual branches (keep the skip) and measure how much the output changes."""
from __future__ import annotations

import argparse
import sys

from ..cli import EXIT_USAGE, add_common, load_from_args, print_json


def register(subs) -> None:
    p = subs.add_parser("lesion", help="delete residual blocks and measure the change of the output",
                        description="Veit et al.'s lesion study: delete the branch of one residual block at a time "
                                    "(or the blocks given with --blocks, together), keeping the identity skip, and "
                                    "report the relative change ||y' - y|| / ||y|| of the outputs on random N(0, 1) "
                                    "inputs, with how many input->output paths are left. Only residual blocks with "
                                    "an identity shortcut can be deleted. Runs the model in eval mode.",
                        epilog="examples:\n  resdsl lesion examples/resnet.res --set depth=18\n"
                               "  resdsl lesion examples/resnet.res --blocks layer1.1,layer3.1 --json\n"
                               "  resdsl lesion model.res --weights trained.pt --inputs images.pt",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--blocks", metavar="A,B", help="delete these blocks together (default: each one alone)")
    p.add_argument("--list", action="store_true", help="only list the deletable blocks (static, no torch)")
    p.add_argument("--weights", metavar="SD.pt", help="load this state_dict into the compiled module first")
    p.add_argument("--batch", type=int, default=32, metavar="N", help="random inputs per run (default 32)")
    p.add_argument("--inputs", metavar="X.pt", help="use these inputs (torch.save of a tensor, or a list/tuple of "
                                                    "tensors, one per network input, batch first)")
    p.add_argument("--seed", type=int, default=0, help="seed for the weights' init and the inputs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.lesion import deletable_blocks, lesion_study

    sys.set_int_max_str_digits(0)
    net = load_from_args(args)
    blocks = deletable_blocks(net.graph)
    if args.list:
        names = [r.name for r in blocks]
        if args.json:
            print_json({"network": net.name, "deletable": names})
        else:
            print("\n".join(names) if names else "(no residual block with an identity shortcut)")
        return 0
    sets = None
    if args.blocks:
        sets = [[b.strip() for b in args.blocks.split(",") if b.strip()]]
    inputs = None
    if args.inputs:
        import torch

        from ..loader import check_regular
        check_regular(args.inputs)  # a FIFO or a directory: a diagnostic, not a hang or a traceback
        loaded = torch.load(args.inputs, map_location="cpu", weights_only=True)
        inputs = list(loaded) if isinstance(loaded, (list, tuple)) else [loaded]
        want = [tuple(s) for s in net.inputs.values()]
        got = [tuple(t.shape[1:]) for t in inputs]
        if got != want:
            print(f"resdsl lesion: error: --inputs has per-sample shapes {got}, the network wants {want}",
                  file=sys.stderr)
            return EXIT_USAGE
    try:
        report = lesion_study(net, sets, batch=args.batch, seed=args.seed, weights=args.weights, inputs=inputs,
                              progress=True)
    except ValueError as e:
        print(f"resdsl lesion: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print_json(report.to_json())
        return 0
    w = max([len("deleted")] + [len(",".join(r.blocks)) for r in report.rows])
    print(f"{net.name}: {len(blocks)} deletable residual blocks")
    print(f"{'deleted':<{w}}  {'paths left':>12}  {'rel. change':>11}")
    for r in report.rows:
        share = r.paths_left / r.paths_total if r.paths_total else 0.0
        print(f"{','.join(r.blocks):<{w}}  {100 * share:11.2f}%  {r.rel_change:11.4f}")
    return 0

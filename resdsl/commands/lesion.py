"""resdsl lesion FILE: delete residual branches (keep the skip) and measure how much the output changes."""
from __future__ import annotations

import argparse
import sys

from ._common import EXIT_USAGE, add_common, load_from_args, positive_int, print_json, seed_int


def register(subs) -> None:
    p = subs.add_parser("lesion", help="delete residual blocks and measure the change of the output",
                        description="Veit et al.'s lesion study: delete one branch at a time (or the branches given "
                                    "with --blocks, together) and report the relative change ||y' - y|| / ||y|| of "
                                    "the outputs on random N(0, 1) inputs, with how many input->output paths are "
                                    "left. Any branch with a parallel path around it can be deleted: residual and "
                                    "dense branches, parallel branches, the first operand of add(a) / concat(e1) "
                                    "(docs/paths.md). Runs the model in eval mode.",
                        epilog="examples:\n  resdsl lesion examples/resnet.res --set depth=18\n"
                               "  resdsl lesion examples/resnet.res --blocks layer1.1,layer3.1 --json\n"
                               "  resdsl lesion model.res --weights trained.pt --inputs images.pt",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--blocks", metavar="A,B", help="delete these branches together (default: each one alone)")
    p.add_argument("--list", action="store_true", help="only list the deletable blocks (static, no torch)")
    p.add_argument("--weights", metavar="SD.pt", help="load this state_dict into the compiled module first")
    p.add_argument("--batch", type=positive_int, default=32, metavar="N", help="random inputs per run (default 32)")
    p.add_argument("--inputs", metavar="X.pt", help="use these inputs (torch.save of a tensor, or a list/tuple of "
                                                    "tensors, one per network input, batch first)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed for the weights' init and the inputs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _inputs(path: str, net):
    """The tensors of --inputs, one per network input, checked against the network's input shapes."""
    import pickle

    import torch

    from ..loader import check_regular

    check_regular(path)  # a FIFO would block torch.load (run() refused one already: a race is still caught)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"--inputs {path}: not a torch.save file of tensors ({str(e).splitlines()[0][:120]})")
    inputs = list(loaded) if isinstance(loaded, (list, tuple)) else [loaded]
    if not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in inputs):
        raise ValueError(f"--inputs {path}: expected a tensor or a list/tuple of tensors, batch first")
    want = [tuple(s) for s in net.inputs.values()]
    got = [tuple(t.shape[1:]) for t in inputs]
    if got != want:
        raise ValueError(f"--inputs has per-sample shapes {got}, the network wants {want}")
    return [t.float() for t in inputs]


def _prepare(args, net):
    """Everything checked before a module is built: the branches to delete, weights, inputs, memory."""
    from ..analysis.lesion import deletable, find_blocks, load_weights
    from ..analysis.runtime import check_batch

    sets = None
    if args.blocks:
        names = [b.strip() for b in args.blocks.split(",") if b.strip()]
        if not names:
            raise ValueError("--blocks expects branch names separated by commas (--list shows them)")
        find_blocks(net.graph, names)
        sets = [names]
    elif not deletable(net.graph):
        return None, None, None
    inputs = _inputs(args.inputs, net) if args.inputs else None
    batch = inputs[0].shape[0] if inputs else args.batch
    too_big = check_batch(net.graph, batch, backward=False, option="--batch" if not inputs else "--inputs' batch")
    if too_big:
        raise ValueError(too_big)
    return sets, inputs, load_weights(args.weights)


def run(args) -> int:
    from ..analysis.lesion import deletable, lesion_study
    from ..analysis.runtime import bad_weights
    from ..progress import Progress

    sys.set_int_max_str_digits(0)
    why = bad_weights(args.weights) or bad_weights(args.inputs, "--inputs")
    if why:
        return _usage(why)
    net = load_from_args(args)
    units = deletable(net.graph)
    if args.list:
        if args.json:
            print_json({"network": net.name, "deletable": [b.name for b in units],
                        "skips": {b.name: b.skip for b in units}})
        else:
            print("\n".join(f"{b.name}  ({b.skip})" for b in units) if units
                  else "(no branch with a parallel path around it)")
        return 0
    try:
        sets, inputs, sd = _prepare(args, net)
    except ValueError as e:
        return _usage(str(e))
    if sets is None and not units:
        print(f"{net.name}: nothing to delete: no branch has a parallel path around it (a single path network)")
        return 0
    prog = Progress("lesion", len(sets) if sets else len(units))
    try:
        report = lesion_study(net, sets, batch=args.batch, seed=args.seed, weights=sd, inputs=inputs,
                              progress=prog.step)
    except ValueError as e:
        return _usage(str(e))
    finally:
        prog.close()
    if args.json:
        print_json(report.to_json())
        return 0
    skip = {b.name: b.skip for b in units}
    w = max([len("deleted")] + [len(",".join(r.blocks)) for r in report.rows])
    print(f"{net.name}: {len(units)} deletable branches (each has a parallel path around it)")
    print(f"{'deleted':<{w}}  {'around it':<10}  {'paths left':>12}  {'rel. change':>11}")
    for r in report.rows:
        share = r.paths_left / r.paths_total if r.paths_total else 0.0
        around = skip.get(r.blocks[0], "") if len(r.blocks) == 1 else ""
        print(f"{','.join(r.blocks):<{w}}  {around:<10}  {100 * share:11.2f}%  {r.rel_change:11.4f}")
    return 0


def _usage(msg: str) -> int:
    print(f"resdsl lesion: error: {msg}", file=sys.stderr)
    return EXIT_USAGE

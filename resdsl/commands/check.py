"""resdsl check FILE: parse, elaborate and shape-check; print ok or diagnostics."""
from __future__ import annotations

import argparse
import sys

from ..progress import Progress
from ._common import UsageError, add_common, load_from_args, print_json


def register(subs) -> None:
    p = subs.add_parser("check", help="check a .res file: syntax, names, arguments and shapes",
                        description="Parse, elaborate and shape-check a network without building it.",
                        epilog="examples:\n  resdsl check examples/resnet.res\n  resdsl check examples/resnet.res --set depth=101\n"
                               "  resdsl check examples/resnet.res --sizes --set size=450\n"
                               "  resdsl check examples/unet.res --sizes --size-range 400:700",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--sizes", action="store_true",
                   help="find the spatial input sizes at which no op rounds (strides divide, crops are centered)")
    p.add_argument("--size-range", metavar="LO:HI", help="with --sizes: sizes to try (default 1 to 2x the default)")
    p.set_defaults(func=run)


def run(args) -> int:
    lo, hi = _size_range(args.size_range)  # usage first: a typo must not cost a load
    if args.size_range and not args.sizes:
        raise UsageError("--size-range goes with --sizes")
    net = load_from_args(args)
    if args.sizes:
        return _sizes(net, args, lo, hi)
    warnings = _rounding_warnings(net)
    if args.json:  # only JSON on stdout, nothing on stderr: warnings go inside
        print_json({"ok": True, "network": net.name, "inputs": {k: list(v) for k, v in net.inputs.items()},
                    "outputs": {k: list(v) for k, v in net.outputs.items()}, "params": net.param_count,
                    "warnings": warnings})
    else:
        outs = ", ".join(f"{k}: {list(v)}" for k, v in net.outputs.items())
        print(f"ok: {net.name} ({len(net.nodes)} ops, {net.param_count:,} params) -> {outs}")
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    return 0


def _rounding_warnings(net) -> list[str]:
    """Not an error (torch floors too), but worth knowing before training: say where sizes round."""
    from ..analysis.sizes import problems

    probs = problems(net.graph)
    if not probs:
        return []
    p = probs[0]
    ins = ", ".join(f"{k}: {list(v)}" for k, v in net.inputs.items())
    return [f"at input {ins}, {len(probs)} op(s) round sizes; the first is {p.node} ({p.op}) at "
            f"{p.source}: {p.message}\n  see `resdsl check FILE --sizes` for the sizes at which nothing rounds"]


def _size_range(text: str | None) -> tuple[int, int | None]:
    if not text:
        return 1, None
    a, sep, b = text.partition(":")
    a, b = a.strip(), b.strip()
    ok = sep and a.isascii() and b.isascii() and a.isdigit() and b.isdigit() and len(a) < 10 and len(b) < 10
    if not ok or int(a) < 1 or int(b) < int(a):
        raise UsageError(f"--size-range expects LO:HI with 1 <= LO <= HI (at most 9 digits), got {text!r}")
    return int(a), int(b)


def _sizes(net, args, lo: int, hi: int | None) -> int:
    from ..analysis.sizes import valid_sizes

    with Progress("checking sizes:") as progress:
        rep = valid_sizes(net, lo, hi, progress=progress, by_dim=bool(args.input_shapes))
    if args.json:
        print_json({"ok": True, "network": net.name, **rep.to_json()})
        return 0
    if rep.parameters:
        print(f"{net.name}: input size set by {', '.join(rep.parameters)} (now {net.params[rep.parameters[0]]}); "
              f"checked {min(rep.checked)}..{max(rep.checked)}")
        print(f"valid sizes: {rep.rule}")
        print(f"smallest: {', '.join(map(str, rep.valid[:8])) or 'none'}")
    else:
        print(f"{net.name}: each spatial dim varied on its own, the others held at the current input")
        for d in rep.dims:
            shape = list(net.inputs[d.input])
            print(f"  {d.input} dim {d.dim} (now {shape[d.dim]}): {d.rule}; smallest: "
                  f"{', '.join(map(str, d.valid[:8])) or 'none'}")
    if rep.current:
        first = rep.current[0]
        ins = ", ".join(f"{k}: {list(v)}" for k, v in net.inputs.items())
        print(f"at the current input ({ins}) {len(rep.current)} op(s) round; the first is {first.node} ({first.op}) "
              f"at {first.source}, spatial dim {first.dim + 1}: {first.message}")
        for q in rep.current[1:10]:
            print(f"  then {q.node} ({q.op}) at {q.source}, spatial dim {q.dim + 1}: {q.message}")
        if len(rep.current) > 10:
            print(f"  ... and {len(rep.current) - 10} more")
    else:
        print("the current input size is valid: no op rounds")
    if rep.truncated:
        n = len(rep.checked) + sum(len(d.checked) for d in rep.dims)
        print(f"stopped early after {n} sizes: the scan's work budget ({rep.work:,} units, about one per op "
              "elaborated; a fixed amount, not a time limit) ran out; give a narrower --size-range for the rest")
    return 0

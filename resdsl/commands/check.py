"""resdsl check FILE: parse, elaborate and shape-check; print ok or diagnostics."""
from __future__ import annotations

import argparse

from ..cli import add_common, load_from_args, print_json


def register(subs) -> None:
    p = subs.add_parser("check", help="check a .res file: syntax, names, arguments and shapes",
                        description="Parse, elaborate and shape-check a network without building it.",
                        epilog="examples:\n  resdsl check examples/resnet.res\n  resdsl check examples/resnet.res --set depth=101",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    net = load_from_args(args)
    if args.json:
        print_json({"ok": True, "network": net.name, "inputs": {k: list(v) for k, v in net.inputs.items()},
                    "outputs": {k: list(v) for k, v in net.outputs.items()}, "params": net.param_count})
    else:
        outs = ", ".join(f"{k}: {list(v)}" for k, v in net.outputs.items())
        print(f"ok: {net.name} ({len(net.nodes)} ops, {net.param_count:,} params) -> {outs}")
    return 0

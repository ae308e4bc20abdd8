"""resdsl ops: list every layer the language knows, with its arguments."""
from __future__ import annotations

import argparse

from .. import ops
from ..evaluate import show
from ._common import UsageError, print_json


def register(subs) -> None:
    p = subs.add_parser("ops", help="list the layers and their arguments",
                        description="List every layer (op) with its arguments and defaults.",
                        epilog="examples:\n  resdsl ops\n  resdsl ops --family norm\n  resdsl ops --json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", help="only this family (conv, linear, norm, act, pool, merge, reshape, reg, scale, "
                                    "shortcut; `resdsl ops` lists them)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _sig(spec: ops.OpSpec) -> str:
    parts = []
    for p in spec.params:
        if p.kind == "tensors":
            parts.append("tensors...")
        elif p.default is ops.REQUIRED:
            parts.append(p.name)
        else:
            parts.append(f"{p.name}={show(p.default)}")
    return f"{spec.name}({', '.join(parts)})"


def run(args) -> int:
    families = sorted({s.family for s in ops.OPS.values() if s.user})
    if args.family is not None and args.family not in families:
        raise UsageError(f"no op family {args.family!r}; the families are {', '.join(families)}")
    specs = [s for s in ops.OPS.values() if s.user and (args.family is None or s.family == args.family)]
    if args.json:
        print_json([{"name": s.name, "family": s.family, "doc": s.doc,
                     "args": [{"name": p.name, "kind": p.kind, "required": p.default is ops.REQUIRED,
                               "default": None if p.default is ops.REQUIRED else p.default} for p in s.params]}
                    for s in specs])
        return 0
    for fam in sorted({s.family for s in specs}):
        print(f"{fam}:")
        for s in specs:
            if s.family == fam:
                print(f"  {_sig(s):<70} {s.doc}")
    return 0

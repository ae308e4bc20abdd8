"""resdsl check FILE: parse, elaborate and shape-check; print ok or diagnostics."""
from __future__ import annotations

import argparse
import sys

from ._common import add_common, load_from_args, print_json


def register(subs) -> None:
    p = subs.add_parser("check", help="check a .res file: syntax, names, arguments and shapes",
                        description="Parse, elaborate and shape-check a network without building it.",
                        epilog="examples:\n  resdsl check examples/resnet.res\n  resdsl check examples/resnet.res --set depth=101\n"
                               "  resdsl check examples/resnet.res --sizes --set size=450\n"
                               "  resdsl check examples/unet.res --sizes --input x=1,H,W",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--sizes", action="store_true",
                   help="derive the exact sets of input sizes at which the network runs, and at which no op rounds "
                        "(strides divide, crops are centered)")
    p.set_defaults(func=run)


def run(args) -> int:
    net = load_from_args(args)
    if args.sizes:
        return _sizes(net, args)
    warnings = _rounding_warnings(net)
    if args.json:  # only JSON on stdout, nothing on stderr: warnings go inside
        print_json({"ok": True, "network": net.name, "inputs": {k: list(v) for k, v in net.inputs.items()},
                    "outputs": {k: list(v) for k, v in net.outputs.items()}, "params": net.param_count,
                    "warnings": warnings, **(_symbolic_json(net) if net.symbols or net.size_vars else {})})
    elif net.symbols or net.size_vars:
        _symbolic(net)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    else:
        outs = ", ".join(f"{k}: {list(v)}" for k, v in net.outputs.items())
        print(f"ok: {net.name} ({len(net.nodes)} ops, {net.param_count:,} params) -> {outs}")
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    return 0


def _symbolic_json(net) -> dict:
    """The symbolic part of `check --json`: outputs as formulas, the valid sets, what the counts hold for."""
    from ..analysis.sizes import params_by_size

    shapes = net.symbolic_shapes()
    return {"symbolic_outputs": {k: list(shapes[i]) for k, i in net.graph.outputs.items()},
            "params_depend_on_size": params_by_size(net), "sizes": net.valid_sizes().to_json()}


def _symbolic(net) -> None:
    """A network with named sizes: its outputs as formulas, the valid sets, and what the counts hold for."""
    from ..analysis.symbolic import nothing_rounded
    from ..analysis.sizes import params_by_size

    shapes = net.symbolic_shapes()
    outs = ", ".join(f"{k}: [{', '.join(map(str, shapes[i]))}]" for k, i in net.graph.outputs.items())
    dep = params_by_size(net)
    how = {"no": "for every size"}.get(dep, f"at the example size; they depend on the size: {dep[5:]}"
                                       if dep.startswith("yes") else f"at the example size ({dep})")
    print(f"ok: {net.name} ({len(net.nodes)} ops, {net.param_count:,} params {how}) -> {outs}")
    rep = net.valid_sizes()
    for d in rep.dims:
        print(f"  {d.symbol}: runs for {d.valid}; {nothing_rounded(d.unrounded)}"
              + ("" if d.exact else f" (not exact: {d.why})"))
    for j in rep.joint:
        print(f"  {j}")
    for note in rep.notes:
        print(f"  note: {note}")
    ins = ", ".join(f"{k}: {list(v)}" for k, v in net.inputs.items())
    print(f"  shapes and MACs at a concrete size are those of the example {ins} (--input x=... picks another)")


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


def _sizes(net, args) -> int:
    """Exact valid sizes (analysis/sizes.py); the answer never depends on time or machine load."""
    from ..analysis.symbolic import nothing_rounded
    from ..analysis.sizes import _affine
    rep = net.valid_sizes()
    if args.json:
        print_json({"ok": True, "network": net.name, **rep.to_json()})
        return 0
    print(f"{net.name}: valid input sizes, each named size with the others at their current sizes")
    for d in rep.dims:
        now = net.inputs[d.input][d.dim]
        how = "exact" if d.exact else f"not exact ({d.why}): sizes decided one by one up to {d.threshold - 1}"
        print(f"  {d.input} dim {d.dim} ({d.symbol}, now {now}): runs for {d.valid}; "
              f"{nothing_rounded(d.unrounded)}"
              + ("" if d.unrounded.empty() else f"; smallest: {', '.join(map(str, d.unrounded.smallest(6)))}")
              + f"  [{how}]")
        for i, k, c, e in d.tied:
            print(f"    {i} dim {k} follows it: {_affine(c, e, d.symbol)}")
    for j in rep.joint:
        print(f"  {j}")
        if j.relation and not j.exact:
            print("    declare the relation for an exact analysis (e.g. the same size name for both dims: "
                  "`--input x=3,H,W --input y=3,H,W`, or `where` in the file)")
    for note in rep.notes:
        print(f"  note: {note}")
    if rep.current:
        first = rep.current[0]
        ins = ", ".join(f"{k}: {list(v)}" for k, v in net.inputs.items())
        print(f"at the current input ({ins}) {len(rep.current)} op(s) round; the first is {first.node} ({first.op}) "
              f"at {first.source}, spatial dim {first.dim + 1}: {first.message}")
        for q in rep.current[1:10]:
            print(f"  then {q.node} ({q.op}) at {q.source}, spatial dim {q.dim + 1}: {q.message}")
        if len(rep.current) > 10:
            print(f"  ... and {len(rep.current) - 10} more")
        for d in rep.dims:
            below, above = d.unrounded.nearest(net.inputs[d.input][d.dim])
            print(f"  nearest sizes for {d.input} dim {d.dim} at which nothing rounds: "
                  f"{below if below is not None else 'none'} below, {above if above is not None else 'none'} above")
    else:
        print("the current input size is valid: no op rounds")
    return 0

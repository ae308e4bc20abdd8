"""Text summary of a network: the block tree with output shapes and parameters.

Reads a `Network` (IR nodes, scopes); writes a table.  Rows follow program
order; a block call, labeled group or labeled residual opens an indented row
that totals its contents.  `depth` collapses everything below that level.
"""
from __future__ import annotations

from .ir import Graph


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def scope_totals(g: Graph) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """Per scope: total params (with descendants), buffers, and the last node id."""
    params = {s.id: 0 for s in g.scopes}
    buffers = {s.id: 0 for s in g.scopes}
    last: dict[int, int] = {}
    parent = {s.id: s.parent for s in g.scopes}
    for n in g.nodes:
        sid = n.scope
        while sid is not None:
            params[sid] += n.params
            buffers[sid] += n.buffers
            last[sid] = n.id
            sid = parent[sid]
    return params, buffers, last


def summary_rows(net, depth: int | None = None, convention: str = "torchvision"):
    """(rows, cost): rows are (indented name, op or block, output shape, params, MACs) in program order."""
    g = net.graph
    params, _, last = scope_totals(g)
    shapes = net.symbolic_shapes() if net.symbols else [n.shape for n in g.nodes]  # H, W as formulas
    cost = net.costs(convention)  # static MACs per node (resdsl/analysis/cost.py)
    node_macs = [l.macs for l in cost.layers]
    macs = {s.id: 0 for s in g.scopes}
    parent = {s.id: s.parent for s in g.scopes}
    for n in g.nodes:
        sid = n.scope
        while sid is not None:
            macs[sid] += node_macs[n.id]
            sid = parent[sid]
    chain: dict[int, list[int]] = {}

    def scopes_of(sid: int) -> list[int]:
        """Scope ids from the network's child down to `sid` (iterative: scopes nest up to the limits' depth)."""
        todo, top = [], sid
        while top not in chain:
            if g.scopes[top].parent is None:
                chain[top] = []
                break
            todo.append(top)
            top = g.scopes[top].parent
        for t in reversed(todo):
            chain[t] = chain[g.scopes[t].parent] + [t]
        return chain[sid]

    rows: list[tuple[str, str, str, int, int]] = []
    opened: list[int] = []
    for n in g.nodes:
        path = scopes_of(n.scope)
        k = 0
        while k < len(opened) and k < len(path) and opened[k] == path[k]:
            k += 1
        opened = opened[:k]
        for sid in path[k:]:
            level = len(opened)
            opened.append(sid)
            if depth is not None and level >= depth:
                continue
            s = g.scopes[sid]
            own = s.name[len(g.scopes[s.parent].name) + 1:] if g.scopes[s.parent].name else s.name  # conv.0 whole
            rows.append(("  " * level + own, s.hint if s.kind == "block" else s.kind,
                         _fmt_shape(shapes[last[sid]]), params[sid], macs[sid]))
        level = len(path)
        if depth is not None and level > depth - 1 and depth >= 0 and (level > 0 or depth == 0):
            if depth == 0 or level >= depth:
                continue
        own = n.name[len(g.scopes[n.scope].name) + 1:] if g.scopes[n.scope].name else n.name
        rows.append(("  " * level + own, n.op, _fmt_shape(shapes[n.id]), n.params, node_macs[n.id]))
    return rows, cost


def summary_table(net, depth: int | None = None, convention: str = "torchvision") -> str:
    from .analysis.symbolic import nothing_rounded
    g = net.graph
    rows, cost = summary_rows(net, depth, convention)
    shapes = net.symbolic_shapes() if net.symbols else [n.shape for n in g.nodes]
    header = ("layer", "op", "output shape", "params", cost.unit)
    w0 = max([len(header[0])] + [len(r[0]) for r in rows])
    w1 = max([len(header[1])] + [len(r[1]) for r in rows])
    w2 = max([len(header[2])] + [len(r[2]) for r in rows])
    w3 = max([len(header[3])] + [len(f"{r[3]:,}") for r in rows])
    w4 = max([len(header[4])] + [len(f"{r[4]:,}") for r in rows])
    line = "-" * (w0 + w1 + w2 + w3 + w4 + 8)
    settings = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in net.params.items())
    out = [f"{net.name}({settings})  from {net.source}", line,
           f"{header[0]:<{w0}}  {header[1]:<{w1}}  {header[2]:<{w2}}  {header[4]:>{w4}}  {header[3]:>{w3}}", line]
    for name, op, shape, p, m in rows:  # params stay the last column (scripts read it from the line's end)
        out.append(f"{name:<{w0}}  {op:<{w1}}  {shape:<{w2}}  {m:>{w4},}  {p:>{w3},}")
    out.append(line)
    ins = ", ".join(f"{k}: {_fmt_shape(shapes[i])}" for k, i in g.inputs.items())
    outs = ", ".join(f"{k}: {_fmt_shape(shapes[i])}" for k, i in g.outputs.items())
    out.append(f"inputs: {ins}    outputs: {outs}")
    if net.symbols:
        rep = net.valid_sizes()
        at = ", ".join(f"{k}: {_fmt_shape(v)}" for k, v in net.inputs.items())
        for d in rep.dims:
            out.append(f"{d.symbol}: runs for {d.valid}; {nothing_rounded(d.unrounded)}"
                       + ("" if d.exact else f" (not exact: {d.why})"))
        out += [str(j) for j in rep.joint] + [f"note: {n}" for n in rep.notes]
        out.append(f"counts are at {at}")
    out.append(f"params: {net.param_count:,}    trainable: {net.trainable_param_count:,}    "
               f"buffers: {net.buffer_count:,}    ops: {len(g.nodes)}")
    out.append(f"{cost.unit} ({convention}): {cost.total:,}    params: {cost.param_bytes('fp32') / 2**20:.2f} MiB fp32"
               f"    activations/sample: {cost.activation_elems * 4 / 2**20:.2f} MiB fp32"
               f" ({cost.saved_elems * 4 / 2**20:.2f} MiB kept for backward)")
    return "\n".join(out)

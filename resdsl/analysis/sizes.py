"""Valid input sizes: for which spatial sizes does the network run, and run without rounding?

Reads a `Network`; writes a `SizeReport`.  The sets are derived exactly by `symbolic.analyze_group`
(shapes as affine functions of the size on residue classes; docs/sizes.md), not by sampling:
no time budget, and the same answer on a busy machine as on a quiet one.  One `SizeVar` per named
size (the file's `input x: [3, H, W] where ...`, or `--input x=3,H,W`) with the dims tied to it;
sizes that meet in a rule (`symbolic.ties`) are decided together: on a grid, and exactly for two
sizes that meet in a merge (`symbolic.pair_analysis`).

"Rounding" means an op drops or pads pixels a perfect fit would not; each op says where in its
`rounding` facet (the rules are listed in resdsl/ops/rounding.py).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..ir import Graph, Node


@dataclass
class Rounding:
    node: str
    op: str
    dim: int  # spatial dim index (0 = first spatial dim)
    message: str
    source: str  # file:line


def node_problems(g: Graph, n: Node) -> list[Rounding]:
    """Where node `n` rounds at its concrete sizes, through its op's `rounding` facet (ops/rounding.py)."""
    rule = n.spec.rounding
    if rule is None:
        return []
    out: list[Rounding] = []
    src = f"{n.span.file}:{n.span.line}"
    hit: dict[int, bool] = {}  # dim -> did the previous entry round (an alternative is reported only if not)
    for r in rule(n.attrs, [g.nodes[i].shape for i in n.inputs], n.shape):
        if r.alternative and hit.get(r.dim):
            continue
        hit[r.dim] = bool(r.amount)
        if r.amount:
            out.append(Rounding(n.name, n.op, r.dim, r.why(), src))
    return out


def problems(g: Graph) -> list[Rounding]:
    """Every rounding surprise in program order."""
    return [p for n in g.nodes for p in node_problems(g, n)]


def rounding_terms(n: Node, xs: list, y: tuple) -> list[tuple[int, object]]:
    """(spatial index, expression) pairs; an expression (an int, or a symbolic `Dim`) is non-zero
    exactly where `n` rounds in that spatial dimension.  Dispatches through the op's `rounding` facet."""
    rule = n.spec.rounding
    return [] if rule is None else [(r.dim, r.amount) for r in rule(n.attrs, xs, y)]


@dataclass
class SizeReport:
    dims: list  # one symbolic.DimAnalysis per size that is analysed on its own (its tied dims follow it)
    current: list[Rounding] = field(default_factory=list)  # problems at the network's own size
    joint: list = field(default_factory=list)  # one JointAnalysis per group of sizes that meet (not affine ties)
    notes: list[str] = field(default_factory=list)  # what was not checked, and why

    def to_json(self) -> dict:
        return {"dims": [dim_json(d) for d in self.dims], "joint": [j.to_json() for j in self.joint],
                "notes": self.notes,
                "current_size_problems": [{"node": p.node, "op": p.op, "dim": p.dim, "message": p.message,
                                           "source": p.source} for p in self.current]}


def dim_json(d) -> dict:
    return {"input": d.input, "dim": d.dim, "symbol": d.symbol, "exact": d.exact, "why": d.why or None,
            "period": d.period, "threshold": d.threshold, "runs": d.runs,
            "valid": d.valid.to_json(), "unrounded": d.unrounded.to_json(),
            "valid_rule": str(d.valid), "unrounded_rule": str(d.unrounded),
            "tied": [{"input": i, "dim": k, "c": c, "e": e, "rule": _affine(c, e, d.symbol)}
                     for i, k, c, e in getattr(d, "tied", ())]}


def _affine(c: int, e: int, X: str) -> str:
    s = X if c == 1 else f"{c}{X}"
    return s + (f" + {e}" if e > 0 else f" - {-e}" if e < 0 else "")


@dataclass(frozen=True)
class SizeVar:
    """A named input size X and the input dimensions that follow it: (input, dim, c, e) means that
    dimension is c*X + e (the first entry is X itself).  X is restricted to the residues mod
    `modulus` and to lo <= X <= hi (`where H % 32 == 0, H >= 64`, or `--input x=3,H%32,W`)."""

    name: str
    dims: tuple[tuple[str, int, int, int], ...]
    modulus: int = 1
    residues: tuple[int, ...] = (0,)
    lo: int = 1
    hi: int | None = None


def vars_from_symbols(g: Graph, symbols: dict | None) -> list[SizeVar]:
    """One SizeVar per symbol name: `--input x=3,H,H` ties W to H, and a name used for two inputs ties
    them.  Without symbols every spatial dim of every input is its own size, named H, W, D (suffixed
    per input)."""
    from .symbolic import SYMBOLS

    if not symbols:
        symbols = {}
        for name, nid in g.inputs.items():
            rank = len(g.nodes[nid].shape)
            for d in range(1, rank):
                sym = SYMBOLS[d - 1] if rank - 1 <= 3 else f"S{d}"
                symbols[(name, d)] = Symbol(sym if len(g.inputs) == 1 else f"{sym}_{name}")
    order = list(g.inputs)
    by_name: dict[str, list] = {}
    for (inp, d), sym in sorted(symbols.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        by_name.setdefault(sym.name, []).append(((inp, d, 1, 0), sym))
    out = []
    for name, uses in by_name.items():
        mod = [s for _, s in uses if s.modulus > 1]
        m, r = (mod[0].modulus, mod[0].residue) if mod else (1, 0)
        out.append(SizeVar(name, tuple(u for u, _ in uses), m, (r,)))
    return out


def from_declared(g: Graph) -> tuple[list[SizeVar], dict]:
    """The named sizes of the file (`input x: [3, H, W] where ...`, sizevars.Sizes on the graph) as
    SizeVars, and per (input, dim) a Symbol for display; nothing when every size was given."""
    sz = g.sizes
    if sz is None:
        return [], {}
    out, shown = [], {}
    for root in sz.symbolic_roots():
        dims = sorted(((i, d, c, e) for i, d, r, c, e in sz.dims if r == root), key=lambda t: (t[2], t[3]) != (1, 0))
        m, res = sz.mods.get(root, (1, (0,)))
        lo, hi = sz.bounds.get(root, (1, None))
        out.append(SizeVar(root, tuple(dims), m, res, lo, hi))
        for i, d, c, e in dims:
            shown[(i, d)] = Symbol(_affine(c, e, root), m if (c, e) == (1, 0) and len(res) == 1 else 1,
                                   res[0] if (c, e) == (1, 0) and len(res) == 1 else 0)
    return out, shown


def params_by_size(net) -> str:
    """Do the parameter counts depend on the named sizes?  "no" (checked exactly: every op's count
    facet, run on the symbolic shapes, gives a number), "yes: NODE" (a count is a formula of a size,
    e.g. a linear layer after a flatten) or "unknown: why"."""
    from .symbolic import Dim

    rep = net.valid_sizes()
    if rep.joint:
        return "unknown: some sizes meet and are analysed together"
    if not rep.dims or any(not d.exact for d in rep.dims):
        return "unknown: the sizes are not analysed exactly"
    sources = set(net.graph.inputs.values())
    for d in rep.dims:
        shapes = {nid: groups[0][1] for nid, groups in d.generic.items() if groups}
        for n in net.graph.nodes:
            if n.id in sources or n.id not in shapes:
                continue
            try:
                p, b = n.spec.count(n.attrs, [shapes[i] for i in n.inputs], shapes[n.id])
            except Exception as e:  # a count rule that needs plain ints
                return f"unknown: {n.op} ({type(e).__name__})"
            if isinstance(p, Dim) or isinstance(b, Dim):
                return f"yes: {n.name} ({n.span.file}:{n.span.line})"
    return "no"


BUILD_BOUND = 128  # sizes built one by one when the structure reads a named size


def by_building(net, v: SizeVar, uses) -> "DimAnalysis":
    """When the body reads a named size (`if H > 64`, `conv(H // 8)`) the structure itself may change
    with it: decide sizes 1..BUILD_BOUND by building the network at each (the ordinary concrete path)."""
    from ..diagnostics import ResdslError
    from .symbolic import DimAnalysis, SizeSet

    base = {k: list(s) for k, s in net.inputs.items()}
    ok, unround, first_error = set(), set(), {}
    for X in range(max(1, v.lo), (BUILD_BOUND if v.hi is None else min(v.hi, BUILD_BOUND)) + 1):
        if X % v.modulus not in v.residues:
            continue
        shapes = {k: list(s) for k, s in base.items()}
        for i, d, c, e in v.dims:
            shapes[i][d] = c * X + e
        try:
            g = net._rebuild({k: tuple(s) for k, s in shapes.items()})
        except ResdslError as err:
            first_error[X] = (-1, err.first.message)
            continue
        ok.add(X)
        watch = {d - 1 for _, d, _, _ in v.dims}
        if not [p for p in problems(g) if p.dim in watch]:
            unround.add(X)
    name, span = uses[0]
    why = (f"the structure reads {name} at {span.file}:{span.line}:{span.col}: sizes decided by building the "
           f"network at each size up to {BUILD_BOUND}")
    i, d = v.dims[0][0], v.dims[0][1]
    a = DimAnalysis(i, d, v.name, False, why, 1, BUILD_BOUND + 1, len(ok) + len(first_error),
                    SizeSet([], sorted(ok)), SizeSet([], sorted(unround)), first_error, {})
    a.tied = tuple(v.dims[1:])
    return a


def valid_sizes(net, symbols: dict | None = None, size_vars: list | None = None) -> SizeReport:
    """Exact valid and unrounded size sets per named input size (the unnamed dims held at their sizes).

    `size_vars` (SizeVar) name the sizes and tie dimensions to them; `symbols` maps (input, dim) to a
    `Symbol` (`--input x=3,H%32,W`); with neither every spatial dim of every input is analysed.  Sizes
    that meet in a rule other than through a declared tie (a merge after a transpose, a product with a
    fixed length) are decided together on a grid (`JointAnalysis`), and the report says so.
    """
    from .symbolic import Binding, analyze_group, ties

    g = net.graph
    vars_ = size_vars if size_vars is not None else vars_from_symbols(g, symbols)
    uses = [u for u in (g.sizes.uses if g.sizes is not None else []) if u[0] in {v.name for v in vars_} or
            u[0] in getattr(g.sizes, "alias", {})]
    if uses and getattr(net, "_rebuild", None) is not None:  # in-file sizes or --input names alike
        return SizeReport([by_building(net, v, uses) for v in vars_], problems(g), [],
                          [f"{uses[0][0]} is read by the network body at {uses[0][1].file}:{uses[0][1].line}: "
                           f"the layers may change with it, so no formula is claimed"])
    binds = [[Binding(g.inputs[i], d, c, e) for i, d, c, e in v.dims] for v in vars_]
    found, why = ties(g, binds)
    notes = [f"whether the sizes meet was not checked: {why}"] if why else []
    comp = list(range(len(vars_)))  # union-find over the sizes that meet

    def root(i: int) -> int:
        while comp[i] != i:
            i = comp[i]
        return i

    where: dict[int, int] = {}
    for i, j, nid in found:
        ri, rj = root(i), root(j)
        if ri != rj:
            comp[max(ri, rj)] = min(ri, rj)
            where[min(ri, rj)] = nid
    dims, joint = [], []
    for i, v in enumerate(vars_):
        members = [j for j in range(len(vars_)) if root(j) == i]
        if root(i) != i:
            continue
        if len(members) == 1:
            a = analyze_group(g, v.name, binds[i], v.modulus, v.residues, v.lo, v.hi)
            a.tied, a.bindings = tuple(v.dims[1:]), tuple(binds[i])
            dims.append(a)
        else:
            j = joint_grid(g, [vars_[k] for k in members], [binds[k] for k in members], where.get(i))
            if len(members) == 2 and where.get(i) is not None:
                _exact_pair(g, j, [vars_[k] for k in members], [binds[k] for k in members], where[i])
            apart = _apart(g, j, [vars_[k] for k in members], [binds[k] for k in members])
            if apart:  # on the grid the sizes do not constrain each other: keep the per-size answers too
                dims += apart
                notes.append(f"{', '.join(j.names)} meet at {j.node}, but every combination of their valid sizes "
                             f"up to {j.bound} is valid: the sets above hold together there (not proven beyond)")
            joint.append(j)
    return SizeReport(dims, problems(g), joint, notes)


def _exact_pair(g: Graph, j, vars_: list, binds: list, m: int) -> None:
    """Make `j` exact when the two sizes meet in an equality (symbolic.pair_analysis), and the exact
    answer agrees with the grid on every combination there (the check of its one assumption)."""
    from .symbolic import NotSymbolic, pair_analysis

    if j.why or any(v.modulus != 1 or v.lo != 1 or v.hi is not None for v in vars_):
        return
    try:
        pa = pair_analysis(g, binds[0], binds[1], m)
    except NotSymbolic as e:
        pa = str(e)
    if isinstance(pa, str):
        j.exact_why = pa
        return
    if pa.points(j.bound) != set(j.valid):
        j.exact_why = "the exact analysis and the grid disagree: the sizes meet in more than an equality"
        return
    j.pair = pa


def _apart(g: Graph, j, vars_: list, binds: list) -> list:
    """Per-size analyses when the grid's valid set is the product of per-size sets that agree with them."""
    from .symbolic import analyze_group

    if j.why or not j.valid:
        return []
    proj = [sorted({p[i] for p in j.valid}) for i in range(len(vars_))]
    if len(j.valid) != math.prod(len(x) for x in proj):
        return []
    out = []
    for i, v in enumerate(vars_):
        a = analyze_group(g, v.name, binds[i], v.modulus, v.residues, v.lo, v.hi)
        if [x for x in range(1, j.bound + 1) if x in a.valid] != proj[i]:
            return []
        a.tied, a.bindings = tuple(v.dims[1:]), tuple(binds[i])
        out.append(a)
    return out


def smallest_inputs(net, nid: int) -> tuple[int | None, ...]:
    """Per spatial dim of node `nid`'s inputs: an input that is the smallest there at every valid input size,
    and keeps its relation to every other input (always equal to it, or always smaller), or None where no
    input does (which one is the smaller changes with the size, or whether it is equal does, or the
    analysis cannot tell: sizes not exact or decided jointly).  A crop that is a no-op at one size and cuts
    at another is exactly what torch.export's guards cannot follow in slicing.  The compiled shapes' first
    smallest input is preferred, so code that crops to it stays as it was.  Reads the network's size report
    (exact affine shapes from its threshold on, each smaller valid size computed); writes nothing."""
    from .symbolic import shapes_at

    g = net.graph
    n = g.nodes[nid]
    xs = [g.nodes[i].shape for i in n.inputs]
    rank = len(xs[0])
    rep = net.valid_sizes()
    if rep.joint or any(not a.exact or not a.bindings for a in rep.dims):
        return (None,) * (rank - 1)
    seen = {(d, p, q): {(xs[p][d] > xs[q][d]) - (xs[p][d] < xs[q][d])}  # (dim, p, q) -> signs of size_p - size_q
            for d in range(1, rank) for p in range(len(xs)) for q in range(len(xs)) if p != q}  # here, then at every size
    for a in rep.dims:
        small = shapes_at(g, list(a.bindings), [x for x in range(1, a.threshold) if x in a.valid], nid)
        for d in range(1, rank):
            for p in range(len(xs)):
                for q in range(len(xs)):
                    if p != q:
                        seen[d, p, q].update(_signs(a, n, p, q, d, small))
    out = []
    for d in range(1, rank):
        order = sorted(range(len(xs)), key=lambda i: xs[i][d])  # the compiled smallest first
        fixed = [p for p in order if all(len(seen[d, p, q]) == 1 and 1 not in seen[d, p, q]
                                         for q in range(len(xs)) if q != p)]
        out.append(fixed[0] if fixed else None)
    return tuple(out)


def _slope(v) -> int:
    from .symbolic import Dim
    return v.a if isinstance(v, Dim) else 0


def _offsets(v, count: int):  # an int64 array
    import numpy as np  # here, not at the top: numpy's import (~55 ms) is paid only by the size analysis

    from .symbolic import Dim
    return v.b if isinstance(v, Dim) else np.full(count, v, dtype=np.int64)


def _signs(a, n: Node, p: int, q: int, d: int, small: list) -> set[int]:
    """The signs (-1, 0, 1) that size_p - size_q takes in dim d between inputs p and q of node n over the
    valid sizes of analysis `a`.  Exact: from the threshold on the difference is slope*k + c (size
    X = M*k + r, k from the first k0 at or above the threshold): constant if slope == 0, else it has the
    sign of the slope from k0 on, after its value at k0; below the threshold from the shapes at each valid
    size (`small`: symbolic.shapes_at's groups)."""
    import numpy as np

    out: set[int] = set()
    gp, gq = a.generic.get(n.inputs[p], []), a.generic.get(n.inputs[q], [])
    for (residues, sp), (_, sq) in zip(gp, gq):
        k0 = np.maximum(0, -((residues - a.threshold) // a.period))  # ceil((threshold - r) / M), at least 0
        slope = _slope(sp[d]) - _slope(sq[d])
        first = slope * k0 + _offsets(sp[d], len(residues)) - _offsets(sq[d], len(residues))
        out.update(np.sign(first).tolist())
        if slope:
            out.add(1 if slope > 0 else -1)
    for _, shapes in small:
        diff = _offsets(shapes[n.inputs[p]][d], 1) - _offsets(shapes[n.inputs[q]][d], 1)
        out.update(np.sign(diff).tolist())
    return out


@dataclass
class JointAnalysis:
    """Sizes that meet in a way the per-size analysis cannot follow exactly, decided together on a grid."""

    names: list[str]
    node: str  # where they meet (name, file:line)
    bound: int  # every size from 1 to bound was tried
    valid: list[tuple[int, ...]]  # the valid combinations on the grid, smallest first
    unrounded: list[tuple[int, ...]]
    relation: str  # the valid pairs as a relation, when one fits ("W = H"), else ""
    why: str = ""  # when the grid could not be decided
    lines: list = field(default_factory=list)  # per relation line: (text, DimAnalysis of the first size on it), exact
    pair: object = None  # symbolic.PairAnalysis: the exact joint set, when the sizes meet in an equality
    exact_why: str = ""  # why there is no exact joint set

    @property
    def exact(self) -> bool:
        return self.pair is not None

    def __contains__(self, p: tuple) -> bool:
        """Is the combination valid (exact everywhere when `exact`, else on the grid only)?"""
        if self.pair is not None:
            return tuple(p) in self.pair
        if any(x > self.bound for x in p):
            raise ValueError(f"not decided beyond {self.bound}")
        return tuple(p) in set(self.valid)

    def rule(self) -> str:
        """The exact joint set as text: B = c*A + D (or q*B = p*A + E) per offset, grouped by A's set."""
        pa, (A, B) = self.pair, self.names
        if pa.swapped:
            A, B = B, A
        by: dict[str, list[int]] = {}
        for d, sset in sorted(pa.lines.items()):
            by.setdefault(str(sset), []).append(d)
        lhs = B if pa.q == 1 else f"{pa.q}{B}"
        parts = [(f"{lhs} = {_affine(pa.p, ds[0], A)}" if len(ds) == 1 else
                  f"{lhs} = {_affine(pa.p, 0, A)} + D with D in {_ranges(ds)}") + f", for {A}: {rule}"
                 for rule, ds in by.items()]
        off = sorted((q[::-1] if pa.swapped else q) for q in pa.box if not pa._on(pa.lines, *q))
        if off:
            parts.append("and " + ", ".join(f"({a}, {b})" for a, b in off[:8]) + (" ..." if len(off) > 8 else ""))
        return "; ".join(parts) if parts else "none"

    def __str__(self) -> str:
        from .symbolic import nothing_rounded
        names = ", ".join(self.names)
        if self.pair is not None:
            return f"{names} meet at {self.node} (exact: they must agree there): {self.rule()}"
        if self.why:
            return f"{names} meet at {self.node}; not decided: {self.why}"
        if not self.valid:
            return f"{names} meet at {self.node}: no combination up to {self.bound} runs"
        head = f"{names} meet at {self.node} (not exact: decided together for every size up to {self.bound}" + \
            (f"; no exact joint set: {self.exact_why})" if self.exact_why else ")")
        rel = f"; every valid combination has {self.relation}" if self.relation else ""
        few = ", ".join("(" + ", ".join(map(str, t)) + ")" for t in self.valid[:6])
        on = "".join(f"; on {text} (exact): {self.names[0]} runs for {a.valid}, {nothing_rounded(a.unrounded)}"
                     for text, a in self.lines if a.exact)
        return f"{head}: {len(self.valid)} valid combinations{rel}; smallest: {few}{on}"

    def to_json(self) -> dict:
        pair = self.pair
        exact = None if pair is None else {
            "p": pair.p, "q": pair.q,
            "lines": [{"offset": d, "valid": v.to_json(),
                       "unrounded": pair.unrounded[d].to_json() if d in pair.unrounded else None}
                      for d, v in sorted(pair.lines.items())],
            "swapped": pair.swapped,  # lines: q * names[1] = p * names[0] + offset (swapped: the other way)
            "box": sorted(list(p[::-1] if pair.swapped else p) for p in pair.box), "rule": self.rule()}
        return {"names": self.names, "node": self.node, "exact": self.exact, "exact_set": exact,
                "exact_why": self.exact_why or None, "bound": self.bound, "why": self.why or None,
                "valid": [list(t) for t in self.valid[:256]], "valid_count": len(self.valid),
                "unrounded": [list(t) for t in self.unrounded[:256]], "unrounded_count": len(self.unrounded),
                "relation": self.relation or None,
                "lines": [{"relation": text, **dim_json(a)} for text, a in self.lines]}


JOINT_POINTS = 1 << 18  # grid points decided together (one vector of cases)


def joint_grid(g: Graph, vars_: list, binds: list[list], nid: int | None) -> JointAnalysis:
    """Decide every combination of the sizes up to a bound at once (bounded: JOINT_POINTS cases)."""
    import numpy as np

    from .symbolic import MAX_RUNS, NotSymbolic, Table, _drive, rounding

    n = len(vars_)
    bound = max(2, int(JOINT_POINTS ** (1 / n)))
    axes = []
    for v in vars_:
        xs = np.arange(max(1, v.lo), (bound if v.hi is None else min(bound, v.hi)) + 1, dtype=np.int64)
        axes.append(xs[np.isin(xs % v.modulus, np.array(v.residues) % v.modulus)])
    grid = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")]) if all(len(a) for a in axes) \
        else np.zeros((n, 0), dtype=np.int64)
    tables = [Table(b.node, b.dim, b.c * grid[i] + b.e) for i, bs in enumerate(binds) for b in bs]
    watch = {b.dim - 1 for bs in binds for b in bs}
    valid, unrounded, why = [], [], ""
    outcomes = []
    if grid.shape[1]:
        try:
            outcomes, _ = _drive(g, tables, False, 1, np.arange(grid.shape[1]), rounding(watch), [MAX_RUNS * 4])
        except NotSymbolic as e:  # rules that vary too much to decide in bounded work: no claim
            bound, outcomes = 0, []
            why = str(e)
        for out in outcomes:
            if out.error is None:
                valid += [tuple(int(x) for x in grid[:, c]) for c in out.cases]
                unrounded += [tuple(int(x) for x in grid[:, c]) for c, r in zip(out.cases, out.rounds) if not r]
    node = g.nodes[nid] if nid is not None else None
    where = f"{node.name} ({node.span.file}:{node.span.line})" if node else "a shape rule"
    names = [v.name for v in vars_]
    rel = _relation(names, sorted(valid))
    return JointAnalysis(names, where, bound, sorted(valid), sorted(unrounded), rel[0], why,
                         [(text, _on_line(g, vars_, binds, c, e)) for text, c, e in rel[1]])


def _on_line(g: Graph, vars_: list, binds: list, c: int, e: int):
    """The exact analysis of the first size with the second tied to it as c*X + e (one relation line)."""
    from dataclasses import replace

    from .symbolic import analyze_group

    a, b = vars_
    tied = [replace(x, c=x.c * c, e=x.c * e + x.e) for x in binds[1]]  # B = c*A + e: B's dims follow A
    return analyze_group(g, a.name, binds[0] + tied, a.modulus, a.residues, a.lo, a.hi)


def _ranges(xs: list[int]) -> str:
    """{-3..0, 2} for [-3, -2, -1, 0, 2]."""
    out, i = [], 0
    while i < len(xs):
        k = i
        while k + 1 < len(xs) and xs[k + 1] == xs[k] + 1:
            k += 1
        out.append(str(xs[i]) if k == i else f"{xs[i]}..{xs[k]}")
        i = k + 1
    return "{" + ", ".join(out) + "}"


def _relation(names: list[str], pts: list[tuple[int, ...]]) -> tuple[str, list]:
    """`B = cA + e` (or `... or ...` for up to 3 offsets) when every valid pair lies on such lines,
    with the lines as (text, c, e)."""
    if len(names) != 2 or len(pts) < 2:
        return "", []
    best = None
    for c in (1, 2, 3, 4):
        offs = sorted({b - c * a for a, b in pts})
        if len(offs) <= 3 and (best is None or len(offs) < len(best[1])):
            best = (c, offs)
    if best is None:
        return "", []
    c, offs = best
    lines = [(f"{names[1]} = {_affine(c, e, names[0])}", c, e) for e in offs]
    return " or ".join(t for t, _, _ in lines), lines


# ----------------------------------------------------------------- symbolic input dims (--input x=3,H,W)


@dataclass(frozen=True)
class Symbol:
    """An input dimension given as a name, optionally constrained: `H`, `H%32` (H = 0 mod 32), `H%32=1`."""

    name: str
    modulus: int = 1
    residue: int = 0

    def __str__(self) -> str:
        if self.modulus == 1:
            return self.name
        return f"{self.name}%{self.modulus}" + (f"={self.residue}" if self.residue else "")


_SYMBOL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:%([0-9]{1,6})(?:=([0-9]{1,6}))?)?\Z")


def parse_symbol(text: str) -> Symbol | None:
    """A Symbol for `H`, `H%32`, `H%32=1`; None when `text` is not of that form."""
    m = _SYMBOL.match(text.strip())
    if not m:
        return None
    mod = int(m.group(2) or 1)
    if mod < 1:
        return None
    return Symbol(m.group(1), mod, int(m.group(3) or 0) % mod)


def split_symbols(input_shapes: dict | None) -> tuple[dict, dict]:
    """Separate symbolic dims from concrete ones: ({input: shape with None for symbols}, {(input, dim): Symbol})."""
    shapes, symbols = {}, {}
    for name, shape in (input_shapes or {}).items():
        dims = []
        for d, v in enumerate(shape):
            if isinstance(v, Symbol):
                symbols[(name, d)] = v
                dims.append(None)
            elif isinstance(v, str):
                s = parse_symbol(v)
                if s is None:
                    raise ValueError(f"input {name}: dimension {v!r} is neither a size nor a symbol like H or H%32")
                symbols[(name, d)] = s
                dims.append(None)
            else:
                dims.append(v)
        shapes[name] = tuple(dims)
    if any(d == 0 for (_, d) in symbols):
        raise ValueError("the channel dimension (the first) cannot be symbolic")
    return shapes, symbols


def representative(declared: int, s: Symbol) -> int:
    """The concrete size the IR is built at for symbol `s`: the declared size, moved up onto s's class."""
    return declared + (s.residue - declared) % s.modulus


def concrete_for_symbols(elab, input_shapes: dict):
    """Build the IR for symbolic input shapes: `elab(shapes) -> Graph` is called with concrete ones.

    The declared sizes come from a first elaboration with only the fully concrete overrides; each
    symbol then takes `representative(declared, symbol)`, doubled (up to 4 times) if the network
    cannot be built there, so that a file declared at an invalid size can still be analysed.
    """
    from ..diagnostics import ResdslError

    try:
        concrete, symbols = split_symbols(input_shapes)
    except ValueError as e:
        from ..diagnostics import Diagnostic
        raise ResdslError([Diagnostic("E036", str(e), hint="write sizes as numbers or names, e.g. x=3,H,W or x=3,H%32,W%32")]) from None
    plain = {k: v for k, v in concrete.items() if None not in v}
    declared = elab(plain)
    _classes_meet_constraints(declared, symbols)
    unknown = sorted({k for k, _ in symbols} - set(declared.inputs))
    if unknown:
        elab(concrete)  # raises the usual "no input named" diagnostic
    last = None
    order = list(declared.inputs)
    for scale in (1, 2, 4, 8, 16):
        shapes = dict(plain)
        chosen: dict[str, int] = {}  # one value per size name: a name used twice is one size (a tie)
        for name in sorted({k for k, _ in symbols}, key=order.index):
            base = declared.nodes[declared.inputs[name]].shape
            dims = list(concrete[name])
            if len(dims) != len(base):
                return elab(concrete), symbols  # the elaborator reports the rank mismatch
            for d, v in enumerate(dims):
                if v is None:
                    s = symbols[(name, d)]
                    dims[d] = chosen.setdefault(s.name, representative(base[d] * scale, s))
            shapes[name] = tuple(dims)
        try:
            return elab(shapes), symbols
        except ResdslError as e:
            last = e
    raise last


def _classes_meet_constraints(g: Graph, symbols: dict) -> None:
    """E042 at the file's named size when a given class (`H%16` for `x`'s dim 1) holds none of the sizes
    the file's `where` constraints allow for that dim (`H % 8 == 4`): said in the user's own terms,
    rather than at whatever example size the class was tried at.  Reads g.sizes; writes nothing."""
    from ..diagnostics import error

    sz = g.sizes
    if sz is None:
        return
    for (inp, d), sym in symbols.items():
        for i, k, root, c, e in sz.dims:
            if (i, k) != (inp, d) or sym.modulus == 1:
                continue
            M, res = sz.mods.get(root, (1, (0,)))
            lo, hi = sz.bounds.get(root, (1, None))
            if _class_meets(c, e, M, res, lo, hi, sym.modulus, sym.residue):
                continue
            span = next(r[3] for r in sz.roots if r[0] == root)
            where = sz.text.get(inp, ([], ""))[1] or f"{root} >= {lo}"
            good = f"{sym.name}%{M}" + (f"={res[0]}" if res[0] else "") if (c, e) == (1, 0) and len(res) == 1 \
                and M > 1 else None
            raise error("E042", f"the size `{sym}` given for dimension {d} of input `{inp}` (sizes that are "
                        f"{sym.residue} mod {sym.modulus}) is never one its constraints allow: {where}", span,
                        hint=(f"give a class they allow, e.g. `{good}`" if good else "give a class they allow") +
                        ", or give no size for this input to keep the file's own (`resdsl check FILE --sizes`)")


def _class_meets(c: int, e: int, M: int, res: tuple, lo: int, hi: int | None, m: int, r: int) -> bool:
    """Whether some X with lo <= X (<= hi), X % M in res has c*X + e = r (mod m); True when the period
    lcm(M, m) is too long to try (nothing is claimed then)."""
    period = math.lcm(M, m)
    if period > 1 << 20:
        return True
    top = lo + period if hi is None else min(hi + 1, lo + period)
    return any(X % M in res and (c * X + e) % m == r for X in range(lo, top))


def combined_formulas(g: Graph, report: SizeReport) -> list[tuple]:
    """Per node: its shape with each analysed dim replaced by that dim's formula (if it depends on it)."""
    out = []
    for n in g.nodes:
        shape = list(n.shape)
        for d in report.dims:
            f = d.formulas.get(n.id)
            if f is None or len(f) != len(shape):
                continue
            for j, v in enumerate(f):
                if isinstance(v, str):
                    shape[j] = v if isinstance(shape[j], int) else f"{shape[j]}·{v}"
        out.append(tuple(shape))
    return out


SIZE_CODES = ("E030", "E031", "E032", "E033", "E034", "E036")  # errors a different input size may fix
TRIAL_SCALES = (2, 4, 8)  # where to look for a buildable IR when the declared size is invalid


def explain_invalid_size(err, elab, input_shapes: dict | None):
    """`err` with its hint extended by the nearest valid sizes, when a different input size would fix it.

    The first diagnostic already points at the op that breaks; this adds, per spatial dimension whose
    size is not valid, the nearest valid sizes below and above and the rule (e.g. 188 + 16k).  It
    needs one buildable IR: the declared sizes scaled by 2, 4 and 8 are tried (bounded work).
    """
    from dataclasses import replace

    from ..diagnostics import ResdslError

    declared = getattr(err, "partial_inputs", None)
    if not declared or err.first.code not in SIZE_CODES or input_shapes and any(
            not isinstance(d, int) for s in input_shapes.values() for d in s):
        return err
    for scale in TRIAL_SCALES:
        shapes = {k: (v[0],) + tuple(d * scale for d in v[1:]) for k, v in declared.items()}
        try:
            g = elab(shapes)
            break
        except ResdslError:
            continue
    else:
        return err
    from .symbolic import SYMBOLS, analyze_dim

    notes = []
    for name, shape in declared.items():
        for d in range(1, len(shape)):
            sym = SYMBOLS[d - 1] if len(shape) <= 4 else f"S{d}"
            rest = {k: v for k, v in shapes.items()}
            rest[name] = shape[:d] + (shapes[name][d],) + shape[d + 1:]  # this dim scaled, the others declared
            try:
                g2 = elab(rest) if len(shape) > 2 else g
            except ResdslError:
                g2 = g
            a = analyze_dim(g2, g2.inputs[name], d, sym)
            if shape[d] in a.valid or not a.exact:
                continue
            below, above = a.valid.nearest(shape[d])
            near = " and ".join(f"{v} {w}" for v, w in ((below, "below"), (above, "above")) if v is not None)
            notes.append(f"{name} dim {d} = {shape[d]} is not a valid size ({sym}: {a.valid}); nearest: {near}")
    if not notes:
        return err
    first = err.first
    hint = "; ".join(([first.hint] if first.hint else []) + notes)
    new = ResdslError((replace(first, hint=hint),) + err.diagnostics[1:])
    return new

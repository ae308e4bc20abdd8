"""Valid input sizes: for which spatial sizes does the network run, and run without rounding?

Reads a `Network`; writes a `SizeReport`.  The sets are derived exactly by `symbolic.analyze_dim`
(shapes as affine functions of the size on residue classes; docs/sizes.md), not by sampling:
no time budget, and the same answer on a busy machine as on a quiet one.

"Rounding" means an op drops or pads pixels a perfect fit would not; each op says where in its
`rounding` facet (the rules are listed in resdsl/ops/rounding.py).
"""
from __future__ import annotations

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
    dims: list  # one symbolic.DimAnalysis per spatial dim of each input
    current: list[Rounding] = field(default_factory=list)  # problems at the network's own size

    def to_json(self) -> dict:
        return {"dims": [dim_json(d) for d in self.dims],
                "current_size_problems": [{"node": p.node, "op": p.op, "dim": p.dim, "message": p.message,
                                           "source": p.source} for p in self.current]}


def dim_json(d) -> dict:
    return {"input": d.input, "dim": d.dim, "symbol": d.symbol, "exact": d.exact, "why": d.why or None,
            "period": d.period, "threshold": d.threshold, "runs": d.runs,
            "valid": d.valid.to_json(), "unrounded": d.unrounded.to_json(),
            "valid_rule": str(d.valid), "unrounded_rule": str(d.unrounded)}


def valid_sizes(net, symbols: dict | None = None) -> SizeReport:
    """Exact valid and unrounded size sets per input dimension (the others held at their sizes).

    `symbols` maps (input, dim) to a `Symbol` (its name and constraint, e.g. H%32 for H = 0 mod 32);
    without it every spatial dim of every input is analysed, named H, W, D (suffixed per input).
    """
    from .symbolic import SYMBOLS, analyze_dim

    g = net.graph
    if symbols is None:
        symbols = {}
        for name, nid in g.inputs.items():
            rank = len(g.nodes[nid].shape)
            for d in range(1, rank):
                sym = SYMBOLS[d - 1] if rank - 1 <= 3 else f"S{d}"
                symbols[(name, d)] = Symbol(sym if len(g.inputs) == 1 else f"{sym}_{name}")
    dims = [analyze_dim(g, g.inputs[name], d, s.name, s.modulus, s.residue)
            for (name, d), s in sorted(symbols.items(), key=lambda kv: (list(g.inputs).index(kv[0][0]), kv[0][1]))]
    return SizeReport(dims, problems(g))


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
    unknown = sorted({k for k, _ in symbols} - set(declared.inputs))
    if unknown:
        elab(concrete)  # raises the usual "no input named" diagnostic
    last = None
    for scale in (1, 2, 4, 8, 16):
        shapes = dict(plain)
        for name in {k for k, _ in symbols}:
            base = declared.nodes[declared.inputs[name]].shape
            dims = list(concrete[name])
            if len(dims) != len(base):
                return elab(concrete), symbols  # the elaborator reports the rank mismatch
            for d, v in enumerate(dims):
                if v is None:
                    dims[d] = representative(base[d] * scale, symbols[(name, d)])
            shapes[name] = tuple(dims)
        try:
            return elab(shapes), symbols
        except ResdslError as e:
            last = e
    raise last


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

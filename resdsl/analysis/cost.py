"""Static cost model: MACs, memory and receptive fields from the IR (no torch).

Reads a `Graph` (node op, attrs, input and output shapes, param/buffer
counts); writes a `CostReport`.  All figures are per sample (batch 1).

MACs follow a *convention*: the rules of one well-known counter, applied to
the network as torchvision would write it (every layer an `nn.Module`:
`nn.ReLU`, `nn.MaxPool2d`, `nn.AdaptiveAvgPool2d`, ...; the residual add a
Python `+`).  docs/counting.md lists every rule side by side with the line of
the package it comes from.  Conventions:

  torchvision  conv / transposed conv / linear multiply-accumulates, bias
               excluded, nothing else (= FlopCounterMode / 2; the "GFLOPS"
               torchvision publishes).  The default.
  torch        torch.utils.flop_counter.FlopCounterMode: 2 x the above (FLOPs).
  fvcore       fvcore.nn.FlopCountAnalysis on a model in eval() mode.
  torchinfo    torchinfo.summary's "Total mult-adds".
  thop         thop.profile's MACs.
  ptflops      ptflops.get_model_complexity_info (pytorch backend) MACs.
  resdsl       torchvision's conv/linear MACs plus one op per element for
               norms (inference scale+shift), activations, scales and bias
               adds, k-1 per element for k-input adds (residual adds are
               counted here), pooling window size per output element.

Activation memory: `activation_elems` is the sum of every op's output
elements (input placeholders included); `saved_elems` counts each tensor
once if training keeps it for backward, as each op's `saves` facet says
(resdsl/ops/): the *inputs* of conv/linear/norm/scalar_scale/layer_scale/mul/
gelu/silu/elu/leaky_relu/relu6/hardswish/mish/maxpool ops are saved, the
*output* of relu/sigmoid/tanh/softmax/exp is saved, and add/concat/scale/
avgpool/flatten/crop/identity/views save nothing (their backward needs only
shapes).  Dropout/drop-path masks are not counted.

Each op's MACs per convention are its `macs` facet; every figure here is read
from the op definitions, and an op without a facet is an internal error
(`CostError`) naming the op and the pass, never a silent 0.

Receptive field per spatial dim: size r and jump j (stride in input pixels),
r_out = r_in + (k - 1) * d * j_in and j_out = j_in * s for conv and pooling;
merges take the max over their inputs; global pooling and flatten extend r
to the whole input; transposed conv and upsampling divide the jump.
"""
from __future__ import annotations

from fractions import Fraction
from itertools import compress, repeat
from operator import attrgetter
from math import prod
from typing import NamedTuple

from ..ir import Graph, Node, cycle_collector_paused
from ..ops import CONVENTIONS, OPS, MissingFacet, OpDef, Saves, Spatial
from ..ops.base import zero

Shape = tuple[int, ...]
UNITS = {"torch": "FLOPs"}  # every other convention counts multiply-accumulates
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
_PASS = "the cost pass"


class CostError(MissingFacet):
    """An op without a rule in a pass: a bug in resdsl, not in the user's file."""


# ---------------------------------------------------------------- receptive fields

# A receptive field per spatial dim of the network input: a pair (sizes, jumps) of tuples, size in pixels and
# jump (stride in input pixels).  A plain pair, not a class: one is made per conv / pooling node, and a
# frozen dataclass costs 1 us to build.  Jumps are exact: an int while they are whole (almost always: strides
# multiply), a Fraction only after a division -- Fraction arithmetic is ~10x slower than int and was most of
# the pass's time.
Field = tuple[tuple, tuple]


def _exact(q: Fraction) -> int | Fraction:
    """`q` as an int when it is whole, so that later arithmetic stays on ints."""
    return q.numerator if q.denominator == 1 else q


def _times_ratio(j: int | Fraction, L: int, M: int) -> int | Fraction:
    """j * L / M, exact (`_exact`); no Fraction when j is an int and M divides L (the usual case)."""
    if type(j) is int and L % M == 0:
        return j * (L // M)
    return _exact(j * Fraction(L, M))


def _rf_merge(n, xs, y, live):
    if len(live) == 1:
        return live[0]
    return (tuple(max(s) for s in zip(*(f[0] for f in live))), tuple(max(j) for j in zip(*(f[1] for f in live))))


def _rf_window(n, xs, y, live):
    (size, jump), a = live[0], n.attrs
    k, s = a["kernel_size"], a["stride"]
    d = a.get("dilation", (1,) * len(k))
    return (tuple([r + (ki - 1) * di * j for r, ki, di, j in zip(size, k, d, jump)]),
            tuple([j * si for j, si in zip(jump, s)]))


def _rf_transposed(n, xs, y, live):
    (size, jump), a = live[0], n.attrs
    k, s, d = a["kernel_size"], a["stride"], a["dilation"]
    # an output position sees at most floor((k-1)*d/s) + 1 input positions
    return (tuple(r + ((ki - 1) * di // si) * j for r, ki, si, di, j in zip(size, k, s, d, jump)),
            tuple(_exact(Fraction(j) / si) for j, si in zip(jump, s)))


def _rf_global(n, xs, y, live):
    f = live[0]
    size, jump = f
    if len(xs[0]) <= 1 or len(size) != len(xs[0]) - 1:
        return f
    return (tuple(r + (L - 1) * j for r, L, j in zip(size, xs[0][1:], jump)), jump)


def _rf_adaptive(n, xs, y, live):
    size, jump = [], []
    for r, L, o, j in zip(live[0][0], xs[0][1:], y[1:], live[0][1]):
        win = max(-(-((i + 1) * L) // o) - (i * L) // o for i in range(o))  # torch's adaptive windows
        size.append(r + (win - 1) * j)
        jump.append(_times_ratio(j, L, o))
    return (tuple(size), tuple(jump))


def _rf_resample(n, xs, y, live):
    size, jump = live[0]
    extra = 0 if n.attrs["mode"] == "nearest" else 1  # bilinear reads two neighbours
    return (tuple(r + extra * j for r, j in zip(size, jump)),
            tuple(_times_ratio(j, L, M) for j, L, M in zip(jump, xs[0][1:], y[1:])))


def _rf_subsample(n, xs, y, live):
    size, jump = live[0]
    return (size, tuple(j * s for j, s in zip(jump, n.attrs["stride"])))


# pointwise ops, norms (per-position), linear on features, crops and shape views keep the field: None below,
# so the pass hands the input's field on without a call
_RF = {Spatial.MERGE: _rf_merge, Spatial.WINDOW: _rf_window, Spatial.TRANSPOSED: _rf_transposed,
       Spatial.GLOBAL: _rf_global, Spatial.ADAPTIVE: _rf_adaptive, Spatial.RESAMPLE: _rf_resample,
       Spatial.SUBSAMPLE: _rf_subsample, Spatial.POINT: None, Spatial.CROP: None}


def _rf_as_report(f: Field | None) -> tuple[tuple | None, tuple | None]:
    """(rf_size, rf_jump) as `LayerCost` holds them: sizes as ints where whole, jumps as floats."""
    if f is None:
        return None, None
    size, jump = f
    if not all(map(isinstance, size, repeat(int))):  # (almost always ints: then the tuple itself)
        size = tuple(r if type(r) is int else int(r) if r == int(r) else float(r) for r in size)
    return size, tuple(map(float, jump))


# ---------------------------------------------------------------- report


class LayerCost(NamedTuple):
    """One node's figures (a named tuple: one is made per node when a report's `layers` are read)."""

    id: int
    name: str
    op: str
    cls: str
    macs: int
    params: int
    out_elems: int
    saved: bool  # output kept for backward in training
    rf_size: tuple[int, ...] | None
    rf_jump: tuple[float, ...] | None


class CostReport:
    """The cost pass's result.  The per-node figures are kept as columns (lists of ints, shared fields);
    `layers`, one `LayerCost` per node, is built from them on first use -- totals, classes and memory
    figures need no per-node object."""

    __slots__ = ("convention", "params", "buffers", "buffer_bytes", "by_class", "_nodes", "_classes", "_macs",
                 "_out", "_saved", "_fields", "_layers")

    def __init__(self, convention: str, params: int, buffers: int, buffer_bytes: int, by_class: dict[str, int],
                 nodes: list[Node], classes: list[str], macs: list[int], out_elems: list[int], saved: list[bool],
                 fields: list[Field | None]):
        self.convention, self.params, self.buffers, self.buffer_bytes = convention, params, buffers, buffer_bytes
        self.by_class = by_class
        self._nodes, self._classes, self._macs, self._out, self._saved, self._fields = (
            nodes, classes, macs, out_elems, saved, fields)
        self._layers: list[LayerCost] | None = None

    @property
    def layers(self) -> list[LayerCost]:
        """One row per node, in node order (built once, on first use)."""
        if self._layers is None:
            with cycle_collector_paused():  # one object per node, no cycles
                self._layers = self._rows()
        return self._layers

    def _rows(self) -> list[LayerCost]:
        sizes, jumps = [], []
        last, rf_size, rf_jump = None, None, None
        for f in self._fields:
            if f is not last:  # pointwise ops pass their input's field on: convert each field once
                last = f
                rf_size, rf_jump = _rf_as_report(f)
            sizes.append(rf_size)
            jumps.append(rf_jump)
        nodes = self._nodes
        columns = zip(map(attrgetter("id"), nodes), map(attrgetter("name"), nodes), map(attrgetter("op"), nodes),
                      self._classes, self._macs, map(attrgetter("params"), nodes), self._out, self._saved, sizes, jumps)
        return list(map(tuple.__new__, repeat(LayerCost), columns))  # LayerCost(*row), at C speed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CostReport):
            return NotImplemented
        return (self.convention, self.params, self.buffers, self.buffer_bytes, self.by_class, self.layers) == (
            other.convention, other.params, other.buffers, other.buffer_bytes, other.by_class, other.layers)

    __hash__ = None  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:  # the dataclass's form, rows included: reports are compared by repr in tests
        return (f"CostReport(convention={self.convention!r}, layers={self.layers!r}, params={self.params!r}, "
                f"buffers={self.buffers!r}, buffer_bytes={self.buffer_bytes!r}, by_class={self.by_class!r})")

    @property
    def unit(self) -> str:
        return UNITS.get(self.convention, "MACs")

    @property
    def total(self) -> int:
        return sum(self._macs)

    @property
    def activation_elems(self) -> int:
        return sum(self._out)

    @property
    def saved_elems(self) -> int:
        return sum(compress(self._out, self._saved))

    def param_bytes(self, dtype: str = "fp32") -> int:
        return self.params * DTYPE_BYTES[dtype]

    def to_json(self) -> dict:
        return {"convention": self.convention, "unit": self.unit, "total": self.total, "by_class": self.by_class,
                "params": self.params,
                "param_bytes": {d: self.param_bytes(d) for d in DTYPE_BYTES},
                "buffer_bytes": self.buffer_bytes,
                "activation_elems_per_sample": self.activation_elems,
                "saved_for_backward_elems_per_sample": self.saved_elems,
                "activation_bytes_per_sample": {d: self.activation_elems * b for d, b in DTYPE_BYTES.items()},
                "layers": [{"name": l.name, "op": l.op, "class": l.cls, "macs": l.macs, "out_elems": l.out_elems,
                            "saved_for_backward": l.saved,
                            "receptive_field": None if l.rf_size is None else list(l.rf_size),
                            "rf_stride": None if l.rf_jump is None else list(l.rf_jump)} for l in self.layers]}


def analyze(graph: Graph, convention: str = "torchvision") -> CostReport:
    """MACs per node under `convention`, memory figures and receptive fields.

    Reads the graph's nodes and each op's `macs`, `saves`, `spatial` and `family` facets; writes a report."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    with cycle_collector_paused():  # the pass makes no cycles: the collector would only walk its lists
        return _analyze(graph, convention)


class _OpFacts:
    """What the pass reads from one op's definition, looked up once per op and call."""

    __slots__ = ("spec", "rule", "saves", "rf", "cls", "macs")

    def __init__(self, spec: OpDef, convention: str):
        self.spec = spec
        rule = spec.macs.get(convention)
        if rule is None:
            spec.mac(convention, {}, [], (), 0)  # raises the op's own MissingFacet
        self.rule = None if rule is zero else rule  # `zero`: nothing to call
        if spec.saves not in (Saves.INPUT, Saves.OUTPUT, Saves.NOTHING):
            raise CostError(spec.name, "saves", _PASS)
        self.saves = spec.saves
        if spec.spatial not in _RF:
            raise CostError(spec.name, "spatial", _PASS)
        self.rf = _RF[spec.spatial]
        self.cls = spec.family.cost_class
        self.macs = 0  # this op's MACs so far, for `by_class`


def _analyze(graph: Graph, convention: str) -> CostReport:
    nodes = graph.nodes
    saved = [False] * len(nodes)
    fields: list[Field | None] = []
    macs: list[int] = []
    out_elems: list[int] = []
    classes: list[str] = []
    facts: dict[str, _OpFacts] = {}  # by op, in the order ops first appear (the order of `by_class`)
    # MACs of a node are a pure function of its op's rule, attrs, input and output shapes and parameter count;
    # the nodes of a replayed body share those objects (resdsl/replay.py), so they are computed once per
    # distinct objects (ids are stable: the graph holds every object for the whole pass).  One-input nodes
    # (most): the last answer per attrs object, its other inputs compared object by object (no key to build);
    # the others: keyed by all of them.
    memo: dict[tuple, int] = {}
    last: dict[int, tuple] = {}  # id(attrs) -> (rule, shape, input shape, params, MACs)
    buffer_bytes = 0
    for n in nodes:
        fx = facts.get(n.op)
        if fx is None:
            fx = facts[n.op] = _OpFacts(OPS[n.op], convention)
        shape, ins = n.shape, n.inputs
        saves = fx.saves
        if saves is Saves.INPUT:
            for i in ins:
                saved[i] = True
        elif saves is Saves.OUTPUT:
            saved[n.id] = True
        xs = None
        rule = fx.rule
        if rule is None:
            m = 0
        elif len(ins) == 1:  # by the attrs object, its last answer checked object by object
            a, x, p = n.attrs, nodes[ins[0]].shape, n.params
            hit = last.get(id(a))
            if hit is not None and hit[0] is rule and hit[1] is shape and hit[2] is x and hit[3] == p:
                m = hit[4]
            else:
                xs = [x]
                m = int(rule(a, xs, shape, p))
                last[id(a)] = (rule, shape, x, p, m)
            fx.macs += m
        else:
            key = (rule, id(n.attrs), id(shape), n.params, *[id(nodes[i].shape) for i in ins])
            m = memo.get(key)
            if m is None:
                xs = [nodes[i].shape for i in ins]
                m = memo[key] = int(rule(n.attrs, xs, shape, n.params))
            fx.macs += m
        macs.append(m)
        out_elems.append(prod(shape))
        classes.append(fx.cls)
        rf = fx.rf
        if not ins:  # a network input: the field of one pixel
            f = ((1,) * (len(shape) - 1),) * 2 if len(shape) > 1 else None
        elif rf is None:  # position-wise: the (first live) input's field
            f = fields[ins[0]]
            if f is None and len(ins) > 1:
                f = next((fields[i] for i in ins if fields[i] is not None), None)
        else:
            live = [fields[i] for i in ins if fields[i] is not None]
            if live:
                f = rf(n, xs or [nodes[i].shape for i in ins], shape, live)
            else:
                f = None
        fields.append(f)
        if n.buffers:  # BN: running mean and var in fp32, num_batches_tracked int64
            buffer_bytes += (n.buffers - 1) * 4 + 8
    by_class: dict[str, int] = {}
    for fx in facts.values():
        by_class[fx.cls] = by_class.get(fx.cls, 0) + fx.macs
    params = sum(map(attrgetter("params"), nodes))  # = graph.param_count / buffer_count, at C speed
    buffers = sum(map(attrgetter("buffers"), nodes))
    return CostReport(convention, params, buffers, buffer_bytes, by_class, nodes, classes, macs, out_elems, saved, fields)

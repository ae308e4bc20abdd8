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

import math
from dataclasses import dataclass, field
from fractions import Fraction

from ..ir import Graph, Node, cycle_collector_paused
from ..ops import CONVENTIONS, OPS, MissingFacet, OpDef, Saves, Spatial

Shape = tuple[int, ...]
UNITS = {"torch": "FLOPs"}  # every other convention counts multiply-accumulates
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
_PASS = "the cost pass"


class CostError(MissingFacet):
    """An op without a rule in a pass: a bug in resdsl, not in the user's file."""


def _numel(s: Shape) -> int:
    return math.prod(s)


# ---------------------------------------------------------------- receptive fields


@dataclass(frozen=True)
class Field:
    """Receptive field per spatial dim of the network input: size (pixels) and jump (stride).

    Jumps are exact: an int while they are whole (almost always: strides multiply), a Fraction only after
    a division -- Fraction arithmetic is ~10x slower than int and was most of the pass's time."""

    size: tuple[int | Fraction, ...]
    jump: tuple[int | Fraction, ...]


def _exact(q: Fraction) -> int | Fraction:
    """`q` as an int when it is whole, so that later arithmetic stays on ints."""
    return q.numerator if q.denominator == 1 else q


def _rf_merge(n, xs, y, live):
    return Field(tuple(max(s) for s in zip(*(f.size for f in live))), tuple(max(j) for j in zip(*(f.jump for f in live))))


def _rf_window(n, xs, y, live):
    f, a = live[0], n.attrs
    k, s = a["kernel_size"], a["stride"]
    d = a.get("dilation", (1,) * len(k))
    return Field(tuple(r + (ki - 1) * di * j for r, ki, di, j in zip(f.size, k, d, f.jump)),
                 tuple(j * si for j, si in zip(f.jump, s)))


def _rf_transposed(n, xs, y, live):
    f, a = live[0], n.attrs
    k, s, d = a["kernel_size"], a["stride"], a["dilation"]
    # an output position sees at most floor((k-1)*d/s) + 1 input positions
    return Field(tuple(r + ((ki - 1) * di // si) * j for r, ki, si, di, j in zip(f.size, k, s, d, f.jump)),
                 tuple(_exact(Fraction(j) / si) for j, si in zip(f.jump, s)))


def _rf_global(n, xs, y, live):
    f = live[0]
    if len(xs[0]) <= 1 or len(f.size) != len(xs[0]) - 1:
        return f
    return Field(tuple(r + (L - 1) * j for r, L, j in zip(f.size, xs[0][1:], f.jump)), f.jump)


def _rf_adaptive(n, xs, y, live):
    f = live[0]
    size, jump = [], []
    for r, L, o, j in zip(f.size, xs[0][1:], y[1:], f.jump):
        win = max(-(-((i + 1) * L) // o) - (i * L) // o for i in range(o))  # torch's adaptive windows
        size.append(r + (win - 1) * j)
        jump.append(_exact(j * Fraction(L, o)))
    return Field(tuple(size), tuple(jump))


def _rf_resample(n, xs, y, live):
    f = live[0]
    extra = 0 if n.attrs["mode"] == "nearest" else 1  # bilinear reads two neighbours
    return Field(tuple(r + extra * j for r, j in zip(f.size, f.jump)),
                 tuple(_exact(j * Fraction(L, M)) for j, L, M in zip(f.jump, xs[0][1:], y[1:])))


def _rf_subsample(n, xs, y, live):
    f = live[0]
    return Field(f.size, tuple(j * s for j, s in zip(f.jump, n.attrs["stride"])))


# pointwise ops, norms (per-position), linear on features, crops and shape views keep the field
_RF = {Spatial.MERGE: _rf_merge, Spatial.WINDOW: _rf_window, Spatial.TRANSPOSED: _rf_transposed,
       Spatial.GLOBAL: _rf_global, Spatial.ADAPTIVE: _rf_adaptive, Spatial.RESAMPLE: _rf_resample,
       Spatial.SUBSAMPLE: _rf_subsample, Spatial.POINT: lambda n, xs, y, live: live[0],
       Spatial.CROP: lambda n, xs, y, live: live[0]}


def _rf(n: Node, spec: OpDef, xs: list[Shape], y: Shape, ins: list[Field | None]) -> Field | None:
    live = [f for f in ins if f is not None]
    if not live:
        return None
    rule = _RF.get(spec.spatial)
    if rule is None:
        raise CostError(n.op, "spatial", _PASS)
    return rule(n, xs, y, live)


# ---------------------------------------------------------------- report


@dataclass(slots=True)
class LayerCost:
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


@dataclass
class CostReport:
    convention: str
    layers: list[LayerCost]
    params: int
    buffers: int
    buffer_bytes: int
    by_class: dict[str, int] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        return UNITS.get(self.convention, "MACs")

    @property
    def total(self) -> int:
        return sum(l.macs for l in self.layers)

    @property
    def activation_elems(self) -> int:
        return sum(l.out_elems for l in self.layers)

    @property
    def saved_elems(self) -> int:
        return sum(l.out_elems for l in self.layers if l.saved)

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
    with cycle_collector_paused():  # one LayerCost per node, no cycles: the collector would only walk them
        return _analyze(graph, convention)


def _analyze(graph: Graph, convention: str) -> CostReport:
    nodes = graph.nodes
    saved = [False] * len(nodes)
    fields_: list[Field | None] = [None] * len(nodes)
    specs = {}
    for n in nodes:
        spec = specs.get(n.op)
        if spec is None:
            spec = specs[n.op] = OPS[n.op]
        saves = spec.saves
        if saves is Saves.INPUT:
            for i in n.inputs:
                saved[i] = True
        elif saves is Saves.OUTPUT:
            saved[n.id] = True
        elif saves is not Saves.NOTHING:
            raise CostError(n.op, "saves", _PASS)
    layers: list[LayerCost] = []
    by_class: dict[str, int] = {}
    buffer_bytes = 0
    last_field, rf_size, rf_jump = None, None, None
    for n in nodes:
        spec, shape, ins = specs[n.op], n.shape, n.inputs
        xs = [nodes[i].shape for i in ins]
        macs = spec.mac(convention, n.attrs, xs, shape, n.params)
        if not ins:  # a network input: the field of one pixel
            f = Field((1,) * (len(shape) - 1), (1,) * (len(shape) - 1)) if len(shape) > 1 else None
        else:
            f = _rf(n, spec, xs, shape, [fields_[i] for i in ins])
        fields_[n.id] = f
        if f is not last_field:  # pointwise ops pass their input's field on: convert each field once
            last_field = f
            rf_size = None if f is None else tuple(r if type(r) is int else int(r) if r == int(r) else float(r)
                                                  for r in f.size)
            rf_jump = None if f is None else tuple(float(j) for j in f.jump)
        cls = spec.family.cost_class
        by_class[cls] = by_class.get(cls, 0) + macs
        if n.buffers:  # BN: running mean and var in fp32, num_batches_tracked int64
            buffer_bytes += (n.buffers - 1) * 4 + 8
        layers.append(LayerCost(n.id, n.name, n.op, cls, macs, n.params, _numel(shape), saved[n.id], rf_size, rf_jump))
    return CostReport(convention, layers, graph.param_count, graph.buffer_count, buffer_bytes, by_class)

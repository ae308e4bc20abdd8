"""The IR: a graph of operations with ordered inputs, shapes, counts and spans.

`Graph.nodes[i]` is the node with id i; nodes are created in program order,
which is also a topological order.  Edges are the nodes' ordered `inputs`
(duplicates allowed: `add(x, x)`), so algorithms that need a graph library get
a `networkx.MultiDiGraph` from `to_networkx()`, one edge per input slot.

Residual, dense (concat) and parallel structure stays visible as `Region`s:
which nodes form each branch, which form the shortcut, which node merges.
`Scope`s are the naming tree (labels and block calls) that qualified layer
names such as `layer1.0.conv1` come from.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterator, Mapping

from . import ops
from .span import Span

Shape = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CallSite:
    """One block call on the way from the network to a node."""

    block: str
    span: Span


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    op: str
    inputs: tuple[int, ...]
    attrs: Mapping[str, object]
    shape: Shape
    params: int  # trainable parameters, as torch counts them
    buffers: int  # buffer elements (BatchNorm running stats and num_batches_tracked)
    scope: int  # Scope id this node was named in
    label: str | None  # the user's label, if any
    span: Span
    calls: tuple[CallSite, ...] = ()
    region: int | None = None  # innermost Region this node belongs to
    name: str = ""  # qualified name, filled by `assign_names`

    def __reduce__(self):  # pickle/deepcopy: the read-only attrs travel as a plain dict
        return _rebuild, (Node, _fields_with_plain_attrs(self))

    @property
    def spec(self) -> ops.OpDef:
        return ops.OPS[self.op]

    @property
    def family(self) -> ops.Family:
        return ops.OPS[self.op].family


@dataclass(frozen=True, slots=True)
class Region:
    """A residual, dense or parallel construct.

    `input` feeds every branch (and the shortcut); `merge` is the add/concat
    node.  `branches[i]` lists the node ids created for branch i (nested
    regions included), `shortcut` the shortcut's nodes (empty for identity).
    `branch_slots[i]` is the input slot of `merge` that branch i arrives at.
    """

    id: int
    kind: str  # residual | dense | parallel
    parent: int | None
    input: int
    merge: int
    branches: tuple[tuple[int, ...], ...]
    branch_slots: tuple[int, ...]
    shortcut: tuple[int, ...]
    attrs: Mapping[str, object]
    scope: int
    span: Span
    calls: tuple[CallSite, ...] = ()
    name: str = ""

    def __reduce__(self):  # as Node's
        return _rebuild, (Region, _fields_with_plain_attrs(self))


# Making a node without the dataclass __init__: it sets each of the 13 fields with object.__setattr__
# (a frozen class), which costs twice as much as calling the slots' own descriptors.  The elaborator
# makes every node through `new_node`; `Node(...)` stays the same value.
assert Node.__slots__ == ("id", "op", "inputs", "attrs", "shape", "params", "buffers", "scope", "label", "span",
                          "calls", "region", "name"), "new_node must set every field of Node, in this order"
(_set_id, _set_op, _set_inputs, _set_attrs, _set_shape, _set_params, _set_buffers, _set_scope, _set_label, _set_span,
 _set_calls, _set_region, _set_name) = (Node.__dict__[f].__set__ for f in Node.__slots__)


def new_node(id: int, op: str, inputs: tuple[int, ...], attrs: Mapping[str, object], shape: Shape, params: int,
             buffers: int, scope: int, label: str | None, span: Span, calls: tuple[CallSite, ...],
             region: int | None) -> Node:
    """`Node(...)` with every field given but the name (set by `assign_names`), made faster."""
    n = object.__new__(Node)
    _set_id(n, id)
    _set_op(n, op)
    _set_inputs(n, inputs)
    _set_attrs(n, attrs)
    _set_shape(n, shape)
    _set_params(n, params)
    _set_buffers(n, buffers)
    _set_scope(n, scope)
    _set_label(n, label)
    _set_span(n, span)
    _set_calls(n, calls)
    _set_region(n, region)
    _set_name(n, "")
    return n


def _fields_with_plain_attrs(v: Node | Region) -> tuple:
    """A node's or region's fields in order, `attrs` as a dict: a mappingproxy cannot be pickled."""
    return tuple(dict(getattr(v, f)) if f == "attrs" else getattr(v, f) for f in v.__slots__)


def _rebuild(cls: type, values: tuple) -> Node | Region:
    """Undo `_fields_with_plain_attrs` (for pickle and copy.deepcopy): attrs read-only again."""
    names = cls.__slots__
    return cls(*(MappingProxyType(v) if f == "attrs" else v for f, v in zip(names, values)))


@dataclass(frozen=True, slots=True)
class Scope:
    id: int
    parent: int | None
    label: str | None  # None: named automatically from `hint`
    hint: str
    span: Span
    kind: str  # network | block | group | residual | dense | parallel | branch | shortcut
    name: str = ""  # qualified name, filled by `assign_names`


assert Scope.__slots__ == ("id", "parent", "label", "hint", "span", "kind", "name"), "new_scope sets every field"
assert Region.__slots__ == ("id", "kind", "parent", "input", "merge", "branches", "branch_slots", "shortcut", "attrs",
                            "scope", "span", "calls", "name"), "new_region sets every field"
_SCOPE_SETTERS = tuple(Scope.__dict__[f].__set__ for f in Scope.__slots__)
_REGION_SETTERS = tuple(Region.__dict__[f].__set__ for f in Region.__slots__)


def new_scope(id: int, parent: int | None, label: str | None, hint: str, span: Span, kind: str) -> Scope:
    """`Scope(...)` without its name (set by `assign_names`), made as `new_node` makes a node."""
    sc = object.__new__(Scope)
    s_id, s_parent, s_label, s_hint, s_span, s_kind, s_name = _SCOPE_SETTERS
    s_id(sc, id)
    s_parent(sc, parent)
    s_label(sc, label)
    s_hint(sc, hint)
    s_span(sc, span)
    s_kind(sc, kind)
    s_name(sc, "")
    return sc


def new_region(id: int, kind: str, parent: int | None, input: int, merge: int, branches: tuple, branch_slots: tuple,
               shortcut: tuple, attrs: Mapping[str, object], scope: int, span: Span, calls: tuple) -> Region:
    """`Region(...)` without its name (set by `assign_names`), made as `new_node` makes a node."""
    r = object.__new__(Region)
    for setter, v in zip(_REGION_SETTERS, (id, kind, parent, input, merge, branches, branch_slots, shortcut, attrs,
                                           scope, span, calls, "")):
        setter(r, v)
    return r


@dataclass(frozen=True, slots=True)
class Contract:
    """An `assert` that names a network total (params, buffers, macs): checked once the graph
    is built (resdsl/contracts.py), in the variables it saw where it stood."""

    test: object  # syntax.Expr
    message: object  # syntax.Expr | None
    env: Mapping[str, object]
    span: Span


@dataclass
class Graph:
    name: str
    params: dict[str, object] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    inputs: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)
    regions: list[Region] = field(default_factory=list)
    scopes: list[Scope] = field(default_factory=list)
    # How scopes, regions and region parts nest, in program order:
    # (number of nodes created so far, "open"|"close", "scope"|"region"|"part", id)
    # where a part id is the branch index, or -1 for a residual's shortcut.
    structure: list[tuple[int, str, str, int]] = field(default_factory=list)
    contracts: list[Contract] = field(default_factory=list)
    sizes: object = None  # sizevars.Sizes: the named input sizes (input x: [3, H, W]), None when there are none

    # -- queries
    def successors(self) -> list[list[int]]:
        succ: list[list[int]] = [[] for _ in self.nodes]
        for n in self.nodes:
            for i in n.inputs:
                succ[i].append(n.id)
        return succ

    def to_networkx(self) -> "networkx.MultiDiGraph":  # noqa: F821
        """Lossless export: one edge per input slot (key = slot index)."""
        import networkx as nx  # on demand: importing it takes longer than checking ResNet-50

        g = nx.MultiDiGraph(name=self.name)
        for n in self.nodes:
            g.add_node(n.id, op=n.op, name=n.name, shape=n.shape, params=n.params, buffers=n.buffers,
                       attrs=dict(n.attrs), region=n.region, span=str(n.span))
        for n in self.nodes:
            for slot, i in enumerate(n.inputs):
                g.add_edge(i, n.id, key=slot, shape=self.nodes[i].shape)
        return g

    @property
    def param_count(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def buffer_count(self) -> int:
        return sum(n.buffers for n in self.nodes)

    def lint(self) -> None:
        """Check the IR's invariants; raises AssertionError naming the broken one.  Linear in the graph (plus
        the regions' branch lists): each node is checked against its inputs and its op's rules only."""
        known_attrs: dict[str, set[str]] = {}  # op -> its parameters and derived attributes, made once per op
        for idx, n in enumerate(self.nodes):
            assert n.id == idx, f"node {n.name or idx}: id {n.id} != position {idx}"
            assert n.op in ops.OPS, f"node {n.name}: unknown op {n.op!r}"
            spec = ops.OPS[n.op]
            lo, hi = spec.arity
            assert lo <= len(n.inputs) and (hi < 0 or len(n.inputs) <= hi), f"node {n.name}: {len(n.inputs)} inputs for {n.op}"
            assert all(0 <= i < idx for i in n.inputs), f"node {n.name}: inputs {n.inputs} not topologically before {idx}"
            assert isinstance(n.attrs, MappingProxyType), f"node {n.name}: attrs must be read-only"
            assert all(isinstance(d, int) and d > 0 for d in n.shape), f"node {n.name}: bad shape {n.shape}"
            if spec.user:
                known = known_attrs.get(n.op)
                if known is None:
                    known = known_attrs[n.op] = {p.name for p in spec.params} | set(spec.derived)
                extra = set(n.attrs) - known
                assert not extra, f"node {n.name}: attributes {sorted(extra)} not in the op table for {n.op}"
                xs = [self.nodes[i].shape for i in n.inputs]
                shape, attrs = spec.elaborate(n.attrs, xs)
                assert shape == n.shape, f"node {n.name}: stored shape {n.shape} != inferred {shape}"
                assert attrs == dict(n.attrs), f"node {n.name}: stored attributes differ from the shape rule's"
                counts = spec.count(attrs, xs, shape)
                assert counts == (n.params, n.buffers), f"node {n.name}: counts {(n.params, n.buffers)} != {counts}"
        names = [n.name for n in self.nodes]
        assert len(set(names)) == len(names), "node names are not unique"
        for name, i in list(self.inputs.items()) + list(self.outputs.items()):
            assert 0 <= i < len(self.nodes), f"input/output {name} points at missing node {i}"
        for r in self.regions:
            assert r.merge < len(self.nodes) and self.nodes[r.merge].spec.merge, f"region {r.name}: bad merge"
            assert len(r.branches) == len(r.branch_slots), f"region {r.name}: branch/slot mismatch"
            for b in r.branches:
                assert all(r.input < i < r.merge for i in b), f"region {r.name}: branch nodes outside the region"


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Run a block with Python's cyclic garbage collector off (and restore its state after).

    The IR is acyclic data, made and read in one go: the collector's passes over it only cost time
    (they made 10,000 blocks take 13x as long as 1,000, and half again on the path count).  Reference
    counting still frees everything; cycles made meanwhile (exceptions) are collected once it is back on."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def freeze(attrs: dict) -> Mapping[str, object]:
    return MappingProxyType(dict(attrs))


def assign_names(graph: Graph) -> None:
    """Give every scope and node a unique qualified name, e.g. `layer1.0.conv1`.

    Labels win; unlabeled nodes and scopes are named from their op or block
    (`relu`, `relu_1`, ...) skipping names already taken in the same scope.
    """
    taken: dict[int | None, set[str]] = {}
    # A dotted label `conv.0` takes `conv` in its scope: automatic names must not enter it.
    for s in graph.scopes:
        if s.label is not None:
            taken.setdefault(s.parent, set()).add(s.label.split(".", 1)[0])
    for n in graph.nodes:
        if n.label is not None:
            taken.setdefault(n.scope, set()).add(n.label.split(".", 1)[0])
    counters: dict[tuple[int | None, str], int] = {}

    def auto(parent: int | None, hint: str) -> str:
        used = taken.setdefault(parent, set())
        k = counters.get((parent, hint), 0)
        while True:
            name = hint if k == 0 else f"{hint}_{k}"
            k += 1
            if name not in used:
                counters[(parent, hint)] = k
                used.add(name)
                return name

    scope_names: dict[int, str] = {}
    for s in graph.scopes:  # parents precede children (ids increase)
        if s.parent is None:
            scope_names[s.id] = ""
            continue
        own = s.label if s.label is not None else auto(s.parent, s.hint)
        parent = scope_names[s.parent]
        scope_names[s.id] = f"{parent}.{own}" if parent else own
    # Naming finishes the construction of the nodes, scopes and regions the elaborator just made and
    # no one else has seen yet; setting the field in place avoids copying 10^5 of them.
    for n in graph.nodes:
        own = n.label
        if own is None:  # auto(n.scope, n.op) inline, its first try at once: most nodes are named so
            key = (n.scope, n.op)
            k = counters.get(key, 0)
            used = taken.get(n.scope)
            if used is None:
                used = taken[n.scope] = set()
            own = n.op if k == 0 else f"{n.op}_{k}"
            if own in used:
                own = auto(n.scope, n.op)
            else:
                counters[key] = k + 1
                used.add(own)
        parent = scope_names[n.scope]
        _set_name(n, f"{parent}.{own}" if parent else own)
    for s in graph.scopes:
        object.__setattr__(s, "name", scope_names[s.id])
    seen: dict[str, int] = {}
    for r in graph.regions:  # a region is named after its scope; two in one scope get a suffix
        base = scope_names[r.scope] or r.kind
        k = seen.get(base, 0)
        seen[base] = k + 1
        object.__setattr__(r, "name", base if k == 0 else f"{base}#{k}")


def replace_node(n: Node, **changes) -> Node:
    from dataclasses import replace
    return replace(n, **changes)


def replace_region(r: Region, **changes) -> Region:
    from dataclasses import replace
    return replace(r, **changes)

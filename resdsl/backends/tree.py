"""The module tree of a network: which `nn.Module` holds each layer and what each forward reads and returns.

Reads a named `Graph`: node names (`layer1.0.conv1`), inputs, scopes (for kinds and block names) and the
values that must be returned (network outputs, extracted features).  Writes a tree of `Unit`s; pure, no torch.

Every name prefix of a layer name is a module (so state_dict keys are the layer names).  A prefix whose
layers run as one contiguous stretch of the enclosing module's program is a `Unit`: a module with its own
forward, called once from its parent.  That is every scope of a checked program (a scope's nodes are made
between its open and close).  A prefix whose layers are interleaved with others' -- graphs rewritten by
analyses, e.g. lesion gates inserted at the top level between a block's layers -- is a plain holder: its
children are built and called by the nearest enclosing unit.  Units nest at most MAX_UNIT_DEPTH deep;
deeper prefixes are holders too, which bounds the forward call depth whatever the names.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from ..ir import Graph, Scope

MAX_UNIT_DEPTH = 100


@dataclass
class _Trie:
    name: str  # this component
    path: str  # the qualified name
    children: dict[str, "_Trie"] = field(default_factory=dict)
    node: int | None = None  # a layer: its IR node id
    ids: list[int] = field(default_factory=list)  # the layers below, in program order


@dataclass(frozen=True)
class Leaf:
    """One layer of a unit; `ref` is the attribute path from the unit to its module (or name, if functional)."""

    node: int
    ref: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    """A child unit, called as one module."""

    unit: "Unit"
    ref: tuple[str, ...]


@dataclass(frozen=True)
class Unit:
    path: str  # qualified name; "" for the network
    scope: Scope | None
    items: tuple  # Leaf | Call, in program order
    holders: tuple[tuple[str, ...], ...]  # refs of plain holder modules, parents first
    inputs: tuple[int, ...]  # ids of values read from outside, in forward's argument order
    outputs: tuple[int, ...]  # ids of values returned, in order
    first: int  # smallest node id below

    @property
    def own(self) -> str:
        return self.path.rsplit(".", 1)[-1]


def _trie(graph: Graph) -> _Trie:
    root = _Trie("", "")
    for n in graph.nodes:
        if n.op == "input":
            continue
        t = root
        t.ids.append(n.id)
        parts = n.name.split(".")
        for k, part in enumerate(parts):
            child = t.children.get(part)
            if child is None:
                child = t.children[part] = _Trie(part, ".".join(parts[:k + 1]))
            t = child
            t.ids.append(n.id)
        if t.node is not None or t.children:
            raise AssertionError(f"internal error in the module tree: layer name {n.name!r} is used twice")
        t.node = n.id
    return root


def _contiguous(ids: list[int], universe: list[int]) -> bool:
    """Whether `ids` (a sorted subset of the sorted `universe`) is one run of consecutive universe elements."""
    lo = bisect.bisect_left(universe, ids[0])
    hi = bisect.bisect_right(universe, ids[-1])
    return hi - lo == len(ids)


class _Builder:
    def __init__(self, graph: Graph, returned: list[int]):
        self.graph = graph
        self.returned = set(returned)
        self.readers: list[list[int]] = [[] for _ in graph.nodes]
        for n in graph.nodes:
            for i in n.inputs:
                self.readers[i].append(n.id)
        self.scopes = {s.name: s for s in graph.scopes}

    def unit(self, t: _Trie, depth: int) -> Unit:
        items: list = []
        holders: list[tuple[str, ...]] = []
        self._collect(t, t.ids, (), depth, items, holders)
        items.sort(key=lambda it: it.node if isinstance(it, Leaf) else it.unit.first)
        inside = set(t.ids)
        inputs: dict[int, None] = {}
        for i in t.ids:
            for j in self.graph.nodes[i].inputs:
                if j not in inside:
                    inputs.setdefault(j)
        outputs = tuple(i for i in t.ids if i in self.returned or any(r not in inside for r in self.readers[i]))
        return Unit(t.path, self.scopes.get(t.path), tuple(items), tuple(holders), tuple(inputs), outputs, t.ids[0])

    def _collect(self, t: _Trie, universe: list[int], ref: tuple[str, ...], depth: int, items: list,
                 holders: list) -> None:
        for child in t.children.values():
            cref = ref + (child.name,)
            if child.node is not None:
                items.append(Leaf(child.node, cref))
            elif depth < MAX_UNIT_DEPTH and _contiguous(child.ids, universe):
                items.append(Call(self.unit(child, depth + 1), cref))
            else:
                holders.append(cref)
                self._collect(child, universe, cref, depth + 1, items, holders)


def module_tree(graph: Graph, returned: list[int]) -> Unit:
    """The network's unit; `returned` are the ids of the values forward returns (outputs, features)."""
    b = _Builder(graph, returned)
    root = _trie(graph)
    graph_inputs = tuple(graph.inputs.values())
    if not root.ids:  # `input x; output y`: forward returns its argument
        return Unit("", None, (), (), graph_inputs, tuple(returned), 0)
    unit = b.unit(root, 0)
    return Unit(unit.path, unit.scope, unit.items, unit.holders, graph_inputs, tuple(returned), unit.first)

"""Feature extraction in timm's `features_only` convention: which intermediate maps a backbone returns.

Reads a named `Graph` (node names, shapes, the module tree of backends/tree.py).  Writes a pruned copy
of the graph whose outputs are the chosen feature maps, and their `Feature` records (channels, reduction
and module path, all static).  Pure: no torch.

The candidate feature points, indexed by `out_indices` as in timm: walk the top-level modules of the
network in program order, opening any non-block module (a group, nn.Sequential...) whose own parts run at
several resolutions; the last module at each spatial resolution is a feature point.  For ResNet that is
relu (the stem, reduction 2), layer1 (4), layer2 (8), layer3 (16), layer4 (32) -- timm's five.
Pooling layers that leave 1x1 maps (the classifier's global pooling) are not feature points.  A name
(any layer or scope path, e.g. "layer2.0") picks that module's output instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..ir import Graph, Node
from . import tree


@dataclass(frozen=True)
class Feature:
    module: str  # the layer or scope whose output this is
    node: int  # its value's node id (in the graph `plan` returns)
    num_chs: int
    reduction: float | int | None  # cumulative stride along the first spatial dim (None: not a spatial map)
    index: int  # position among the candidates, or -1 for a named module that is not one


def _jumps(graph: Graph) -> list[float | int | None]:
    """Each value's reduction: its cumulative stride along the first spatial dim (analysis/cost.py's
    receptive-field jump), so valid-padding shrinkage does not count; None where it is not spatial."""
    from ..analysis.cost import analyze
    out: list[float | int | None] = []
    for n, layer in zip(graph.nodes, analyze(graph).layers):
        j = layer.rf_jump[0] if layer.rf_jump and len(n.shape) >= 2 else None
        out.append(int(j) if j is not None and j == int(j) else j)
    return out


def _points(graph: Graph, unit, jump) -> list[tuple[str, int]]:
    """(module path, value id) of the modules at the top of the tree, non-block modules opened where
    their parts change resolution."""
    out: list[tuple[str, int]] = []
    for it in unit.items:
        if isinstance(it, tree.Leaf):
            out.append((graph.nodes[it.node].name, it.node))
            continue
        child = it.unit
        parts = _points(graph, child, jump) if child.scope is None or child.scope.kind != "block" else []
        if len({jump[v] for _, v in parts}) > 1:
            out += parts
        elif len(child.outputs) == 1:
            out.append((child.path, child.outputs[0]))
    return out


def _global_pool(graph: Graph, v: int) -> bool:
    """A pooling layer that leaves 1x1 maps: the head's pooling, not a feature (a 1x1 stage output is one)."""
    n = graph.nodes[v]
    return n.family == "pool" and all(d == 1 for d in n.shape[1:]) and \
        any(d > 1 for i in n.inputs for d in graph.nodes[i].shape[1:])


def candidates(graph: Graph) -> list[Feature]:
    """The default feature points (see the module docstring)."""
    unit = tree.module_tree(graph, list(graph.outputs.values()))
    jump = _jumps(graph)
    points = [(p, v) for p, v in _points(graph, unit, jump) if jump[v] is not None and not _global_pool(graph, v)]
    chosen = [pt for k, pt in enumerate(points) if k + 1 == len(points) or jump[points[k + 1][1]] != jump[pt[1]]]
    return [Feature(p, v, graph.nodes[v].shape[0], jump[v], k) for k, (p, v) in enumerate(chosen)]


def _named(graph: Graph, name: str) -> int | None:
    for n in graph.nodes:
        if n.name == name and n.op != "input":
            return n.id
    unit = tree.module_tree(graph, list(graph.outputs.values()))
    stack = [unit]
    while stack:
        u = stack.pop()
        if u.path == name:
            return u.outputs[0] if len(u.outputs) == 1 else None
        stack += [it.unit for it in u.items if isinstance(it, tree.Call)]
    return None


def select(graph: Graph, out_indices: Sequence[int | str] | None = None) -> list[Feature]:
    """The features `out_indices` asks for: candidate indices (negative ones count from the end), or names."""
    cands = candidates(graph)
    if out_indices is None:
        return cands
    listing = ", ".join(f"{f.index}: {f.module} ({f.num_chs} channels, reduction {f.reduction})" for f in cands)
    picked: list[Feature] = []
    for want in out_indices:
        if isinstance(want, bool) or not isinstance(want, (int, str)):
            raise TypeError(f"out_indices takes ints or module names, not {want!r}")
        if isinstance(want, int):
            if not -len(cands) <= want < len(cands):
                raise ValueError(f"out_indices: no feature {want}; the feature points are {listing or 'none'}")
            picked.append(cands[want])
            continue
        nid = _named(graph, want)
        if nid is None:
            raise ValueError(f"out_indices: no layer or single-output scope named {want!r}; "
                             f"the feature points are {listing or 'none'}")
        match = [f for f in cands if f.node == nid]
        picked.append(match[0] if match else Feature(want, nid, graph.nodes[nid].shape[0], _jumps(graph)[nid], -1))
    return picked


def plan(graph: Graph, out_indices: Sequence[int | str] | None = None) -> tuple[Graph, list[Feature]]:
    """A copy of `graph` that computes only what the selected features need, and the features (new ids)."""
    feats = select(graph, out_indices)
    need = {f.node for f in feats}
    for n in reversed(graph.nodes):
        if n.id in need:
            need.update(n.inputs)
    need.update(graph.inputs.values())  # forward keeps every argument
    keep = [n for n in graph.nodes if n.id in need]
    new_id = {n.id: k for k, n in enumerate(keep)}
    nodes = [Node(new_id[n.id], n.op, tuple(new_id[i] for i in n.inputs), n.attrs, n.shape, n.params, n.buffers,
                  n.scope, n.label, n.span, n.calls, None, n.name) for n in keep]
    g = Graph(graph.name, dict(graph.params), nodes, {k: new_id[v] for k, v in graph.inputs.items()},
              {f.module: new_id[f.node] for f in feats}, [], list(graph.scopes), [])
    return g, [Feature(f.module, new_id[f.node], f.num_chs, f.reduction, f.index) for f in feats]

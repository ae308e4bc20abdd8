"""The unraveled ("ensemble") view: every input->output path as its own lane.

Reads a `Graph`'s top-level regions (in program order) and writes a
`Diagram`.  A path is one choice per region: for a residual, its branch or
its shortcut (identity, or the projection drawn as a dashed node); for a
dense layer, its branch or the carried input; for a parallel block, one of
its branches.  Lanes are grouped into clusters by length (number of branches
taken), as in Prince, "Understanding Deep Learning", figure 11.4b and Veit et
al. 2016.  Regions nested inside a branch stay inside that branch's node.
Ops between regions (e.g. the ReLU after each add) lie on every path; the
caption says so rather than repeating them in every lane.

Only small networks can be drawn this way (2**6 = 64 lanes for 6 residual
blocks); beyond `MAX_BLOCKS` it raises E050 pointing to `resdsl paths`.
"""
from __future__ import annotations

import itertools

from ..diagnostics import error
from ..ir import Graph, Region
from .diagram import DCluster, DEdge, Diagram, DNode, shortcut_text
from .labels import describe, family, fmt_count, fmt_shape

MAX_BLOCKS = 6


def _choices(r: Region) -> list[int]:
    """-1 = the shortcut / carried input, i >= 0 = branch i."""
    if r.kind == "parallel":
        return list(range(len(r.branches)))
    return [-1] + list(range(len(r.branches)))


def unraveled_diagram(g: Graph) -> Diagram:
    tops = [r for r in g.regions if r.parent is None]
    if len(tops) > MAX_BLOCKS:
        raise error("E050", f"{g.name} has {len(tops)} residual/dense blocks; the unraveled view draws one lane "
                            f"per path (2**{len(tops)} here) and is limited to {MAX_BLOCKS} blocks",
                    g.scopes[0].span if g.scopes else None,
                    hint="use `resdsl paths FILE` for exact path counts and the length histogram, "
                         "or render --level block")
    d = Diagram(g.name, "unraveled")
    rep: dict[int, str] = {}
    for name, i in g.inputs.items():
        d.nodes.append(DNode(f"in_{i}", "input", f"input {name}", "io", None, (i,), detail=fmt_shape(g.nodes[i].shape)))
        rep[i] = f"in_{i}"
    if not tops:
        d.note = "no residual blocks: a single path"
    in_region = set()
    for r in tops:
        in_region.update(i for b in r.branches for i in b)
        in_region.update(r.shortcut)
        in_region.add(r.merge)
    first_in = tops[0].input if tops else len(g.nodes) - 1
    last = tops[-1].merge if tops else len(g.nodes) - 1
    stem = [n.id for n in g.nodes if n.op != "input" and n.id <= first_in and n.id not in in_region]
    head = [n.id for n in g.nodes if n.id > last]
    between = [n.id for n in g.nodes if first_in < n.id < last and n.id not in in_region and n.op != "input"]
    fan = rep.get(first_in, "")
    if stem:
        d.nodes.append(_box("stem", "stem", g, stem))
        for i in g.nodes[stem[0]].inputs:
            d.edges.append(DEdge(rep[i], "stem", fmt_shape(g.nodes[i].shape), "data", g.nodes[i].shape))
        fan = "stem"
    if not tops:
        end = fan
    else:
        d.nodes.append(DNode("sum", "add", "Σ", "merge", None, tuple(r.merge for r in tops),
                             detail="sum over all paths"))
        end = "sum"
        lanes = list(itertools.product(*[_choices(r) for r in tops]))
        by_len: dict[int, list[tuple[int, ...]]] = {}
        for lane in lanes:
            by_len.setdefault(sum(c >= 0 for c in lane), []).append(lane)
        j = 0
        column: dict[int, list[str]] = {r.id: [] for r in tops}
        d.ordered.append(fan)
        for length in sorted(by_len):
            group = by_len[length]
            cid = f"cluster_len{length}"
            d.clusters.append(DCluster(cid, f"length {length}: {len(group)} path{'s' if len(group) != 1 else ''}",
                                       None, "lanes"))
            for lane in group:
                prev = fan
                for r, c in zip(tops, lane):
                    nid = f"L{j}_{r.id}"
                    if c >= 0:
                        ids = list(r.branches[c])
                        title = r.name if len(r.branches) == 1 else f"{r.name}[{c}]"
                        d.nodes.append(DNode(nid, "lane", title, _dominant(g, ids), cid, tuple(ids),
                                             sum(g.nodes[i].params for i in ids), detail=_ops(g, ids)))
                    elif r.shortcut:
                        d.nodes.append(DNode(nid, "lane", f"{r.name} shortcut", "other", cid, tuple(r.shortcut),
                                             sum(g.nodes[i].params for i in r.shortcut), detail=shortcut_text(g, r)))
                    else:  # identity: a small point keeps the lanes aligned block by block
                        d.nodes.append(DNode(nid, "skip", f"{r.name} identity", "other", cid, ()))
                    d.edges.append(DEdge(prev, nid, "", "lane"))
                    column[r.id].append(nid)
                    prev = nid
                d.edges.append(DEdge(prev, "sum", "", "lane"))
                j += 1
        d.same_rank = [ids for ids in column.values() if len(ids) > 1]
        d.note = f"{len(lanes)} paths through {len(tops)} blocks"
        if between:
            names = ", ".join(describe(g.nodes[i]) for i in between[:4]) + (", ..." if len(between) > 4 else "")
            d.note += f"; ops between blocks ({names}) lie on every path and are not repeated"
    if head:
        d.nodes.append(_box("head", "head", g, head))
        d.edges.append(DEdge(end, "head", fmt_shape(g.nodes[last].shape) if tops else "", "data",
                             g.nodes[last].shape if tops else None))
        end = "head"
    for k, (name, i) in enumerate(g.outputs.items()):
        oid = f"out_{k}"
        d.nodes.append(DNode(oid, "output", f"output {name}", "io", None, (), detail=fmt_shape(g.nodes[i].shape)))
        d.edges.append(DEdge(end, oid, fmt_shape(g.nodes[i].shape), "data", g.nodes[i].shape))
    return d


def _ops(g: Graph, ids: list[int]) -> str:
    if len(ids) > 4:
        return f"{len(ids)} ops, {fmt_count(sum(g.nodes[i].params for i in ids))} params"
    return " → ".join(describe(g.nodes[i]) for i in ids) or "empty"


def _box(nid: str, title: str, g: Graph, ids: list[int]) -> DNode:
    return DNode(nid, "item", title, _dominant(g, ids), None, tuple(ids), sum(g.nodes[i].params for i in ids),
                 detail=_ops(g, ids))


def _dominant(g: Graph, ids: list[int]) -> str:
    best, fam = -1, "other"
    for i in ids:
        if g.nodes[i].params > best:
            best, fam = g.nodes[i].params, family(g.nodes[i].op)
    return fam

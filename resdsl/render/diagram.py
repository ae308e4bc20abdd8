"""From the IR to a `Diagram`: the nodes, edges and clusters a picture shows.

Reads a `Graph` (nodes, scopes, regions, inputs/outputs); writes a
`Diagram`, a small drawing-independent model that `dot.py` turns into
Graphviz text and the tests inspect directly.  Three levels:

* ``layer``   every IR node; every scope (block call, group, shortcut) a cluster;
* ``block``   each outermost block call / labelled residual ("unit") collapsed
              to [pre-ops] -> [branch ops] -> (+) with its shortcut as one side
              edge; groups (stages) stay clusters; consecutive units with the
              same structure and shapes collapse into one with "×N";
* ``network`` one node per top-level scope and per run of top-level ops
              (stem, head).

Every data edge is labelled with the shape of the IR node it leaves, so the
labels are the IR's shapes by construction.  Ids are assigned in program
order, so the same network always gives the same diagram.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Graph, Node, Region
from .labels import describe, family, fmt_count, fmt_shape

LEVELS = ("network", "block", "layer", "unraveled")
UNIT_SCOPES = ("block", "residual", "dense", "parallel")
MAX_ROWS = 12  # a collapsed block lists its ops up to this many, then summarises


@dataclass
class DNode:
    id: str
    kind: str  # op | add | concat | input | output | box | item | lane
    title: str
    family: str
    cluster: str | None = None
    ir: tuple[int, ...] = ()
    params: int = 0
    detail: str = ""  # small second line (short name)
    tooltip: str = ""  # full qualified name (SVG hover text)
    rows: tuple[tuple[str, str], ...] = ()  # (text, family) rows of a box
    repeat: int = 1
    xlabel: str = ""


@dataclass
class DEdge:
    src: str
    dst: str
    label: str = ""  # the tensor shape, or the shortcut's projection
    kind: str = "data"  # data | identity | shortcut | skip
    shape: tuple[int, ...] | None = None  # the IR shape carried (None: not a data edge)


@dataclass
class DCluster:
    id: str
    label: str
    parent: str | None
    kind: str  # scope kind, or "unit" / "lanes"


@dataclass
class Diagram:
    name: str
    level: str
    nodes: list[DNode] = field(default_factory=list)
    edges: list[DEdge] = field(default_factory=list)
    clusters: list[DCluster] = field(default_factory=list)
    note: str = ""  # a caption line under the title
    same_rank: list[list[str]] = field(default_factory=list)  # node ids drawn side by side
    ordered: list[str] = field(default_factory=list)  # nodes whose out-edges keep their order

    def node(self, node_id: str) -> DNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    @property
    def families(self) -> list[str]:
        seen: list[str] = []
        for n in self.nodes:
            fams = [n.family] + [f for _, f in n.rows]
            for f in fams:
                if f not in seen:
                    seen.append(f)
        return seen


# ---------------------------------------------------------------- shared helpers


def _merge_roles(g: Graph) -> dict[tuple[int, int], str]:
    """(merge node, input slot) -> 'identity' | 'shortcut' | 'skip' for the non-branch inputs of merges."""
    roles: dict[tuple[int, int], str] = {}
    merges = {r.merge: r for r in g.regions}
    for n in g.nodes:
        if not n.spec.merge:
            continue
        r = merges.get(n.id)
        for slot, _ in enumerate(n.inputs):
            if r is None:
                if slot > 0:  # add(t) / concat(e1): a named tensor from elsewhere, e.g. U-Net's long skips
                    roles[(n.id, slot)] = "skip"
            elif slot not in r.branch_slots:
                roles[(n.id, slot)] = "identity" if not r.shortcut else "shortcut"
    return roles


def _shortcut_nodes(g: Graph) -> dict[int, int]:
    """IR node -> region id, for nodes on a residual's shortcut path."""
    out: dict[int, int] = {}
    for r in g.regions:
        for i in r.shortcut:
            out.setdefault(i, r.id)
    return out


def shortcut_text(g: Graph, r: Region) -> str:
    """'1×1 conv, 128, /2 + BN' for a projection; '' for identity."""
    if not r.shortcut:
        return ""
    parts = [describe(g.nodes[i]) for i in r.shortcut]
    if len(parts) > 4:  # a custom shortcut (e.g. a whole block): name it rather than list it
        total = sum(g.nodes[i].params for i in r.shortcut)
        first = g.nodes[r.shortcut[0]]
        where = g.scopes[first.scope].name if first.scope else first.name
        return f"{where}: {len(parts)} ops, {fmt_count(total)} params"
    return " + ".join(parts)


def _scope_chain(g: Graph, sid: int) -> list[int]:
    """Scope ids from the root's child down to `sid` (root excluded)."""
    chain = []
    while sid is not None and g.scopes[sid].parent is not None:
        chain.append(sid)
        sid = g.scopes[sid].parent
    return chain[::-1]


def _scope_label(g: Graph, sid: int) -> str:
    s = g.scopes[sid]
    if s.kind == "block":
        return f"{s.name} · {s.hint}"
    return s.name


def _io_nodes(g: Graph, d: Diagram, rep: dict[int, str]) -> None:
    for name, i in g.inputs.items():
        n = g.nodes[i]
        d.nodes.append(DNode(f"in_{i}", "input", f"input {name}", "io", None, (i,), detail=fmt_shape(n.shape)))
        rep[i] = f"in_{i}"


def _output_nodes(g: Graph, d: Diagram, rep: dict[int, str]) -> None:
    for k, (name, i) in enumerate(g.outputs.items()):
        n = g.nodes[i]
        oid = f"out_{k}"
        d.nodes.append(DNode(oid, "output", f"output {name}", "io", None, (), detail=fmt_shape(n.shape)))
        d.edges.append(DEdge(rep[i], oid, fmt_shape(n.shape), "data", n.shape))


def _add_edge(d: Diagram, seen: set, e: DEdge) -> None:
    key = (e.src, e.dst, e.label)
    if e.src != e.dst and key not in seen:
        seen.add(key)
        d.edges.append(e)


def _op_node(n: Node, node_id: str, cluster: str | None) -> DNode:
    kind = n.op if n.spec.merge else "op"
    short = n.name.rsplit(".", 1)[-1]
    return DNode(node_id, kind, describe(n), family(n.op), cluster, (n.id,), n.params, detail=short, tooltip=n.name)


def _rows(g: Graph, ids: list[int]) -> tuple[tuple[str, str], ...]:
    """The ops of a collapsed part, one row each; a count summary when there are too many."""
    if len(ids) <= MAX_ROWS:
        return tuple((describe(g.nodes[i]), family(g.nodes[i].op)) for i in ids)
    counts: dict[str, int] = {}
    fam: dict[str, str] = {}
    for i in ids:
        op = g.nodes[i].op
        counts[op] = counts.get(op, 0) + 1
        fam[op] = family(op)
    return tuple((f"{c} × {op}", fam[op]) for op, c in counts.items())


# ---------------------------------------------------------------- layer level


def layer_diagram(g: Graph) -> Diagram:
    d = Diagram(g.name, "layer")
    used = set()
    for n in g.nodes:
        used.update(_scope_chain(g, n.scope))
    cluster_of: dict[int, str] = {}
    for s in g.scopes:
        if s.id in used:
            cid = f"cluster_s{s.id}"
            cluster_of[s.id] = cid
            parent = cluster_of.get(s.parent) if s.parent is not None else None
            d.clusters.append(DCluster(cid, _scope_label(g, s.id), parent, s.kind))
    rep: dict[int, str] = {}
    _io_nodes(g, d, rep)
    for n in g.nodes:
        if n.id not in rep:
            rep[n.id] = f"n{n.id}"
            d.nodes.append(_op_node(n, rep[n.id], cluster_of.get(n.scope)))
    roles = _merge_roles(g)
    on_shortcut = _shortcut_nodes(g)
    seen: set = set()
    for n in g.nodes:
        for slot, i in enumerate(n.inputs):
            kind = roles.get((n.id, slot), "data")
            if n.id in on_shortcut:
                kind = "shortcut"
            src = g.nodes[i]
            e = DEdge(rep[i], rep[n.id], fmt_shape(src.shape), kind, src.shape)
            if (e.src, e.dst, e.label) in seen:  # add(x, x): keep both slots visible
                d.edges.append(e)
            _add_edge(d, seen, e)
    _output_nodes(g, d, rep)
    return d


# ---------------------------------------------------------------- block level


@dataclass
class _Unit:
    key: tuple  # ("scope", sid) | ("region", rid)
    ids: list[int]  # IR node ids, ascending
    container: int  # scope the unit sits in (its cluster parent)
    label: str
    block: str  # block name for "×N" runs


def _units(g: Graph) -> tuple[dict[int, tuple], list[_Unit]]:
    """Which unit each IR node belongs to (absent: drawn as its own node)."""
    unit_scope: dict[int, int] = {}  # scope -> outermost unit scope containing it
    for s in g.scopes:
        if s.parent is None:
            continue
        up = unit_scope.get(s.parent)
        if up is not None:
            unit_scope[s.id] = up
        elif s.kind in UNIT_SCOPES:
            unit_scope[s.id] = s.id
    in_region: dict[int, int] = {}
    for r in g.regions:
        if r.parent is None:
            for i in [i for b in r.branches for i in b] + list(r.shortcut) + [r.merge]:
                in_region.setdefault(i, r.id)
    key_of: dict[int, tuple] = {}
    units: dict[tuple, _Unit] = {}
    for n in g.nodes:
        if n.op == "input":
            continue
        if n.scope in unit_scope:
            sid = unit_scope[n.scope]
            key = ("scope", sid)
            if key not in units:
                s = g.scopes[sid]
                units[key] = _Unit(key, [], s.parent, s.name, s.hint if s.kind == "block" else s.kind)
        elif n.id in in_region:
            r = g.regions[in_region[n.id]]
            key = ("region", r.id)
            if key not in units:
                units[key] = _Unit(key, [], r.scope, r.name, r.kind)
        else:
            continue
        key_of[n.id] = key
        units[key].ids.append(n.id)
    return key_of, list(units.values())


def _main_region(g: Graph, u: _Unit) -> Region | None:
    """The unit's single outermost residual/dense region, when its body is one."""
    members = set(u.ids)
    tops = [r for r in g.regions if r.merge in members and (r.parent is None or g.regions[r.parent].merge not in members)]
    if len(tops) == 1 and tops[0].kind in ("residual", "dense") and len(tops[0].branches) == 1:
        return tops[0]
    return None


def _signature(g: Graph, u: _Unit) -> tuple:
    """Equal signatures: same block, same ops with the same attributes, same shapes in and out.

    A dense layer's input grows by its growth rate each time, so for dense units only the
    spatial sizes must agree (DenseNet's 6..48 layers per block collapse into one "×N").
    """
    members = set(u.ids)
    r = _main_region(g, u)
    growing = r is not None and r.kind == "dense"
    first = g.nodes[u.ids[0]]

    def shape(s: tuple) -> tuple:
        return s[1:] if growing else s

    ins = tuple(shape(g.nodes[i].shape) for i in first.inputs)
    ops = tuple((g.nodes[i].op, tuple(sorted((k, repr(v)) for k, v in g.nodes[i].attrs.items()
                                             if not (growing and k == "normalized_shape"))),
                 shape(g.nodes[i].shape), tuple(j - u.ids[0] if j in members else -1 for j in g.nodes[i].inputs))
                for i in u.ids)
    return (u.block, ins, ops)


def block_diagram(g: Graph) -> Diagram:
    d = Diagram(g.name, "block")
    key_of, units = _units(g)
    unit_by_key = {u.key: u for u in units}

    # runs of consecutive units with equal signatures -> one drawn unit with "×N"
    runs: list[list[_Unit]] = []
    for u in units:
        prev = runs[-1][-1] if runs else None
        if (prev is not None and prev.container == u.container and prev.ids[-1] + 1 == u.ids[0]
                and _signature(g, prev) == _signature(g, u)):
            runs[-1].append(u)
        else:
            runs.append([u])
    run_of: dict[tuple, int] = {}
    for k, run in enumerate(runs):
        for u in run:
            run_of[u.key] = k

    # container clusters: the scopes above units and above individually drawn nodes
    used: set[int] = set()
    for n in g.nodes:
        if n.op == "input":
            continue
        if n.id in key_of:
            used.update(_scope_chain(g, unit_by_key[key_of[n.id]].container))
        else:
            used.update(_scope_chain(g, n.scope))
    cluster_of: dict[int, str] = {}
    for s in g.scopes:
        if s.id in used:
            cluster_of[s.id] = f"cluster_s{s.id}"
            d.clusters.append(DCluster(cluster_of[s.id], _scope_label(g, s.id), cluster_of.get(s.parent), s.kind))

    rep: dict[int, str] = {}
    absorbed: dict[int, int] = {}  # shortcut node -> region (drawn as one labelled side edge)
    extra_edges: list[DEdge] = []
    _io_nodes(g, d, rep)
    drawn_runs: set[int] = set()
    for n in g.nodes:
        if n.id in rep or n.id in absorbed:
            continue
        key = key_of.get(n.id)
        if key is None:
            rep[n.id] = f"n{n.id}"
            d.nodes.append(_op_node(n, rep[n.id], cluster_of.get(n.scope)))
            continue
        k = run_of[key]
        if k in drawn_runs:
            continue
        drawn_runs.add(k)
        _draw_run(g, d, runs[k], k, cluster_of, rep, absorbed, extra_edges)

    roles = _merge_roles(g)
    seen: set = set()
    for e in extra_edges:
        _add_edge(d, seen, e)
    for n in g.nodes:
        for slot, i in enumerate(n.inputs):
            if i in absorbed or n.id in absorbed:
                continue  # replaced by the region's shortcut edge
            ki, kn = key_of.get(i), key_of.get(n.id)
            if ki is not None and kn is not None and ki != kn and run_of[ki] == run_of[kn]:
                continue  # between two blocks of one "×N" run
            kind = roles.get((n.id, slot), "data")
            src = g.nodes[i]
            label = "" if kind == "identity" else fmt_shape(src.shape)
            _add_edge(d, seen, DEdge(rep[i], rep[n.id], label, kind, None if kind == "identity" else src.shape))
    _output_nodes(g, d, rep)
    return d


def _draw_run(g: Graph, d: Diagram, run: list[_Unit], k: int, cluster_of: dict[int, str],
              rep: dict[int, str], absorbed: dict[int, int], extra: list[DEdge]) -> None:
    """Draw the first unit of a run; map every unit's nodes onto its drawing."""
    u = run[0]
    times = len(run)
    cid = f"cluster_u{k}"
    name = u.label if times == 1 else f"{u.label}–{run[-1].label.rsplit('.', 1)[-1]}"
    title = f"{name} · {u.block}" + (f" ×{times}" if times > 1 else "")
    d.clusters.append(DCluster(cid, title, cluster_of.get(u.container), "unit"))
    params = sum(g.nodes[i].params for ru in run for i in ru.ids)  # the whole run's
    local: dict[int, str] = {}  # position in unit -> drawn node id
    r = _main_region(g, u)
    if r is None:
        nid = f"u{k}"
        d.nodes.append(DNode(nid, "box", u.block, _dominant(g, u.ids), cid, tuple(u.ids), params,
                             rows=_rows(g, u.ids), repeat=times))
        for pos in range(len(u.ids)):
            local[pos] = nid
    else:
        region_ids = set(i for b in r.branches for i in b)
        pre = [i for i in u.ids if i <= r.input]
        branch = [i for i in u.ids if i in region_ids]
        post = [i for i in u.ids if i > r.merge]
        merge_id = f"u{k}m"
        for part, ids in (("p", pre), ("b", branch)):
            if ids:
                nid = f"u{k}{part}"
                total = sum(g.nodes[ru.ids[u.ids.index(i)]].params for ru in run for i in ids)
                d.nodes.append(DNode(nid, "box", "", _dominant(g, ids), cid, tuple(ids),
                                     total, rows=_rows(g, ids), repeat=times))
                for i in ids:
                    local[u.ids.index(i)] = nid
        merge = g.nodes[r.merge]
        d.nodes.append(DNode(merge_id, merge.op, describe(merge), "merge", cid, (r.merge,) + tuple(post),
                             sum(g.nodes[i].params for i in post),
                             xlabel=" → ".join(describe(g.nodes[i]) for i in post)))
        for i in [r.merge] + post:
            local[u.ids.index(i)] = merge_id
        for ru in run:  # every unit of the run has its shortcut drawn once, on the first
            rr = _main_region(g, ru)
            for i in rr.shortcut:
                absorbed[i] = rr.id
        if r.shortcut:
            src = r.input
            extra.append(DEdge(f"@{src}", merge_id, shortcut_text(g, r), "shortcut"))
    for ru in run:
        for pos, i in enumerate(ru.ids):
            if i not in absorbed:
                rep[i] = local[pos]
    # shortcut edges were recorded with the IR source; resolve now that the source is drawn
    for e in extra:
        if e.src.startswith("@"):
            i = int(e.src[1:])
            if i in rep:
                e.src = rep[i]


def _dominant(g: Graph, ids: list[int]) -> str:
    """Colour of a collapsed part: the family holding most parameters (conv for a conv block)."""
    best, fam = -1, "other"
    for i in ids:
        n = g.nodes[i]
        f = family(n.op)
        if n.params > best:
            best, fam = n.params, f
    return fam


# ---------------------------------------------------------------- network level


def network_diagram(g: Graph) -> Diagram:
    d = Diagram(g.name, "network")
    rep: dict[int, str] = {}
    _io_nodes(g, d, rep)
    scoped = [n.id for n in g.nodes if n.op != "input" and n.scope != 0 and g.scopes[n.scope].parent is not None]
    first_scoped = scoped[0] if scoped else None
    last_scoped = scoped[-1] if scoped else None
    items: list[tuple[str, list[int], int | None]] = []  # (item id, IR ids, top scope)
    item_of: dict[int, str] = {}
    for n in g.nodes:
        if n.op == "input":
            continue
        chain = _scope_chain(g, n.scope)
        if chain:
            iid = f"s{chain[0]}"
            if not items or items[-1][0] != iid:
                if any(it[0] == iid for it in items):  # a scope re-entered later: same item
                    item = next(it for it in items if it[0] == iid)
                    item[1].append(n.id)
                    item_of[n.id] = iid
                    continue
                items.append((iid, [], chain[0]))
        else:
            if not items or items[-1][2] is not None:
                items.append((f"r{n.id}", [], None))
            iid = items[-1][0]
        items[-1][1].append(n.id)
        item_of[n.id] = iid
    for iid, ids, sid in items:
        if sid is not None:
            s = g.scopes[sid]
            title = s.name
            sub = _group_summary(g, sid) if s.kind == "group" else (s.hint if s.kind == "block" else s.kind)
        else:
            if first_scoped is None or ids[-1] < first_scoped:
                title = "stem"
            elif ids[0] > last_scoped:
                title = "head"
            else:
                title = g.nodes[ids[0]].name
            sub = " · ".join(describe(g.nodes[i]) for i in ids) if len(ids) <= 3 else f"{len(ids)} ops"
        d.nodes.append(DNode(iid, "item", title, _dominant(g, ids), None, tuple(ids),
                             sum(g.nodes[i].params for i in ids), detail=sub))
        for i in ids:
            rep[i] = iid
    roles = _merge_roles(g)
    seen: set = set()
    for n in g.nodes:
        for slot, i in enumerate(n.inputs):
            kind = roles.get((n.id, slot), "data")
            src = g.nodes[i]
            _add_edge(d, seen, DEdge(rep[i], rep[n.id], fmt_shape(src.shape),
                                     "skip" if kind == "skip" else "data", src.shape))
    _output_nodes(g, d, rep)
    return d


def _group_summary(g: Graph, sid: int) -> str:
    """'3 × bottleneck' for a stage of block calls; 'up-conv · C · double_conv' for a short mix."""
    kids = [s for s in g.scopes if s.parent == sid]
    blocks = [s.hint for s in kids if s.kind == "block"]
    direct = [n for n in g.nodes if n.scope == sid]
    if not direct and blocks and len(blocks) == len(kids) and all(b == blocks[0] for b in blocks):
        return f"{len(blocks)} × {blocks[0]}"
    parts: list[tuple[int, str]] = [(n.id, describe(n)) for n in direct]
    for s in kids:
        ids = [n.id for n in g.nodes if n.scope == s.id]
        if ids:
            parts.append((ids[0], s.hint if s.kind == "block" else s.name.rsplit(".", 1)[-1]))
    parts.sort()
    if len(parts) <= 3:
        return " · ".join(text for _, text in parts)
    return f"{len(direct)} ops, {len(kids)} parts" if kids else f"{len(direct)} ops"

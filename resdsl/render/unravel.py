"""The unraveled ("ensemble") view: the network as the sum of its input->output paths.

Reads a `Graph` and the path definitions of `analysis.paths` (what a path is,
which merge inputs are branches and which are skips, a path's length); writes
a `Diagram`.  Two pictures, for any graph:

* **lanes** (at most `MAX_LANES` paths): every path is its own lane, as in
  Prince, "Understanding Deep Learning", figure 11.4b and Veit et al. 2016.
  A lane shows, at every merge it reaches, what it arrived through: a box
  with the branch's ops (or the shortcut's projection), or a small dot for an
  identity skip.  Lanes are grouped into clusters by length and end in a Σ
  per output.  Ops on the common start and end of all paths are drawn once
  (stem, head); other ops that lie on every path are named in the caption
  instead of being repeated in every lane.
* **fan** (more paths, e.g. ResNet-110's 2**54): one lane per path length
  (lengths grouped into at most `MAX_BINS` bins), labelled with how many
  paths it stands for, their share and a bar -- the path-length histogram
  drawn as the unraveled view.

Either way a lane node's `repeat` is the number of paths it stands for, and
`drawn_paths(diagram)` (the sum over the lanes that reach a Σ) equals the
exact path count.
"""
from __future__ import annotations

import math

from ..analysis.paths import Branch, fmt_big, Path, PathSampler, branches, count_paths, cut_nodes, live_inputs, on_pair, segment
from ..ir import Graph
from .diagram import DCluster, DEdge, Diagram, DNode, shortcut_text
from .labels import describe, family, fmt_count, fmt_shape

MAX_BLOCKS = 6  # residual blocks in a chain that still get one lane per path (2**6 lanes)
MAX_LANES = 2 ** MAX_BLOCKS
MAX_BINS = 60
BAR = 24  # width of the longest bar in the fan, in characters


def unraveled_diagram(g: Graph, length: str = "blocks") -> Diagram:
    """Lanes for up to MAX_LANES paths, else the fan of path lengths."""
    counts = count_paths(g, length)
    d = Diagram(g.name, "unraveled")
    if counts.total <= MAX_LANES:
        _lanes(g, d, length)
    else:
        _fan(g, d, counts, length)
    return d


def drawn_paths(d: Diagram) -> int:
    """How many paths the picture stands for: the lanes arriving at a Σ, each counted `repeat` times."""
    sums = {n.id for n in d.nodes if n.id.startswith("sum")}
    return sum(d.node(e.src).repeat for e in d.edges if e.dst in sums)


# ---------------------------------------------------------------- shared pieces


def _inputs(g: Graph, d: Diagram) -> dict[str, str]:
    ids = {}
    for name, i in g.inputs.items():
        ids[name] = f"in_{i}"
        if all(n.id != ids[name] for n in d.nodes):  # an input listed under two names is one node
            d.nodes.append(DNode(ids[name], "input", f"input {name}", "io", None, (i,),
                                 detail=fmt_shape(g.nodes[i].shape)))
    return ids


def _outputs(g: Graph, d: Diagram, ends: dict[str, str]) -> None:
    """An output node per output name, fed from `ends[name]` (its Σ or head)."""
    for k, (name, i) in enumerate(g.outputs.items()):
        oid = f"out_{k}"
        d.nodes.append(DNode(oid, "output", f"output {name}", "io", None, (i,), detail=fmt_shape(g.nodes[i].shape)))
        if name in ends:
            d.edges.append(DEdge(ends[name], oid, fmt_shape(g.nodes[i].shape), "data", g.nodes[i].shape))


def _box(nid: str, title: str, g: Graph, ids: list[int]) -> DNode:
    return DNode(nid, "item", title, _dominant(g, ids), None, tuple(ids), sum(g.nodes[i].params for i in ids),
                 detail=_ops(g, ids))


def _ops(g: Graph, ids: list[int]) -> str:
    if len(ids) > 4:
        return f"{len(ids)} ops, {fmt_count(sum(g.nodes[i].params for i in ids))} params"
    return " → ".join(describe(g.nodes[i]) for i in ids) or "empty"


def _dominant(g: Graph, ids: list[int]) -> str:
    best, fam = -1, "other"
    for i in ids:
        if g.nodes[i].params > best:
            best, fam = g.nodes[i].params, family(g.nodes[i].op)
    return fam


def _sum_node(d: Diagram, sid: str, paths: int, output: str | None) -> None:
    where = f" into {output}" if output else ""
    d.nodes.append(DNode(sid, "add", "Σ", "merge", None, (), detail=f"sum over {_fmt_big(paths)} paths{where}",
                         tooltip=f"sum over {paths if paths < 10 ** 30 else fmt_big(paths)} paths{where}"))


# ---------------------------------------------------------------- lanes: one per path


def _lanes(g: Graph, d: Diagram, length: str) -> None:
    """Every path its own lane (the caller checked there are at most MAX_LANES)."""
    sampler = PathSampler(g, length)
    paths = [p for k in range(_max_length(sampler) + 1) for p in sampler.all(k)]
    in_ids = _inputs(g, d)
    if not paths:
        d.note = "no input->output path"
        _outputs(g, d, {})
        return
    seqs = [p.nodes(g) for p in paths]
    pre = _common_prefix([list(p.edges) for p in paths], [p.input for p in paths])
    suf = _common_suffix([list(p.edges) for p in paths], [p.output for p in paths])
    if len(paths) == 1:  # one path: nothing to unravel
        pre, suf = 0, 0
    stem = [v for v, _ in paths[0].edges[:pre]] if pre else []
    head = [v for v, _ in paths[0].edges[len(paths[0].edges) - suf:]] if suf else []
    on_all = set.intersection(*(set(s) for s in seqs)) - set(stem) - set(head) - set(g.inputs.values())
    start = {}
    for p in paths:
        start[p.input] = in_ids[p.input]
    if stem:
        d.nodes.append(_box("stem", "stem", g, stem))
        src = g.inputs[paths[0].input]
        d.edges.append(DEdge(in_ids[paths[0].input], "stem", fmt_shape(g.nodes[src].shape), "data",
                             g.nodes[src].shape))
        start = {p.input: "stem" for p in paths}
    roles = _roles(g)
    forks = _forks(paths, g)
    by_len: dict[int, list[Path]] = {}
    for p in paths:
        by_len.setdefault(p.length, []).append(p)
    sums = _sum_nodes(g, d, paths, one_sum=suf > 0 or len({p.output for p in paths}) == 1)
    column: dict[int, list[str]] = {}  # lane items arriving at the same merge, drawn side by side
    j = 0
    for k in sorted(by_len):
        group = by_len[k]
        cid = f"cluster_len{k}"
        d.clusters.append(DCluster(cid, f"length {k}: {len(group)} path{'s' if len(group) != 1 else ''}", None, "lanes"))
        for p in group:
            body = p.edges[pre:len(p.edges) - suf] if suf else p.edges[pre:]
            items = _lane_items(g, p, body, on_all, roles, forks, single=len(paths) == 1)
            last = _draw_lane(g, d, f"L{j}", cid, start[p.input], items, column)
            d.edges.append(DEdge(last, sums[p.output], "", "lane"))
            j += 1
    d.same_rank = [ids for _, ids in sorted(column.items()) if len(ids) > 1]
    d.ordered.extend(dict.fromkeys(start.values()))
    ends = dict(sums)
    if head:
        d.nodes.append(_box("head", "head", g, head))
        d.edges.append(DEdge("sum", "head", "", "data"))
        ends = {o: "head" for o in sums}
    _outputs(g, d, ends)
    d.note = _lanes_note(g, paths, on_all, [n for n in g.inputs if n not in start], length)


def _sum_nodes(g: Graph, d: Diagram, paths: list[Path], one_sum: bool) -> dict[str, str]:
    """A Σ for all lanes (`one_sum`), or one per output; returns output name -> its Σ node id."""
    sums: dict[str, str] = {}
    for p in paths:
        sums.setdefault(p.output, "sum" if one_sum else f"sum_{list(g.outputs).index(p.output)}")
    for key in dict.fromkeys(sums.values()):
        outs = [o for o, s in sums.items() if s == key]
        _sum_node(d, key, sum(1 for p in paths if sums[p.output] == key),
                  outs[0] if len(outs) == 1 and not one_sum else None)
    return sums


def _draw_lane(g: Graph, d: Diagram, prefix: str, cid: str, prev: str, items: list[tuple],
               column: dict[int, list[str]]) -> str:
    """One lane's nodes and edges from `prev`; returns its last node id."""
    for t, (joint, kind, title, ids, detail) in enumerate(items):
        nid = f"{prefix}_{t}"
        fam = _dominant(g, ids) if ids else "other"
        d.nodes.append(DNode(nid, kind, title, fam, cid, tuple(ids), sum(g.nodes[i].params for i in ids),
                             detail=detail))
        d.edges.append(DEdge(prev, nid, "", "lane"))
        if joint is not None:
            column.setdefault(joint, []).append(nid)
        prev = nid
    if not items:  # a lane with nothing of its own (e.g. add(x, x)): a dot keeps it visible
        nid = f"{prefix}_0"
        d.nodes.append(DNode(nid, "skip", f"path {prefix[1:]}", "other", cid, ()))
        d.edges.append(DEdge(prev, nid, "", "lane"))
        prev = nid
    return prev


def _lanes_note(g: Graph, paths: list[Path], on_all: set[int], unconnected: list[str], length: str) -> str:
    note = f"{len(paths)} path{'s' if len(paths) != 1 else ''}, by length in {length}"
    if len(paths) == 1:
        note = f"a single path ({paths[0].length} {length})"
    names = [describe(g.nodes[i]) for i in sorted(on_all) if g.nodes[i].spec.family != "merge"]
    if names:
        note += f"; ops on every path ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}) are not repeated"
    if unconnected:
        note += f"; no path from {', '.join(unconnected)}"
    return note


def _max_length(sampler: PathSampler) -> int:
    return max((len(f[sampler.graph.outputs[o]]) - 1 for _, o, f in sampler.pairs), default=-1)


def _common_prefix(seqs: list[list], starts: list[str]) -> int:
    if len(set(starts)) > 1:
        return 0
    n = min(len(s) for s in seqs)
    k = 0
    while k < n and all(s[k] == seqs[0][k] for s in seqs):
        k += 1
    return k


def _common_suffix(seqs: list[list], ends: list[str]) -> int:
    if len(set(ends)) > 1:
        return 0
    n = min(len(s) for s in seqs)
    k = 0
    while k < n and all(s[len(s) - 1 - k] == seqs[0][len(seqs[0]) - 1 - k] for s in seqs):
        k += 1
    return k


def _roles(g: Graph) -> dict[tuple[int, int], Branch]:
    return {(b.merge, b.slot): b for b in branches(g)}


def _forks(paths: list[Path], g: Graph) -> set[int]:
    """Nodes where the drawn paths part: more than one distinct edge leaves them."""
    out: dict[int, set] = {}
    for p in paths:
        for u, e in zip(p.nodes(g), p.edges):
            out.setdefault(u, set()).add(e)
    return {u for u, es in out.items() if len(es) > 1}


def _lane_items(g: Graph, p: Path, body, on_all: set[int], roles, forks: set[int], single: bool) -> list[tuple]:
    """(joint node, kind, title, op ids, detail) for the stretches of one path: a stretch ends where the path
    enters a node with several inputs (a merge, or e.g. a product) or leaves a node where paths part."""
    regions = {r.merge: r for r in g.regions}
    items = []
    run: list[int] = []

    def close_at_fork() -> None:
        if run:
            r = g.nodes[run[-1]].region
            items.append((None, "lane", g.regions[r].name if r is not None else "ops", list(run), _ops(g, run)))
            run.clear()

    for v, slot in body:
        n = g.nodes[v]
        if len(n.inputs) < 2:
            if v not in on_all or single:
                run.append(v)
            if v in forks:
                close_at_fork()
            continue
        b, r = roles.get((v, slot)), regions.get(v)
        if b is not None:
            empty_branch = r is not None and not r.branches[r.branch_slots.index(slot)]
            if run or empty_branch:
                items.append((v, "lane", b.name + (" (empty)" if empty_branch else ""), list(run), _ops(g, run)))
            else:  # its ops were drawn as the stretches before (nested blocks)
                items.append((v, "skip", b.name, [], ""))
        elif r is not None:
            ids = [i for i in run if i in r.shortcut]
            if run and len(ids) < len(run):
                items.append((None, "lane", "ops", [i for i in run if i not in r.shortcut], ""))
                items[-1] = items[-1][:4] + (_ops(g, items[-1][3]),)
            if ids:
                items.append((v, "lane", f"{r.name} shortcut", ids, shortcut_text(g, r) or _ops(g, ids)))
            else:
                items.append((v, "skip", f"{r.name} identity", [], ""))
        elif n.spec.family == "merge":
            src = g.nodes[n.inputs[slot]]
            title = f"{n.name}: skip from {src.label or src.name}"
            items.append((v, "lane" if run else "skip", title, list(run), _ops(g, run) if run else ""))
        else:
            items.append((v, "lane", f"{n.name} input {slot}", list(run), _ops(g, run)))
        run = []
        if v in forks:
            close_at_fork()
    if run:
        items.append((None, "lane", "ops", run, _ops(g, run)))
    return items


# ---------------------------------------------------------------- fan: one lane per length


def _fan(g: Graph, d: Diagram, counts, length: str) -> None:
    in_ids = _inputs(g, d)
    stem, head = _stem_and_head(g)
    fan = "stem" if stem else "fan"
    if stem:
        d.nodes.append(_box("stem", "stem", g, stem))
    else:
        d.nodes.append(DNode("fan", "skip", "all paths start here", "other", None, ()))
    connected = _connected_inputs(g)
    for name in dict.fromkeys(n for n in g.inputs if n in connected):
        i = g.inputs[name]
        d.edges.append(DEdge(in_ids[name], fan, fmt_shape(g.nodes[i].shape), "data", g.nodes[i].shape))
    _sum_node(d, "sum", counts.total, None)
    d.clusters.append(DCluster("cluster_lengths", f"{_fmt_big(counts.total)} paths by length ({length})", None,
                               "lanes"))
    bins = _bins(counts.by_length)
    peak = max(c for _, _, c in bins)
    for lo, hi, c in bins:
        nid = f"len_{lo}"
        share = c / counts.total
        bar = "█" * round(BAR * c / peak) or "▏"  # a sliver: fewer than 1/48 of the peak
        title = f"length {lo}" if lo == hi else f"lengths {lo}–{hi}"
        d.nodes.append(DNode(nid, "lane", title, "other", "cluster_lengths", (), 0,
                             detail=f"{_fmt_big(c)} paths · {100 * share:.3g}% {bar}", repeat=c,
                             tooltip=f"{c if c < 10 ** 30 else fmt_big(c)} paths of {title}"))
        d.edges.append(DEdge(fan, nid, "", "lane"))
        d.edges.append(DEdge(nid, "sum", "", "lane"))
    d.ordered.append(fan)
    ends = {o: "sum" for o in g.outputs}
    if head:
        d.nodes.append(_box("head", "head", g, head))
        d.edges.append(DEdge("sum", "head", "", "data"))
        ends = {o: "head" for o in g.outputs}
    _outputs(g, d, ends)
    d.note = (f"{_fmt_big(counts.total)} input->output paths, too many for one lane each: one lane per path length "
              f"({length}), with how many paths it stands for; mean length {counts.mean_length:.2f}, "
              f"median {counts.median_length}")


def _bins(by_length: dict[int, int]) -> list[tuple[int, int, int]]:
    lo, hi = min(by_length), max(by_length)
    step = max(1, math.ceil((hi - lo + 1) / MAX_BINS))
    out = []
    for a in range(lo, hi + 1, step):
        b = min(hi, a + step - 1)
        out.append((a, b, sum(by_length.get(k, 0) for k in range(a, b + 1))))
    return out


def _connected_inputs(g: Graph) -> set[str]:
    ins = live_inputs(g)
    return {name for name, i in g.inputs.items() if any(on_pair(g, ins, i, o)[o] for o in g.outputs.values() if o >= i)}


def _stem_and_head(g: Graph) -> tuple[list[int], list[int]]:
    """For one input and one output: the ops every path starts with / ends with (single-path segments
    at the ends of the chain of cut nodes)."""
    if len(g.inputs) != 1 or len(set(g.outputs.values())) != 1:
        return [], []
    i, o = next(iter(g.inputs.values())), next(iter(g.outputs.values()))
    ins = live_inputs(g)
    on = on_pair(g, ins, i, o)
    if not on[o]:
        return [], []
    c = cut_nodes(ins, on, i, o)
    trivial = [segment(ins, on, a, b, [0] * len(g.nodes), [None] * len(g.nodes), [None] * len(g.nodes)).total == 1 for a, b in zip(c, c[1:])]
    k = 0
    while k < len(trivial) and trivial[k]:
        k += 1
    m = 0
    while m < len(trivial) - k and trivial[len(trivial) - 1 - m]:
        m += 1
    return c[1:k + 1], c[len(c) - m:] if m else []


def _fmt_big(n: int) -> str:
    """'1,485' or '1.801e16': short, and never a decimal conversion of a huge integer."""
    return fmt_big(n, 10 ** 12).split(" ")[0]

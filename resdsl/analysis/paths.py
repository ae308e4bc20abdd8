"""Input->output paths over the IR: exact counts, length histograms, branches, sampling.

Reads a `Graph` (node inputs, regions, op specs); writes nothing.  The
definitions (docs/paths.md has the maths):

* a **path** is a sequence of IR edges from a network input to a network
  output; every input slot is its own edge, so `add(x, x)` doubles the count,
  and a concatenation (followed by a convolution, a sum over its inputs)
  splits paths like an add.  With several inputs and outputs the count is the
  sum over all (input, output name) pairs;
* every input slot of a merge op (family ``merge``: add, concat) is either a
  **branch** edge or a **skip** edge.  At the merge of a residual / dense /
  parallel region the branch edges are the region's branches
  (`Region.branch_slots`) and the skips its shortcut or carried input; at a
  free-standing merge written with named tensors (`add(a)`, `concat(e1)`) the
  first operand, the tensor the statement continues, is the branch and the
  tensors brought in by name are the skips;
* length ``blocks`` (Veit et al. 2016) is the number of branch edges on the
  path; length ``layers`` the number of weighted ops (conv, linear, ...) on it.

Counting enumerates nothing and stores no big integer per node.  For each
(input, output) pair the nodes on every path of the pair are found exactly
with dominators (no arithmetic); they cut the pair's paths into segments in
series, whose local counts and length polynomials are small.  The pair's
count is the product of the segments' counts, its polynomial the product of
theirs, equal segments (the blocks of a stage) raised to their multiplicity
with J.C.P. Miller's recurrence for powers of a polynomial (linear in the
degree of the result).  Big integers appear only where the answer is big.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from itertools import compress
from operator import attrgetter
from typing import Iterator, NamedTuple

from ..ir import Graph, cycle_collector_paused
from ..ops import OPS

LENGTHS = ("blocks", "layers")
Poly = list[int]  # coefficient of x**k at index k, exact Python ints
Edge = tuple[int, int]  # (node, input slot): the edge from node.inputs[slot] into node
# Inside a count an edge is one int, node * width + slot (width: one more than the most inputs of a node):
# dicts of them hash in order and make no tuple per edge.
EdgeNo = int


# ---------------------------------------------------------------- polynomial helpers


def _shift(p: Poly, k: int) -> Poly:
    return [0] * k + p if k and p else p


def _add_into(acc: Poly, p: Poly) -> Poly:
    if not acc:
        return list(p)
    if len(p) > len(acc):
        acc = acc + [0] * (len(p) - len(acc))
    for i, c in enumerate(p):
        if c:
            acc[i] += c
    return acc


def _mul(a: Poly, b: Poly) -> Poly:
    if not a or not b:
        return []
    if a == [1]:
        return b
    if b == [1]:
        return a
    if len(a) < len(b):
        a, b = b, a
    out = [0] * (len(a) + len(b) - 1)
    for j, bj in enumerate(b):  # loop over the shorter factor
        if bj:
            for i, ai in enumerate(a):
                if ai:
                    out[i + j] += ai * bj
    return out


def _power(p: Poly, n: int) -> Poly:
    """p**n for p with p[0] != 0, by Miller's recurrence:
    k*p0*q_k = sum_{i>=1} ((n+1)*i - k) * p_i * q_{k-i}  (exact division)."""
    if n == 0:
        return [1]
    if n == 1 or len(p) == 1:
        return [c ** n for c in p] if len(p) == 1 else list(p)
    d = len(p) - 1
    p0 = p[0]
    terms = [(i, p[i]) for i in range(1, d + 1) if p[i]]
    q = [p0 ** n] + [0] * (n * d)
    # A palindromic p (1 + x: every chain of plain residual blocks) has a palindromic power, and q_k
    # needs only q_0 .. q_{k-1}: the first half of the recurrence gives the rest, halving the
    # Theta((n d)^2)-bit work.
    mirror = p == p[::-1]
    last = n * d // 2 if mirror else n * d
    if len(terms) == 1 and terms[0][0] == 1:  # (p0 + p1 x)^n: q_k = q_{k-1} (n-k+1) p1 / (k p0), the binomial row
        _two_terms(q, n, p0, terms[0][1], last)
    else:
        for k in range(1, last + 1):
            s = 0
            for i, pi in terms:
                if i > k:
                    break
                qk = q[k - i]
                if qk:
                    s += ((n + 1) * i - k) * pi * qk
            q[k] = s // (k * p0)
    if mirror:
        for k in range(last + 1, n * d + 1):
            q[k] = q[n * d - k]
    return q


def _two_terms(q: Poly, n: int, p0: int, p1: int, last: int) -> None:
    """q[1..last] of (p0 + p1 x)^n from q[0]: one multiplication and one exact division by a small
    integer per coefficient (Miller's recurrence with one term), the fewest big-integer operations a
    row of K-bit coefficients can be made with one at a time."""
    c = q[0]
    if p0 == 1 and p1 == 1:
        for k in range(1, last + 1):
            c = c * (n - k + 1) // k
            q[k] = c
        return
    for k in range(1, last + 1):
        c = c * ((n - k + 1) * p1) // (k * p0)
        q[k] = c


def fmt_big(n: int, exact_below: int = 10 ** 24) -> str:
    """Exact with thousands separators when short, else mantissa and exponent ('1.801e16 (17 digits)').

    Never converts a huge integer to decimal (quadratic in CPython): the exponent and leading digits
    come from the top 64 bits."""
    if n < exact_below:
        return f"{n:,}"
    shift = max(0, n.bit_length() - 64)
    log = math.log10(n >> shift) + shift * math.log10(2)
    e = math.floor(log)
    if n >= 10 ** (e + 1):  # the float logarithm can be off by one next to a power of ten
        e += 1
    elif n < 10 ** e:
        e -= 1
    mant = min(max(10 ** (log - e), 1.0), 9.999)  # 3 decimals, never rounded up to "10.000"
    return f"{mant:.3f}e{e} ({e + 1} digits)"


# ---------------------------------------------------------------- the definition: branch and skip edges


class Branch(NamedTuple):
    """One branch edge: what a path enters when its length in blocks goes up by one."""

    merge: int  # the merge node
    slot: int  # its input slot
    name: str  # region name, "region[i]" for a parallel block's branch i, or the merge node's name
    region: int | None  # the region, or None for a merge written with named tensors
    skip: str  # what the merge's other inputs are: identity | projection | carried | skip | parallel


_SKIP_KIND = {"dense": "carried", "parallel": "parallel"}  # region kind -> what its merge's other inputs are


def branches(graph: Graph) -> list[Branch]:
    """Every branch edge of `graph`, in the order of the merge nodes (then slots)."""
    by_merge = {r.merge: r for r in graph.regions}
    merges = {name for name, spec in OPS.items() if spec.family == "merge"}  # the family facet, read once per op
    new = tuple.__new__  # Branch(...) without the named tuple's Python-level __new__ (one per merge node)
    out: list[Branch] = []
    nodes = graph.nodes
    for n in compress(nodes, map(merges.__contains__, map(attrgetter("op"), nodes))):  # the merge nodes
        r = by_merge.get(n.id)
        if r is None:
            out.append(new(Branch, (n.id, 0, n.name, None, "skip")))
            continue
        kind = _SKIP_KIND.get(r.kind) or ("projection" if r.shortcut else "identity")
        slots = r.branch_slots
        if len(slots) == 1:
            out.append(new(Branch, (n.id, slots[0], r.name, r.id, kind)))
            continue
        for i, s in enumerate(slots):
            out.append(new(Branch, (n.id, s, f"{r.name}[{i}]", r.id, kind)))
    return out


SlotWeights = list  # per node: None, or the weight of each input slot (node-indexed, so lookups stay local)


def edge_weights(graph: Graph, length: str, bs: list[Branch] | None = None) -> tuple[list[int], SlotWeights]:
    """Node weights and, per node, its input slots' weights for the chosen length (docs/paths.md);
    `bs`: `branches(graph)` when the caller has it."""
    if length not in LENGTHS:
        raise ValueError(f"length must be one of {LENGTHS}, got {length!r}")
    slot_w: SlotWeights = [None] * len(graph.nodes)
    if length == "layers":
        weighted = {name: 1 if spec.weighted else 0 for name, spec in OPS.items()}  # the facet, read once per op
        return list(map(weighted.__getitem__, map(attrgetter("op"), graph.nodes))), slot_w
    return [0] * len(graph.nodes), _slot_flags(graph, branches(graph) if bs is None else bs)


def _slot_flags(graph: Graph, bs: list[Branch]) -> SlotWeights:
    """Per node: None, or a tuple with 1 at the slots that are branch edges in `bs` (equal tuples are one
    object: most merges have the same inputs and branch slot)."""
    nodes = graph.nodes
    out: SlotWeights = [None] * len(nodes)
    made: dict[tuple[int, int], tuple[int, ...]] = {}  # (inputs, branch slot) -> flags
    several: dict[tuple[int, ...], tuple[int, ...]] = {}  # flags with several branch slots, one object each
    for b in bs:
        m, slot = b.merge, b.slot
        w = out[m]
        if w is None:
            key = (len(nodes[m].inputs), slot)
            w = made.get(key)
            if w is None:
                w = made[key] = (0,) * slot + (1,) + (0,) * (key[0] - slot - 1)
        else:  # a second branch slot of the same merge
            w = w[:slot] + (1,) + w[slot + 1:]
            w = several.setdefault(w, w)
        out[m] = w
    return out


def _sw(slot_w: SlotWeights, v: int, s: int) -> int:
    w = slot_w[v]
    return w[s] if w else 0


# ---------------------------------------------------------------- result


@dataclass
class PathCounts:
    """Exact path statistics of one network (all counts are Python ints)."""

    length: str
    total: int
    by_length: dict[int, int]
    blocks: list[tuple[str, int]]  # (branch name, paths through its branch edge), see `branches`

    @property
    def length_sum(self) -> int:
        """The sum of all path lengths (exact; mean = length_sum / total), from the histogram on demand."""
        if "_length_sum" not in self.__dict__:
            self.__dict__["_length_sum"] = sum(k * c for k, c in self.by_length.items())
        return self.__dict__["_length_sum"]

    @property
    def mean_length(self) -> float:
        return float(Fraction(self.length_sum, self.total)) if self.total else 0.0

    @property
    def median_length(self) -> int | None:
        """The lower median: smallest k with at least half of all paths of length <= k."""
        if not self.total:
            return None
        acc = 0
        for k in sorted(self.by_length):
            acc += self.by_length[k]
            if 2 * acc >= self.total:
                return k
        return None

    @property
    def max_length(self) -> int:
        return max(self.by_length, default=0)

    def band_share(self, lo: int, hi: int) -> float:
        """Fraction of all paths whose length k satisfies lo <= k <= hi (both inclusive)."""
        if not self.total:
            return 0.0
        inside = sum(c for k, c in self.by_length.items() if lo <= k <= hi)
        return float(Fraction(inside, self.total))

    def to_json(self, band: tuple[int, int] | None = None) -> dict:
        out = {"length": self.length, "total": self.total,
               "by_length": {str(k): v for k, v in sorted(self.by_length.items())},
               "mean_length": self.mean_length, "median_length": self.median_length,
               "blocks": [{"name": n, "paths_through": c} for n, c in self.blocks]}
        if band is not None:
            out["band"] = list(band)
            out["band_share"] = self.band_share(*band)
        return out


# ---------------------------------------------------------------- structure of one (input, output) pair


def live_inputs(graph: Graph, removed: frozenset[Edge] = frozenset()) -> list[tuple[int, ...]]:
    """Per node, its input sources by slot, -1 where the edge is `removed` (the nodes' own tuples
    when nothing is: no per-node objects are made)."""
    ins = list(map(attrgetter("inputs"), graph.nodes))
    for v, s in removed:
        if 0 <= v < len(ins) and s < len(ins[v]):
            ins[v] = ins[v][:s] + (-1,) + ins[v][s + 1:]
    return ins


def on_pair(graph: Graph, ins: list[list[tuple[int, int]]], i: int, o: int) -> list[bool]:
    """on[v]: v lies on some i -> o path (reachable from i, reaches o)."""
    return _on(len(graph.nodes), ins, i, o)[0]


def _on(n: int, ins, i: int, o: int, weights: tuple | None = None, sole_source: bool = False
        ) -> tuple[list[bool], list[int], list[int] | None]:
    """(on, cuts, codes): `on_pair`; in the same sweep down, the nodes on every i -> o path (`_cuts`'s rule:
    no edge between on-nodes jumps over them) as their ranks from the top among the on-nodes below o; and,
    given `weights` = (node_w, slot_w, want), `Shapes.codes` for the pair's on-nodes.  `sole_source`: i is
    the only node without inputs and no edge is removed, so every node is reached from it (each has an
    input, and by induction in id order that input is reached)."""
    if sole_source:
        fwd = [True] * n
    else:
        fwd = [False] * n
        fwd[i] = True
        for v in range(i + 1, o + 1):
            for u in ins[v]:  # (a plain loop: any() over a generator costs more than the test)
                if u >= 0 and fwd[u]:
                    fwd[v] = True
                    break
    on = [False] * n
    cuts: list[int] = []
    if not fwd[o]:
        return on, cuts, None
    on[o] = True
    low = o  # the lowest source of the edges into the on-nodes above
    above = -1  # on-nodes strictly between v and o
    if weights is None:
        for v in range(o, i, -1):
            if on[v]:
                if low >= v and above >= 0:
                    cuts.append(above)
                above += 1
                for u in ins[v]:
                    if u >= 0 and fwd[u]:  # an on-node's source reached from i is on
                        on[u] = True
                        if u < low:
                            low = u
        on[i] = True
        return on, cuts, None
    node_w, slot_w, want = weights
    own_want = want is not slot_w  # (for lengths in blocks the wanted edges are the weighted ones)
    table: dict[tuple, int] = {}
    codes: list[int] = []
    up = sig_up = None  # the on-node above v and its signature's number
    for v in range(o, i, -1):
        if on[v]:
            if low >= v and above >= 0:
                cuts.append(above)
            above += 1
            src = ins[v]
            for u in src:
                if u >= 0 and fwd[u]:
                    on[u] = True
                    if u < low:
                        low = u
            # v's signature: weights, wanted slots, and sources as raw distances (see Shapes); a plain
            # one-input node's is the distance alone (an int: never equal to the tuples of the others)
            if len(src) == 1:
                if not node_w[v] and slot_w[v] is None and not (own_want and want[v]):
                    sig = v - src[0]
                else:
                    sig = (node_w[v], slot_w[v], want[v] if own_want else 0, v - src[0])
            elif len(src) == 2:
                sig = (node_w[v], slot_w[v], want[v] if own_want else 0, v - src[0], v - src[1])
            else:
                sig = (node_w[v], slot_w[v], want[v] if own_want else 0, *[v - u for u in src])
            code = table.get(sig)
            if code is None:
                code = table[sig] = len(table)
            if up is not None:
                codes.append((up - v) << 32 | sig_up)
            up, sig_up = v, code
    on[i] = True
    if up is not None:  # (i == o: no on-node above i)
        codes.append((up - i) << 32 | sig_up)
    codes.reverse()
    return on, cuts, codes


def cut_nodes(ins: list[list[tuple[int, int]]], on: list[bool], i: int, o: int) -> list[int]:
    """The nodes on every i -> o path, in order: the dominators of o in the pair's subgraph."""
    if i == o:
        return [i]
    interior = list(compress(range(i + 1, o), on[i + 1:o]))
    return [i] + [interior[k] for k in _cuts(ins, set(interior), i, o, interior, True)] + [o]


def _cuts(ins, member: set[int], a: int, b: int, interior: list[int], direct_ok: bool) -> list[int]:
    """Positions in `interior` of the inner nodes on every a -> b path of the sub-DAG (the dominators of b).

    The sub-DAG: the nodes `member` (= `interior`, sorted), every one on some a -> b path, and their
    in-edges from `member` or `a` (the direct edges a -> b only when `direct_ok`).  Ids are a
    topological order and a path climbs it, so it passes the height of an inner node c at one edge,
    which ends at c or jumps over it: c is on every path iff no edge u -> w has u < c < w.  One sweep
    down from b keeps the lowest source of the edges into the nodes above; exact, no counting."""
    low = b
    for u in ins[b]:
        if u < low and (u in member or (u == a and direct_ok)):
            low = u
    out = []
    for k in range(len(interior) - 1, -1, -1):
        v = interior[k]
        if low >= v:  # no edge from below v to above it
            out.append(k)
        for u in ins[v]:
            if u < low and (u in member or u == a):
                low = u
    out.reverse()
    return out


@dataclass(slots=True)
class Segment:
    """The paths from `start` to `end` in a sub-DAG (a segment between cut nodes, or a part of one)."""

    start: int
    end: int
    total: int
    poly: Poly  # by length; the end node's weight included, the start node's not
    through: dict[EdgeNo, int]  # paths of the segment through each wanted edge inside it (`segment`: by Edge)


def segment(ins, on, start: int, end: int, node_w: list[int], slot_w: SlotWeights,
            want: SlotWeights | None = None) -> Segment:
    """Counts and polynomial of the paths start -> end over the nodes marked `on` (one flat DP);
    `through` for the edges flagged in `want` (per node, like `slot_w`; all edges when None)."""
    interior = [v for v in range(start + 1, end) if on[v]]
    width = _width(ins)
    seg = _flat(ins, set(interior), start, end, interior, node_w, slot_w, want, True, width)
    seg.through = {divmod(e, width): c for e, c in seg.through.items()}
    return seg


def _width(ins) -> int:
    """The edge numbering's width: one more than the most inputs of a node."""
    return max(map(len, ins), default=0) + 1


def _flat(ins, member: set[int], a: int, b: int, interior: list[int], node_w, slot_w, want, direct_ok,
          width: int) -> Segment:
    """One polynomial DP over the sub-DAG; polynomials are dropped after their last use."""
    nodes = interior + [b]
    edges = [[(s, u) for s, u in enumerate(ins[v]) if u in member or (u == a and (direct_ok or v != b))] for v in nodes]
    uses: dict[int, int] = {}
    for es in edges:
        for _, u in es:
            uses[u] = uses.get(u, 0) + 1
    f: dict[int, Poly] = {a: [1]}
    count: dict[int, int] = {a: 1}
    for v, es in zip(nodes, edges):
        acc: Poly = []
        c = 0
        sw = slot_w[v]
        for s, u in es:
            w = sw[s] if sw else 0
            acc = _add_into(acc, _shift(f[u], w) if w else f[u])
            c += count[u]
            uses[u] -= 1
            if not uses[u] and u != a:
                del f[u]  # last use: keep only the frontier's polynomials
        f[v] = _shift(acc, node_w[v]) if node_w[v] else acc
        count[v] = c
    back = {b: 1}
    through: dict[EdgeNo, int] = {}
    for v, es in zip(reversed(nodes), reversed(edges)):
        bv = back.get(v, 0)
        wv = want[v] if want is not None else None
        for s, u in es:
            back[u] = back.get(u, 0) + bv
            if want is None or (wv and wv[s]):
                through[v * width + s] = count[u] * bv
    return Segment(a, b, count[b], f[b], through)


SMALL = 48  # sub-DAGs up to this many nodes get the flat DP (cheaper than decomposing them)
MAX_DEPTH = 100  # decomposition depth; deeper nests are finished by the flat DP (exact, only slower)

# A small part's result, kept by its shape: (total, poly, paths through its wanted edges keyed by their
# number minus the start node's, (node - start) * width + slot).  Equal blocks share one entry, and so one `poly` and one `through` object.
Entry = tuple[int, Poly, dict[EdgeNo, int]]


class Shapes:
    """The memo of one count: the small parts' results by the shape of their sub-DAG.

    Two keys.  Any part: written out relative to its start (`_flat_shared`).  A part of a series whose
    nodes are all the on-nodes between its ends -- every block of a chain or a stage -- by a slice of
    `codes`, one int per on-node of the pair (`_on` makes them in its sweep): the distance to the next
    on-node and that node's signature (its weights, wanted slots and sources as distances, numbered).
    A source u of a part's node is in the part's sub-DAG iff u's position (u - start) is an on-node's
    within it, which the distances fix: so equal slices are equal sub-DAGs, up to the shift."""

    __slots__ = ("by_shape", "by_codes", "order", "top", "top_cuts", "pos", "codes", "width")

    def __init__(self, i: int | None = None, interior: list[int] | None = None, o: int | None = None,
                 cuts: list[int] | None = None, codes: list[int] | None = None, width: int = 0):
        self.by_shape: dict[tuple, Entry] = {}
        self.by_codes: dict[tuple, Entry] = {}
        # the pair's on-nodes (i, interior, o) and their codes, when the caller has them; `cuts`: the
        # positions in `interior` of the nodes on every i -> o path, when known
        self.order = None if interior is None or codes is None else [i, *interior, o]
        self.top, self.top_cuts, self.codes = interior, cuts, codes
        self.pos: dict[int, int] | None = None  # index of each on-node in `order`, made when first needed
        self.width = width  # of the edge numbering (`_width`; 0: not known yet)

    def position(self, v: int) -> int | None:
        if self.pos is None:
            self.pos = {u: k for k, u in enumerate(self.order)}
        return self.pos.get(v)


def decompose(ins, member: set[int] | None, a: int, b: int, interior: list[int], node_w, slot_w, want,
              direct_ok: bool = True, depth: int = 0, memo: Shapes | None = None) -> Segment:
    """The paths a -> b by series-parallel decomposition: split at the nodes on every path (series:
    multiply), else into the parts that share no inner node (parallel: add), recursively; a part that
    splits neither way gets the flat DP.  Linear in the graph for nets built from blocks in series and
    in parallel (chains, nested residuals, long skips), whatever their depth.  `memo` (one per count)
    holds the small parts' results by shape, so the equal blocks of a stage are counted once."""
    if memo is None:
        memo = Shapes()
    if not memo.width:
        memo.width = _width(ins)
    W = memo.width
    if member is None:  # the pair's own interior, whose cuts are known: its set is needed only for some splits
        if interior is memo.top and memo.top_cuts and SMALL < len(interior) and depth <= MAX_DEPTH:
            return _series(a, b, _series_parts(memo, ins, a, b, interior, memo.top_cuts, node_w, slot_w, want, depth), W)
        member = set(interior)
    if len(interior) <= SMALL:
        return _flat_shared(memo, ins, member, a, b, interior, node_w, slot_w, want, direct_ok)
    if depth > MAX_DEPTH:
        return _flat(ins, member, a, b, interior, node_w, slot_w, want, direct_ok, W)
    cuts = memo.top_cuts if interior is memo.top and memo.top_cuts is not None else (
        _cuts(ins, member, a, b, interior, direct_ok))
    if cuts:
        return _series(a, b, _series_parts(memo, ins, a, b, interior, cuts, node_w, slot_w, want, depth), W)
    parts = _components(ins, member, interior)
    direct = [s for s, u in enumerate(ins[b]) if u == a] if direct_ok else []
    if len(parts) == 1 and not direct:
        return _flat(ins, member, a, b, interior, node_w, slot_w, want, direct_ok, W)
    segs = [decompose(ins, set(p), a, b, p, node_w, slot_w, want, False, depth + 1, memo) for p in parts]
    for s in direct:
        segs.append(Segment(a, b, 1, _shift([1], _sw(slot_w, b, s) + node_w[b]),
                            {b * W + s: 1} if want is None or _sw(want, b, s) else {}))
    poly: Poly = []
    through: dict[EdgeNo, int] = {}
    for sg in segs:
        poly = _add_into(poly, sg.poly)
        through.update(sg.through)  # the parts share no edge
    return Segment(a, b, sum(sg.total for sg in segs), poly, through)


def _series_parts(memo: Shapes, ins, a: int, b: int, interior: list[int], cuts: list[int], node_w, slot_w, want,
                  depth: int) -> list[tuple[int, int, Poly, dict[EdgeNo, int]]]:
    """The parts between consecutive cuts (positions in `interior`), each as (offset, total, poly,
    through): a small part's memo entry with the offset to add to its node ids, or a decomposed part
    with offset 0."""
    out = []
    c0, k0 = a, -1
    use_codes = memo.order is not None
    top = use_codes and interior is memo.top  # the pair's own interior: its positions in `order` are one more
    codes, by_codes = memo.codes, memo.by_codes
    for k1 in cuts + [len(interior)]:
        c1 = interior[k1] if k1 < len(interior) else b
        size = k1 - k0 - 1
        if size > SMALL:
            part = interior[k0 + 1:k1]
            sg = decompose(ins, set(part), c0, c1, part, node_w, slot_w, want, True, depth + 1, memo)
            out.append((0, sg.total, sg.poly, sg.through))
        else:
            p0 = k0 + 1 if top else memo.position(c0) if use_codes else None
            if p0 is not None and (top or memo.position(c1) == p0 + size + 1):  # all on-nodes between: by codes
                key = tuple(codes[p0:p0 + size + 1])
                hit = by_codes.get(key)
                if hit is None:
                    part = interior[k0 + 1:k1]
                    seg = _flat(ins, set(part), c0, c1, part, node_w, slot_w, want, True, memo.width)
                    hit = by_codes[key] = _entry(seg, c0 * memo.width)
            else:
                part = interior[k0 + 1:k1]
                hit = _shared_entry(memo, ins, set(part), c0, c1, part, node_w, slot_w, want, True)
            out.append((c0, *hit))
        c0, k0 = c1, k1
    return out


def _entry(seg: Segment, shift: int) -> Entry:
    """A segment as a memo entry: its edges renumbered from its start (`shift`: start * width)."""
    return seg.total, seg.poly, {e - shift: c for e, c in seg.through.items()}


def _shared_entry(memo: Shapes, ins, member: set[int], a: int, b: int, interior: list[int], node_w, slot_w, want,
                  direct_ok: bool) -> Entry:
    """`_flat`'s result as an entry, computed once per shape of sub-DAG: the key is the sub-DAG written
    relative to `a` (which of its edges count, the weights, the wanted edges)."""
    key = (b - a, want is None, tuple([  # per node: offset, weights, wanted slots, sources (None: no edge)
        (v - a, node_w[v], slot_w[v], None if want is None else want[v],
         tuple([u - a if u in member or (u == a and (direct_ok or v != b)) else None for u in ins[v]]))
        for v in interior + [b]]))
    hit = memo.by_shape.get(key)
    if hit is None:
        seg = _flat(ins, member, a, b, interior, node_w, slot_w, want, direct_ok, memo.width)
        hit = memo.by_shape[key] = _entry(seg, a * memo.width)
    return hit


def _flat_shared(memo: Shapes, ins, member: set[int], a: int, b: int, interior: list[int], node_w, slot_w, want,
                 direct_ok: bool) -> Segment:
    """`_flat`, computed once per shape of sub-DAG (`_shared_entry`), so the equal blocks of a stage share
    one DP and differ only in the node ids of `through`."""
    total, poly, through = _shared_entry(memo, ins, member, a, b, interior, node_w, slot_w, want, direct_ok)
    shift = a * memo.width
    return Segment(a, b, total, list(poly), {e + shift: c for e, c in through.items()})


def _components(ins, member: set[int], interior: list[int]) -> list[list[int]]:
    """The inner nodes grouped by the edges among them (union-find), each group sorted."""
    parent = {v: v for v in interior}

    def root(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for v in interior:
        for u in ins[v]:
            if u in member:
                ru, rv = root(u), root(v)
                if ru != rv:
                    parent[max(ru, rv)] = min(ru, rv)
    groups: dict[int, list[int]] = {}
    for v in interior:
        groups.setdefault(root(v), []).append(v)
    return list(groups.values())


def _series(a: int, b: int, parts: list[tuple[int, int, Poly, dict[EdgeNo, int]]], width: int) -> Segment:
    """Parts in series (`_series_parts`): counts multiply, polynomials multiply (equal ones raised to their
    multiplicity), and the paths through an edge of one part are that part's count times all the others'."""
    total = _product([t for _, t, _, _ in parts])
    quotient: dict[int, int] = {}
    shared: dict[tuple[int, int], int] = {}  # one big integer per value
    values: dict[int, list[tuple[EdgeNo, int]]] = {}  # per `through` object (equal blocks share one): its counts
    through: dict[EdgeNo, int] = {}
    for off, t, _, local_through in parts:
        if not local_through:
            continue
        vals = values.get(id(local_through))  # (the parts hold every such object: ids stay unique)
        if vals is None:
            q = quotient.get(t)
            if q is None:
                q = quotient[t] = total // t
            vals = values[id(local_through)] = []
            for e, local in local_through.items():
                key = (t, local) if local < 1 << 62 else (t, id(local))
                c = shared.get(key)
                if c is None:
                    c = shared[key] = q * local
                vals.append((e, c))
        shift = off * width
        for e, c in vals:
            through[e + shift] = c
    return Segment(a, b, total, _poly_product([p for _, _, p, _ in parts]), through)


def _trim(p: Poly) -> tuple[int, Poly]:
    """(lowest degree, the polynomial divided by x**that degree)."""
    k = 0
    while k < len(p) and p[k] == 0:
        k += 1
    return k, p[k:]


def _poly_product(polys: list[Poly]) -> Poly:
    """The product of the polynomials, equal factors raised to their multiplicity (the equal blocks of a
    stage share one list object: counted by identity first, then compared by value once each)."""
    by_object: dict[int, list] = {}
    for p in polys:
        seen = by_object.get(id(p))
        if seen is None:
            by_object[id(p)] = [p, 1]
        else:
            seen[1] += 1
    shift = 0
    factors: Counter = Counter()
    for p, m in by_object.values():
        k, p = _trim(p)
        if not p:
            return []
        shift += k * m
        if p != [1]:
            factors[tuple(p)] += m
    result: Poly = [1]
    for p in sorted((_power(list(q), m) for q, m in factors.items()), key=len):  # small to large
        result = _mul(result, p)
    return _shift(result, shift)


def _product(values: list[int]) -> int:
    out = 1
    for v, m in Counter(values).items():
        out *= v ** m
    return out


def _pairs(graph: Graph, ins, weights: tuple | None = None, all_edges: bool = False
           ) -> Iterator[tuple[int, int, int, list[bool], list[int], list[int] | None]]:
    """(input node, output node, multiplicity, on, cuts, codes) for every connected pair; multiplicity =
    output names; cuts and codes as `_on` gives them (`all_edges`: `ins` has every edge of the graph)."""
    mult = Counter(graph.outputs.values())
    # one node without inputs (the network input, under one name or several) and every edge there: all nodes
    # are reached from it, and the forward sweep can be skipped
    sole = all_edges and ins.count(()) == 1
    for i in graph.inputs.values():
        for o in mult:
            if o < i:
                continue
            on, cuts, codes = _on(len(graph.nodes), ins, i, o, weights, sole)
            if on[o]:
                yield i, o, mult[o], on, cuts, codes


# ---------------------------------------------------------------- counting


def count_paths(graph: Graph, length: str = "blocks", removed: frozenset[Edge] = frozenset()) -> PathCounts:
    """Exact path count, length histogram and paths through every branch edge; `removed` drops edges."""
    with cycle_collector_paused():  # it makes no cycles; the collector would walk the graph again and again
        return _count_paths(graph, length, removed)


def _count_paths(graph: Graph, length: str, removed: frozenset[Edge]) -> PathCounts:
    bs = branches(graph)
    node_w, slot_w = edge_weights(graph, length, bs)
    want = slot_w if length == "blocks" else _slot_flags(graph, bs)  # the branch edges, per node
    ins = live_inputs(graph, removed)
    total = 0
    poly: Poly = []
    through: dict[EdgeNo, int] = {}
    width = _width(ins)
    for i, o, mult, on, ranks, codes in _pairs(graph, ins, (node_w, slot_w, want), not removed):
        if i == o:
            seg = Segment(i, o, 1, [1], {})
        else:
            interior = list(compress(range(i + 1, o), on[i + 1:o]))
            cuts = [len(interior) - 1 - r for r in reversed(ranks)]
            seg = decompose(ins, None, i, o, interior, node_w, slot_w, want, memo=Shapes(i, interior, o, cuts, codes, width))
        part = _shift(seg.poly, node_w[i])  # (its coefficients add up to seg.total: tests check it)
        total += mult * seg.total
        poly = part if not poly and mult == 1 else _add_into(poly, [mult * x for x in part])
        if not through and mult == 1:  # the first (often the only) pair: its own fresh dict
            through = seg.through
            continue
        for e, c in seg.through.items():
            add = c if mult == 1 else mult * c
            through[e] = through[e] + add if e in through else add
    by_length = dict(zip(range(len(poly)), poly))
    if 0 in by_length.values():
        by_length = {k: c for k, c in by_length.items() if c}
    blocks = [(b.name, through.get(b.merge * width + b.slot, 0)) for b in bs]
    return PathCounts(length, total, by_length, blocks)


# ---------------------------------------------------------------- paths of a given length (sampling)


@dataclass(frozen=True)
class Path:
    """One input -> output path: its edges (node, slot) from the input's consumer to the output."""

    input: str
    output: str
    edges: tuple[Edge, ...]
    length: int

    def nodes(self, graph: Graph) -> list[int]:
        first = graph.inputs[self.input]
        return [first] + [v for v, _ in self.edges]


class PathSampler:
    """Draws input -> output paths of an exact length, uniformly, through the graph's real structure.

    Keeps one length polynomial per node and (input, output name) pair -- meant for networks small
    enough to run in torch; `cost` says how many coefficients that is before it is built."""

    def __init__(self, graph: Graph, length: str = "blocks"):
        self.graph = graph
        self.node_w, self.slot_w = edge_weights(graph, length)
        self.ins = live_inputs(graph)
        self.pairs: list[tuple[str, str, list[Poly]]] = []
        for iname, i in graph.inputs.items():
            for oname, o in graph.outputs.items():
                if o >= i:
                    f = self._forward(i, o)
                    if f[o]:
                        self.pairs.append((iname, oname, f))

    def _forward(self, i: int, o: int) -> list[Poly]:
        f: list[Poly] = [[] for _ in self.graph.nodes]
        f[i] = _shift([1], self.node_w[i])
        for v in range(i + 1, o + 1):
            acc: Poly = []
            for s, u in enumerate(self.ins[v]):
                if u >= 0 and f[u]:
                    acc = _add_into(acc, _shift(f[u], _sw(self.slot_w, v, s)))
            f[v] = _shift(acc, self.node_w[v]) if acc else []
        return f

    def count(self, k: int) -> int:
        """Number of paths of length k (all pairs)."""
        return sum(self._at(f, self.graph.outputs[o], k) for _, o, f in self.pairs)

    @staticmethod
    def _at(f: list[Poly], v: int, k: int) -> int:
        p = f[v]
        return p[k] if 0 <= k < len(p) else 0

    def _steps(self, f: list[Poly], v: int, r: int) -> list[tuple[int, Edge, int, int]]:
        """Ways back from v with r length left (v's own weight included): (count, edge, source, r left)."""
        r -= self.node_w[v]
        out = []
        for s, u in enumerate(self.ins[v]):
            if u < 0:
                continue
            ru = r - _sw(self.slot_w, v, s)
            c = self._at(f, u, ru)
            if c:
                out.append((c, (v, s), u, ru))
        return out

    def sample(self, k: int, rng: random.Random) -> Path:
        """One path of length k, every such path equally likely."""
        weights = [self._at(f, self.graph.outputs[o], k) for _, o, f in self.pairs]
        pick = rng.randrange(sum(weights))
        for (iname, oname, f), w in zip(self.pairs, weights):
            if pick < w:
                break
            pick -= w
        i, v, r = self.graph.inputs[iname], self.graph.outputs[oname], k
        edges: list[Edge] = []
        while v != i:
            steps = self._steps(f, v, r)
            pick = rng.randrange(sum(c for c, *_ in steps))
            for c, e, u, ru in steps:
                if pick < c:
                    break
                pick -= c
            edges.append(e)
            v, r = u, ru
        return Path(iname, oname, tuple(reversed(edges)), k)

    def all(self, k: int) -> list[Path]:
        """Every path of length k (only call when `count(k)` is small)."""
        out: list[Path] = []
        for iname, oname, f in self.pairs:
            i, o = self.graph.inputs[iname], self.graph.outputs[oname]
            # depth first, without recursion (paths can be thousands of edges long); the edges found so
            # far are a linked list (edge, rest), so each path costs its length, not its length squared
            stack: list[tuple[int, int, tuple | None]] = [(o, k, None)] if self._at(f, o, k) else []
            while stack:
                v, r, tail = stack.pop()
                if v == i:
                    edges = []
                    while tail is not None:
                        e, tail = tail
                        edges.append(e)
                    out.append(Path(iname, oname, tuple(edges), k))
                    continue
                for _, e, u, ru in reversed(self._steps(f, v, r)):
                    stack.append((u, ru, (e, tail)))
        return out

"""Exact input->output path counts and path-length histograms over the IR.

Reads a `Graph` (node inputs, regions, op specs); writes nothing.  A path is a
sequence of IR edges from a network input to a network output; every input
slot is its own edge, so `add(x, x)` doubles the count.  With several inputs
and outputs the count is the sum over all (input, output) pairs.

Two path lengths (Veit et al., "Residual networks behave like ensembles of
relatively shallow networks", 2016):

* ``blocks``: how many residual / dense / parallel branches the path enters.
  A branch is identified by the merge slot it arrives at
  (`Region.branch_slots`), so an empty branch (`residual { }`) still counts 1
  and a path through the shortcut counts 0;
* ``layers``: how many weighted ops (conv, linear, transposed conv) it visits.

Nothing is enumerated.  Totals are a scalar dynamic programme over the
topological order (forward count F, backward count B; paths through an edge
u->v = F[u] * B[v]).  The histogram uses the series structure, one (input,
output) pair at a time: a node v lies on *every* path of the pair iff
F[v] * B[v] == (paths of the pair), and the pair's polynomial is the product
of the polynomials of the segments between such cut nodes.  Segments are
computed by a small polynomial DP; equal segments (the blocks of a stage)
are raised to their multiplicity with J.C.P. Miller's recurrence for powers
of a polynomial, which is linear in the degree of the result.  A chain of 10,000 residual blocks (2**10000 paths, every binomial
coefficient of the histogram) takes about a third of a second.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

from ..ir import Graph

LENGTHS = ("blocks", "layers")
Poly = list[int]  # coefficient of x**k at index k, exact Python ints


# ---------------------------------------------------------------- polynomial helpers


def _shift(p: Poly, k: int) -> Poly:
    return [0] * k + p if k and p else p


def _add_into(acc: Poly, p: Poly) -> Poly:
    if len(p) > len(acc):
        acc = acc + [0] * (len(p) - len(acc))
    for i, c in enumerate(p):
        if c:
            acc[i] += c
    return acc


def _mul(a: Poly, b: Poly) -> Poly:
    if not a or not b:
        return []
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
    for k in range(1, n * d + 1):
        s = 0
        for i, pi in terms:
            if i > k:
                break
            qk = q[k - i]
            if qk:
                s += ((n + 1) * i - k) * pi * qk
        q[k] = s // (k * p0)
    return q


# ---------------------------------------------------------------- result


@dataclass
class PathCounts:
    """Exact path statistics of one network (all counts are Python ints)."""

    length: str
    total: int
    by_length: dict[int, int]
    blocks: list[tuple[str, int]]  # (region name, paths through its branch); parallel: "name[i]"
    length_sum: int = 0  # sum of all path lengths (exact; mean = length_sum / total)
    cut_nodes: list[int] = field(default_factory=list, repr=False)

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


# ---------------------------------------------------------------- counting


def edge_weights(graph: Graph, length: str) -> tuple[list[int], dict[tuple[int, int], int]]:
    """Node weights and (merge node, slot) -> weight for the chosen length."""
    if length not in LENGTHS:
        raise ValueError(f"length must be one of {LENGTHS}, got {length!r}")
    node_w = [0] * len(graph.nodes)
    slot_w: dict[tuple[int, int], int] = {}
    if length == "layers":
        node_w = [1 if n.spec.weighted else 0 for n in graph.nodes]
    else:
        for r in graph.regions:
            for s in r.branch_slots:
                slot_w[(r.merge, s)] = 1
    return node_w, slot_w


def forward_backward(graph: Graph, removed: frozenset[tuple[int, int]] = frozenset(),
                     sources: list[int] | None = None, sinks: list[int] | None = None) -> tuple[list[int], list[int]]:
    """Scalar path counts: F[v] = paths from any input to v, B[v] = paths from v to any output
    (or from / to the given `sources` / `sinks` node ids).

    `removed` holds (node, slot) edges to leave out (lesions)."""
    nodes = graph.nodes
    F = [0] * len(nodes)
    for i in graph.inputs.values() if sources is None else sources:
        F[i] += 1
    for n in nodes:
        if n.inputs:
            s = 0
            for slot, u in enumerate(n.inputs):
                if (n.id, slot) not in removed:
                    s += F[u]
            F[n.id] += s
    B = [0] * len(nodes)
    for o in graph.outputs.values() if sinks is None else sinks:
        B[o] += 1
    for n in reversed(nodes):
        b = B[n.id]
        if b:
            for slot, u in enumerate(n.inputs):
                if (n.id, slot) not in removed:
                    B[u] += b
    return F, B


def count_paths(graph: Graph, length: str = "blocks",
                removed: frozenset[tuple[int, int]] = frozenset()) -> PathCounts:
    """Exact path count and length histogram; `removed` drops (merge node, slot) edges."""
    node_w, slot_w = edge_weights(graph, length)
    F, B = forward_backward(graph, removed)
    total = sum(F[o] for o in graph.outputs.values())

    # paths through a branch = F[branch output] * B[merge]
    through: dict[tuple[int, int], int] = {}
    blocks: list[tuple[str, int]] = []
    for r in graph.regions:
        for i, s in enumerate(r.branch_slots):
            name = r.name if len(r.branch_slots) == 1 else f"{r.name}[{i}]"
            t = 0 if (r.merge, s) in removed else F[graph.nodes[r.merge].inputs[s]] * B[r.merge]
            through[(r.merge, s)] = t
            blocks.append((name, t))

    # sum of lengths: every weighted node / branch edge contributes (paths through it) x weight
    length_sum = sum(F[v] * B[v] for v, w in enumerate(node_w) if w)
    for key, w in slot_w.items():
        length_sum += w * through.get(key, 0)

    by_length: dict[int, int] = {}
    cuts: list[int] = []
    if total:
        if len(graph.inputs) == 1 and len(set(graph.outputs.values())) == 1:
            pairs = [(next(iter(graph.inputs.values())), next(iter(graph.outputs.values())), F, B, total)]
        else:  # one (input, output) pair at a time, so each pair's own series structure is used
            pairs = []
            for i in graph.inputs.values():
                Fi, _ = forward_backward(graph, removed, sources=[i], sinks=[])
                for o in set(graph.outputs.values()):
                    if Fi[o]:
                        _, Bo = forward_backward(graph, removed, sources=[], sinks=[o])
                        pairs.append((i, o, Fi, Bo, Fi[o]))
        mult = {o: list(graph.outputs.values()).count(o) for o in graph.outputs.values()}
        poly: Poly = []
        for i, o, Fi, Bo, t in pairs:
            # v is on every i->o path iff Fi[v] * Bo[v] == t.  Candidates come from the same counts
            # modulo a 61-bit prime (a DP on machine-size ints, no big multiplications); the histogram's
            # sum is then checked against t exactly, and only if it disagrees are the cuts verified one
            # by one with big integers.
            c = _cut_candidates(graph, removed, i, o)
            part = _histogram(graph, node_w, slot_w, removed, c)
            if sum(part) != t:
                c = [v for v in c if Fi[v] * Bo[v] == t]
                part = _histogram(graph, node_w, slot_w, removed, c)
            cuts = cuts or c
            poly = _add_into(poly, [mult[o] * x for x in part])
        by_length = {k: c for k, c in enumerate(poly) if c}
    return PathCounts(length, total, by_length, blocks, length_sum, cuts)


_PRIME = (1 << 61) - 1


def _cut_candidates(graph: Graph, removed: frozenset, i: int, o: int) -> list[int]:
    """Nodes v with F_i[v] * B_o[v] == F_i[o] modulo a prime: the true cut nodes, and with probability
    about 2**-61 per node a false one (which makes the histogram's sum fall short; the caller checks)."""
    nodes, p = graph.nodes, _PRIME
    F = [0] * len(nodes)
    F[i] = 1
    for v in range(i + 1, o + 1):
        s = 0
        for slot, u in enumerate(nodes[v].inputs):
            if F[u] and (v, slot) not in removed:
                s += F[u]
        F[v] = s % p
    B = [0] * len(nodes)
    B[o] = 1
    for v in range(o, i, -1):
        b = B[v]
        if b:
            for slot, u in enumerate(nodes[v].inputs):
                if u >= i and (v, slot) not in removed:
                    B[u] = (B[u] + b) % p
    t = F[o]
    return [v for v in range(i, o + 1) if F[v] and F[v] * B[v] % p == t]


def _segment(graph: Graph, start: int, end: int, node_w: list[int],
             slot_w: dict[tuple[int, int], int], removed: frozenset) -> Poly:
    """Length polynomial of the paths from node `start` to node `end`.

    The start node's own weight belongs to the previous segment; the end node's to this one.
    Only nodes between the two in topological order can lie on such a path."""
    nodes = graph.nodes
    f: dict[int, Poly] = {start: [1]}
    for v in range(start + 1, end + 1):
        n = nodes[v]
        acc: Poly = []
        for slot, u in enumerate(n.inputs):
            if u not in f or (v, slot) in removed:
                continue
            acc = _add_into(acc, _shift(f[u], slot_w.get((v, slot), 0)))
        if acc:
            f[v] = _shift(acc, node_w[v])
    return f.get(end, [])


def _histogram(graph: Graph, node_w, slot_w, removed, cuts: list[int]) -> Poly:
    # `cuts` runs from the pair's input to its output (both lie on every path between them)
    shift = node_w[cuts[0]]
    factors: Counter = Counter()
    for a, b in zip(cuts, cuts[1:]):
        p = _segment(graph, a, b, node_w, slot_w, removed)
        while p and p[-1] == 0:
            p.pop()
        if not p:
            return []
        k = 0
        while p[k] == 0:
            k += 1
        shift += k
        if p[k:] != [1]:
            factors[tuple(p[k:])] += 1
    result: Poly = [1]
    # raise equal segments to their multiplicity, then multiply small to large
    powers = sorted((_power(list(q), m) for q, m in factors.items()), key=len)
    for p in powers:
        result = _mul(result, p)
    return _shift(result, shift)

"""Exact symbolic input sizes: shapes as functions of H, W and the sets of sizes that work.

Reads a `Graph` (its ops, attributes and wiring — not its concrete shapes); writes `DimAnalysis`
(one size and the dims tied to it), `PairAnalysis` (two sizes that meet in a merge) and the ties
between sizes (`ties`).

The method (docs/sizes.md has the maths).  Every shape rule in the op table is integer
arithmetic: `+`, `-`, `*` by a constant, `//` and `%` by a constant, comparisons.  Fix one input
dimension H to a residue class, H = M*k + r.  If every divisor s that the rules use divides the
current slope, `(a*k + b) // s = (a/s)*k + b // s` exactly, so every dimension of every node is an
*affine* function a*k + b of k.  `Dim` is such a value, carried for a vector of cases at once
(every residue r at once, or every concrete size at once), and the unchanged shape rules run on it:

* `//` or `%` by an s that does not divide the slope raises `_Period`: the analysis refines M and
  starts over (M ends as the lcm of the strides, e.g. 32 for ResNet-50).
* A comparison whose answer differs between cases raises `_Split`: the cases are partitioned by
  the answer and each part is run on its own.
* In the *generic* run (k -> infinity) a comparison of a non-constant a*k + b is decided by the
  sign of a, and the size beyond which that answer holds is recorded.  Above the largest such size
  H*, every run takes exactly the branches the generic run took, so its outcome (valid, or the
  first error) holds for every size >= H* in that residue class.
* Sizes below H* are run concretely, all at once as one vector of cases.

So the valid sets are exact — no sampling, no time budget.  What is not affine (a product of two
sizes, as `flatten` of a feature map makes) ends the generic run with `NotSymbolic`; the sizes are
then decided concretely up to a bound, and the report says so.

Several input dims can follow one size (`Binding`: c*X + e, a tie such as W = H); `Offsets` gives
each case its own offset, which is how the lines q*B = p*A + E of two sizes that meet are decided in
one run (`pair_analysis`).
"""
from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from .. import ops
from ..ir import Graph

SYMBOLS = "HWD"  # default names for spatial dims 1, 2, 3
MAX_PERIOD = 1 << 12  # M beyond this: not worth it (a network with strides whose lcm is > 4096)
MAX_RUNS = 2000  # graph passes per dimension: refinements and splits are bounded by this
MAX_CONCRETE = 1 << 15  # sizes decided concretely below H* (or as the fallback)


class NotSymbolic(Exception):
    """A rule did something that is not affine in the size (e.g. multiplied two sizes)."""


class _Period(Exception):
    def __init__(self, factor: int):
        self.factor = factor


class _Split(Exception):
    def __init__(self, mask: np.ndarray):
        self.mask = mask


class _Run:
    """State of one pass over the graph: generic or concrete, and the thresholds met."""

    def __init__(self, generic: bool, M: int, r: np.ndarray):
        self.generic, self.M, self.r = generic, M, r
        self.threshold = 1  # generic: the smallest size from which every comparison takes its limit value


class _State(threading.local):
    """The run in progress and the masks met in it, per thread: two threads analysing at once each see their
    own (q14: a module-wide run let one thread's analysis decide another's comparisons -- wrong size sets)."""

    def __init__(self):
        self.run: _Run | None = None  # the run in progress (the shape rules take no context argument)
        self.seen: list = []  # _Tr: masks met at comparisons in the trace in progress


_STATE = _State()


class Dim:
    """a*k + b[i] for case i; in a concrete run a == 0 and b holds the sizes themselves."""

    __slots__ = ("a", "b")

    def __init__(self, a: int, b: np.ndarray):
        self.a, self.b = a, b

    @staticmethod
    def make(a: int, b: np.ndarray):
        if a == 0 and (b == b[0]).all():
            return b[0].item()  # the same constant in every case: a plain int (or float) from here on
        return Dim(a, b)

    # ---- arithmetic (int and Dim operands)
    def __add__(self, o):
        if isinstance(o, Dim):
            return Dim.make(self.a + o.a, self.b + o.b)
        if isinstance(o, bool) or not isinstance(o, int):
            return _float_op(self, o, "+")
        return self if o == 0 else Dim(self.a, self.b + o)  # a constant shift keeps a Dim a Dim

    __radd__ = __add__

    def __neg__(self):
        return Dim.make(-self.a, -self.b)

    def __sub__(self, o):
        return self + (-o)

    def __rsub__(self, o):
        return (-self) + o

    def __mul__(self, o):
        if isinstance(o, Dim):
            if _STATE.run is not None and not _STATE.run.generic:
                return Dim.make(0, self.b * o.b)
            raise NotSymbolic("a product of two sizes")
        if isinstance(o, float):
            if not o.is_integer():
                if self.a == 0:  # concrete sizes: a float vector, until a rule floors it
                    return Dim(0, self.b * o)
                raise NotSymbolic(f"scaling a size by {o}")
            o = int(o)
        if not isinstance(o, int):
            return NotImplemented
        return self if o == 1 else Dim.make(self.a * o, self.b * o)

    __rmul__ = __mul__

    def __floordiv__(self, s):
        s = _divisor(s)
        if s == 1:
            return self
        if self.a % s:
            raise _Period(s // math.gcd(self.a, s))
        return Dim.make(self.a // s, self.b // s)

    def __mod__(self, s):
        s = _divisor(s)
        if self.a % s:
            raise _Period(s // math.gcd(self.a, s))
        return Dim.make(0, self.b % s)

    def __rfloordiv__(self, o):
        raise NotSymbolic("dividing by a size")

    __rmod__ = __rtruediv__ = __truediv__ = __rfloordiv__
    __pow__ = __rpow__ = __mul__

    def __floor__(self):
        return self if self.b.dtype.kind == "i" else Dim.make(0, np.floor(self.b).astype(np.int64))

    def __ceil__(self):
        return self if self.b.dtype.kind == "i" else Dim.make(0, np.ceil(self.b).astype(np.int64))

    def __int__(self):
        raise NotSymbolic("int() of a size")

    __index__ = __float__ = __int__

    # ---- comparisons: a bool when every case agrees, else a split
    def _decide(self, o, op) -> bool:
        d = self - o
        if not isinstance(d, Dim):
            return op(d, 0)
        run = _STATE.run
        if d.a != 0:
            if run is None or not run.generic:
                raise NotSymbolic("a comparison outside a symbolic run")
            # In the generic run, k -> infinity: the sign of d is the sign of a.  It holds for
            # k > -b/a, i.e. from k_t = floor(-b/a) + 1, that is from size M*k_t + r.
            kt = np.floor_divide(-d.b, d.a) + 1 if d.a > 0 else np.floor_divide(d.b, -d.a) + 1
            run.threshold = max(run.threshold, int((run.M * kt + run.r).max()))
            return op(d.a, 0)
        t = op(d.b, 0)
        if t.all():
            return True
        if not t.any():
            return False
        raise _Split(t)

    def __lt__(self, o):
        return self._decide(o, lambda x, y: x < y)

    def __le__(self, o):
        return self._decide(o, lambda x, y: x <= y)

    def __gt__(self, o):
        return self._decide(o, lambda x, y: x > y)

    def __ge__(self, o):
        return self._decide(o, lambda x, y: x >= y)

    def __eq__(self, o):
        if not isinstance(o, (int, Dim)) or isinstance(o, bool):
            return False
        return self._decide(o, lambda x, y: x == y)

    def __ne__(self, o):
        if not isinstance(o, (int, Dim)) or isinstance(o, bool):
            return True
        return self._decide(o, lambda x, y: x != y)

    def __bool__(self):
        return self._decide(0, lambda x, y: x != y)

    def clip0(self):
        """max(0, self) that does not split cases (ops/rounding.py): elementwise on a vector of constants."""
        if self.a == 0:
            return Dim.make(0, np.maximum(self.b, 0))
        return max(0, self)

    def __hash__(self):
        return hash((self.a, self.b.tobytes()))

    def __repr__(self):
        return f"Dim({self.a}k + {self.b.tolist()})"


def _divisor(s) -> int:
    if isinstance(s, Dim) or not isinstance(s, int) or isinstance(s, bool) or s <= 0:
        raise NotSymbolic(f"division by {s!r}")
    return s


def _float_op(d: Dim, o, what: str):
    raise NotSymbolic(f"size {what} {o!r}")


# ----------------------------------------------------------------- one pass over the graph


@dataclass
class _Outcome:
    M: int  # the period the cases are residues of (generic), 1 for concrete sizes
    cases: np.ndarray  # the residues (generic) or sizes (concrete) this outcome holds for
    shapes: list[tuple] | None  # per node (ints and Dims), None on failure
    error: tuple[int, str] | None  # (node id, message) of the first problem
    rounds: np.ndarray  # per case: does some op round (drop or pad pixels)?
    tags: np.ndarray | None = None  # per case: the index of the initial case it came from


def _subset(v, mask: np.ndarray):
    return Dim.make(v.a, v.b[mask]) if isinstance(v, Dim) else v


def _refine_value(v, f: int):
    """k = f*k' + j for j < f: a*k + b becomes (a*f)*k' + (b + a*j), the cases repeated per j."""
    if not isinstance(v, Dim):
        return v
    return Dim(v.a * f, np.concatenate([v.b + v.a * j for j in range(f)]))


def _refine(M: int, f: int, cs: np.ndarray, shapes: list, rounds: np.ndarray):
    """The same state with the period M refined to M*f (each residue r becomes r + M*j, j < f)."""
    return (np.concatenate([cs + M * j for j in range(f)]),
            [None if s is None else tuple(_refine_value(v, f) for v in s) for s in shapes], np.tile(rounds, f))


@dataclass(frozen=True)
class Binding:
    """Input node `node`'s dimension `dim` is c*X + e, X the analysed size (W = H: c = 1, e = 0)."""

    node: int
    dim: int
    c: int = 1
    e: int = 0

    def at(self, generic: bool, M: int, cs: np.ndarray):
        """The value for the cases: residues of X mod M (generic, X = M*k + r) or concrete sizes X."""
        if generic:
            return Dim(self.c * M, self.c * cs + self.e)
        v = self.c * cs + self.e
        return Dim(0, v) if len(cs) > 1 else int(v[0])


@dataclass(frozen=True)
class Offsets:
    """Input node `node`'s dimension `dim` is c*X + e[i] in initial case i (generic runs only: the
    cases of one run are the residues of X repeated once per offset, B = c*A + D for D in a window)."""

    node: int
    dim: int
    c: int
    e: np.ndarray

    def at(self, generic: bool, M: int, cs: np.ndarray):
        if not generic or len(cs) != len(self.e):
            raise NotSymbolic("offsets outside their generic run")
        return Dim(self.c * M, self.c * cs + self.e)


@dataclass(frozen=True)
class Table:
    """Input node `node`'s dimension `dim` takes values[i] in concrete case i (a grid of several sizes)."""

    node: int
    dim: int
    values: np.ndarray

    def at(self, generic: bool, M: int, cs: np.ndarray):
        v = self.values[cs]
        return Dim(0, v) if len(cs) > 1 else int(v[0])


def _drive(g: Graph, bindings: list, generic: bool, M: int, cases: np.ndarray, rounding,
           budget: list[int], stop: int | None = None) -> tuple[list[_Outcome], int]:
    """Run every shape rule with the bound input dimensions set from the cases (residues mod M
    with k -> infinity when `generic`, else concrete sizes or grid points), splitting where the
    cases disagree.

    A split resumes both halves at the node that split (their shapes so far are the parent's,
    restricted to the half), and a division that needs a finer period refines the state in place,
    so the work is one pass plus one node per split or refinement.  Returns the outcomes (all on
    one common period) and the size from which every generic comparison took its limit value.
    """
    sources = set(g.inputs.values())
    rules = [None if n.id in sources else ops.OPS[n.op].infer for n in g.nodes]
    last_use = [0] * len(g.nodes)
    for n in g.nodes:
        for i in n.inputs:
            last_use[i] = n.id
    bound: dict[int, list] = {}
    for b in bindings:
        bound.setdefault(b.node, []).append(b)
    todo = [(0, M, [], np.zeros(len(cases), dtype=bool), cases, np.arange(len(cases)))]
    done: list[_Outcome] = []
    threshold = 1
    try:
        while todo:
            start, M, shapes, rounds, cs, tags = todo.pop()
            budget[0] -= 1
            if budget[0] < 0:
                raise NotSymbolic(f"more than {MAX_RUNS} cases to tell apart")
            _STATE.run = run = _Run(generic, M, cs)
            error = None
            try:
                for n in g.nodes[start:stop]:
                    xs = [shapes[i] for i in n.inputs]
                    if rules[n.id] is None:
                        y = list(n.shape)
                        for b in bound.get(n.id, ()):
                            y[b.dim] = b.at(generic, M, cs)
                        y = tuple(y)
                        try:
                            _check_shape(y, "input sizes must be positive, got")
                        except ops.ShapeProblem as p:
                            error = (n.id, p.message)
                            break
                    else:
                        try:
                            y = rules[n.id](n.attrs, xs)
                            y = tuple(y.shape if isinstance(y, ops.Inferred) else y)
                            _check_shape(y, f"{n.op} output would be")
                        except ops.ShapeProblem as p:
                            error = (n.id, p.message)
                            break
                        except (ZeroDivisionError, OverflowError, ValueError) as e:
                            error = (n.id, str(e))
                            break
                        except (TypeError, AttributeError) as e:  # a rule that needs a concrete int
                            raise NotSymbolic(f"{n.op}: {e}") from None
                        if rounding is not None:
                            r = rounding(n, xs, y)
                            rounds = rounds | r if isinstance(r, np.ndarray) else (rounds | True if r else rounds)
                    shapes.append(y)
            except NotSymbolic:
                if generic or len(cs) == 1:
                    raise
                todo += [(0, 1, [], np.zeros(1, dtype=bool), cs[i:i + 1], tags[i:i + 1]) for i in range(len(cs))]
                continue
            except _Split as sp:
                j = len(shapes)  # the node that split is rerun by both halves
                for m in (sp.mask, ~sp.mask):
                    kept = [None if last_use[i] < j and not generic else tuple(_subset(v, m) for v in shape)
                            for i, shape in enumerate(shapes)]  # generic: all kept, they become formulas
                    todo.append((j, M, kept, rounds[m], cs[m], tags[m]))
                continue
            except _Period as p:
                if M * p.factor > MAX_PERIOD:
                    raise NotSymbolic(f"the sizes' period exceeds {MAX_PERIOD}") from None
                cs2, shapes2, rounds2 = _refine(M, p.factor, cs, shapes, rounds)
                todo.append((len(shapes), M * p.factor, shapes2, rounds2, cs2, np.tile(tags, p.factor)))
                continue
            finally:
                threshold = max(threshold, run.threshold)
            done.append(_Outcome(M, cs, None if error else shapes, error, rounds, tags))
    finally:
        _STATE.run = None
    top = math.lcm(*(o.M for o in done)) if done else 1
    for i, o in enumerate(done):  # one common period for all outcomes
        if o.M != top:
            f = top // o.M
            cs2, shapes2, rounds2 = _refine(o.M, f, o.cases, o.shapes or [], o.rounds)
            done[i] = _Outcome(top, cs2, shapes2 if o.shapes is not None else None, o.error, rounds2, np.tile(o.tags, f))
    return done, threshold


def _check_shape(y: tuple, what: str) -> None:
    """Every size of `y` at least 1 (a Dim: in every case; splits where the cases disagree)."""
    for d in y:
        if isinstance(d, Dim):
            _check_positive(d)
        elif d < 1:
            raise ops.ShapeProblem("E036", f"{what} {list(y)}")


def _check_positive(d: Dim) -> None:
    if d < 1:  # every case would be empty: only reachable in concrete runs (generic: a > 0 decides)
        raise ops.ShapeProblem("E036", f"a size would be {d.b.min()}")


# ----------------------------------------------------------------- rounding (nothing rounded away)


def _as_mask(v):
    """A per-case boolean from an int/Dim expression that is 0 exactly when nothing rounds."""
    if isinstance(v, Dim):
        if v.a != 0:
            raise NotSymbolic("rounding test on a non-constant remainder")
        return v.b != 0
    return bool(v)


def rounding(spatial: set[int]):
    """A predicate: where does a node round in the spatial dimensions `spatial` (per case)?

    Dispatches through each op's `rounding` facet (resdsl/ops/rounding.py lists the rules).
    """
    from .sizes import rounding_terms

    def rounds(n, xs, y):
        out = False
        for i, term in rounding_terms(n, xs, y):
            if i in spatial:
                out = out | _as_mask(term)
        return out

    return rounds


# ----------------------------------------------------------------- driving the passes for one dimension


@dataclass(frozen=True)
class Progression:
    """The sizes start, start + step, start + 2*step, ..."""

    start: int
    step: int

    def __str__(self) -> str:
        if self.step == 1:
            return f"any size >= {self.start}" if self.start > 1 else "any size"
        if self.start == self.step:
            return f"multiples of {self.step}"
        return f"{self.start} + {self.step}k"

    def to_json(self) -> dict:
        return {"start": self.start, "step": self.step}


@dataclass
class SizeSet:
    """A set of sizes as a union of arithmetic progressions plus finitely many extra sizes."""

    progressions: list[Progression]
    extra: list[int]
    upper: int | None = None  # no size above this (a constraint such as `H <= 1024`)

    def __contains__(self, v: int) -> bool:
        if self.upper is not None and v > self.upper:
            return False
        return v in self.extra or any(v >= p.start and (v - p.start) % p.step == 0 for p in self.progressions)

    def affine(self, q: int, off: int) -> "SizeSet":
        """The set {q*x + off : x in self}."""
        if (q, off) == (1, 0):
            return self
        return SizeSet([Progression(q * p.start + off, q * p.step) for p in self.progressions],
                       [q * e + off for e in self.extra], None if self.upper is None else q * self.upper + off)

    def within(self, lo: int = 1, hi: int | None = None) -> "SizeSet":
        """The sizes of this set from lo to hi."""
        if lo <= 1 and hi is None:
            return self
        progs = [Progression(p.start + max(0, -(-(lo - p.start) // p.step)) * p.step, p.step) for p in self.progressions]
        upper = hi if self.upper is None else (self.upper if hi is None else min(hi, self.upper))
        progs = [p for p in progs if upper is None or p.start <= upper]
        return SizeSet(progs, [e for e in self.extra if e >= lo and (upper is None or e <= upper)], upper)

    def smallest(self, count: int = 6) -> list[int]:
        out, v = [], 1
        cands = sorted(set(self.extra) | {p.start + i * p.step for p in self.progressions for i in range(count)})
        for v in cands:
            if v in self and len(out) < count:
                out.append(v)
        return out

    def nearest(self, v: int) -> tuple[int | None, int | None]:
        top = v if self.upper is None else min(v, self.upper)
        below = max([e for e in self.extra if e <= top] +
                    [p.start + ((top - p.start) // p.step) * p.step for p in self.progressions if top >= p.start],
                    default=None)
        above = min([e for e in self.extra if e >= v] +
                    [max(p.start, p.start + -(-(v - p.start) // p.step) * p.step) for p in self.progressions],
                    default=None)
        if above is not None and self.upper is not None and above > self.upper:
            above = None
        return below, above

    def __str__(self) -> str:
        few = self.smallest(7) if self.upper is not None else []
        if self.upper is not None and len(few) < 7:  # a bound leaves a few sizes: name them (not ">= 8 (up to 8)")
            return ", ".join(map(str, few)) or "none"
        parts = [str(p) for p in self.progressions] + [str(e) for e in self.extra]
        text = ", ".join(parts) if parts else "none"
        return text + (f" (up to {self.upper})" if self.upper is not None and self.progressions else "")

    def empty(self) -> bool:
        return not self.progressions and not self.extra

    def to_json(self) -> dict:
        return {"progressions": [p.to_json() for p in self.progressions], "extra": self.extra,
                "upper": self.upper, "smallest": self.smallest()}


def nothing_rounded(s: SizeSet) -> str:
    """The sentence about the sizes at which no op rounds a size away."""
    return "some op rounds at every size" if s.empty() else f"nothing rounded for {s}"


@dataclass
class DimAnalysis:
    input: str
    dim: int  # index into the input's shape (1 = first spatial dim)
    symbol: str
    exact: bool
    why: str  # when not exact: what stopped the symbolic run
    period: int
    threshold: int  # sizes >= this follow the periodic rule
    runs: int  # graph passes it took (deterministic)
    valid: SizeSet  # sizes at which the network runs
    unrounded: SizeSet  # ... and no op rounds
    first_error: dict[int, tuple[int, str]] = field(default_factory=dict)  # size -> (node, message), small sizes
    generic: dict[int, list] = field(default_factory=dict)  # node id -> [(residues, shape of ints and Dims)]
    tied: tuple = ()  # (input, dim, c, e): the input dimensions that follow this size as c*X + e (W = X)
    bindings: tuple = ()  # the Bindings it was run with (analysis/sizes.py sets them)

    @functools.cached_property
    def formulas(self) -> dict[int, tuple]:
        """Node id -> its shape with the entries that depend on this size as formulas (strings)."""
        return {nid: _formula(self.period, rs, self.symbol) for nid, rs in self.generic.items()}

    def shape_at(self, node: int, size: int) -> tuple[int, ...]:
        """The node's shape at input size `size` (>= threshold, valid), from the generic run: exact."""
        if not self.exact or size < self.threshold:
            raise ValueError(f"shape_at needs an exact analysis and size >= {self.threshold}")
        k, r = divmod(size, self.period)
        for residues, shape in self.generic.get(node, ()):
            hit = np.nonzero(residues == r)[0]
            if len(hit):
                i = int(hit[0])
                return tuple(v if isinstance(v, int) else int(v.a * k + v.b[i]) for v in shape)
        raise ValueError(f"size {size} is not valid")


def shapes_at(g: Graph, bindings: list, sizes: list[int], stop: int) -> list[tuple[np.ndarray, list]]:
    """The shapes of the nodes before node `stop` at each concrete size X (the bound input dims set from
    X, the others at their sizes in `g`), as (sizes, shapes) groups: a shape entry is an int, or a Dim
    whose b holds one value per size of its group.  Reads `g`; writes nothing."""
    if not sizes:
        return []
    outs, _ = _drive(g, bindings, False, 1, np.array(sizes, dtype=np.int64), None, [MAX_RUNS * 4], stop)
    return [(o.cases, o.shapes) for o in outs if o.shapes is not None]


def _periodic_set(M: int, ok: dict[int, bool], threshold: int, small_ok: set[int]) -> SizeSet:
    """Sizes v with v in small_ok (v < threshold), or v >= threshold and ok[v % M]."""
    starts: dict[int, int] = {}
    for r, good in ok.items():
        if not good:
            continue
        first = threshold + ((r - threshold) % M)  # smallest v >= threshold with v = r mod M
        v = first - M
        while v >= 1 and v in small_ok:  # extend the progression downwards through valid small sizes
            first, v = v, v - M
        starts[r] = first
    covered = {v for v in small_ok if (v % M) in starts and v >= starts[v % M]}
    extra = sorted(small_ok - covered)
    return SizeSet(_merge_progressions(M, starts), extra)


def _merge_progressions(M: int, starts: dict[int, int]) -> list[Progression]:
    """Write residue classes mod M with their first members as few progressions as possible."""
    out: list[Progression] = []
    left = dict(starts)
    for m in sorted(d for d in range(1, M + 1) if M % d == 0):
        for c in range(m):
            members = [r for r in range(c, M, m)]
            if not all(r in left for r in members):
                continue
            s = min(left[r] for r in members)
            # the coarse progression s + m*j must hit each member class first at its own start
            if all(left[r] == s + ((r - s) % m if m == M else _first_at_least(s, r, M) - s) for r in members) \
                    and all(_first_at_least(s, r, M) == left[r] for r in members):
                out.append(Progression(s, m))
                for r in members:
                    del left[r]
    return sorted(out, key=lambda p: (p.start, p.step))


def _first_at_least(s: int, r: int, M: int) -> int:
    return s + ((r - s) % M)


def analyze_dim(g: Graph, inp: int, dim: int, symbol: str, modulus: int = 1, residue: int = 0) -> DimAnalysis:
    """Exact valid sets of one input dimension, the others held at their sizes in `g`.

    `modulus`/`residue` restrict the sizes to residue (mod modulus), e.g. 0 mod 32, which is how
    a constraint such as `H % 32 == 0` makes formulas like H/32 exact.
    """
    return analyze_group(g, symbol, [Binding(inp, dim)], modulus, (residue,))


def analyze_group(g: Graph, symbol: str, bindings: list[Binding], modulus: int = 1, residues=(0,),
                  lo: int = 1, hi: int | None = None) -> DimAnalysis:
    """Exact valid sets of one size X that every binding's input dimension follows (c*X + e: the
    first binding is X itself, the others are tied to it, e.g. W = X or H2 = 2X - 1); the input
    dimensions not bound are held at their sizes in `g`.

    X is restricted to the `residues` mod `modulus` (a constraint such as `H % 32 == 0`) and to
    lo <= X <= hi (a bound such as `H >= 64`).  Reads `g`; writes nothing.
    """
    first = bindings[0]
    name = next(k for k, v in g.inputs.items() if v == first.node)
    watch = {b.dim - 1 for b in bindings}
    budget, used = [MAX_RUNS], [0]
    # ---- generic runs over residue classes; refine the period until every division is exact
    M = max(1, modulus)
    ok: dict[int, bool] = {}
    unround: dict[int, bool] = {}
    formulas: dict[int, list] = {}
    threshold, why, exact = 1, "", True
    allowed = np.array(sorted({r % M for r in residues}), dtype=np.int64)
    try:
        outcomes, threshold = _drive(g, bindings, True, M, allowed, rounding(watch), budget)
        M = outcomes[0].M if outcomes else M
        used[0] = MAX_RUNS - budget[0]
        for out in outcomes:
            for i, rv in enumerate(out.cases.tolist()):
                ok[rv] = out.error is None
                unround[rv] = out.error is None and not bool(out.rounds[i])
            if out.error is None:
                for nid, shape in enumerate(out.shapes):
                    formulas.setdefault(nid, []).append((out.cases, shape))
    except NotSymbolic as e:
        exact, why = False, str(e)
    # ---- concrete runs below the threshold (or everywhere up to a bound when not exact)
    top = threshold if exact else MAX_CONCRETE + 1
    if top - 1 > MAX_CONCRETE:
        exact, why, top = False, f"sizes below {threshold} follow no rule; decided up to {MAX_CONCRETE}", MAX_CONCRETE + 1
    sizes = np.arange(1, top, dtype=np.int64)
    if modulus > 1:
        sizes = sizes[np.isin(sizes % modulus, allowed)]
    small_ok, small_unround, first_error = set(), set(), {}
    if len(sizes):
        budget = [MAX_RUNS * 4]
        outcomes, _ = _drive(g, bindings, False, 1, sizes, rounding(watch), budget)
        for out in outcomes:
            if out.error is None:
                small_ok.update(out.cases.tolist())
                small_unround.update(out.cases[~out.rounds].tolist())
            else:
                for x in out.cases.tolist()[:64]:
                    first_error[x] = out.error
    runs = used[0] + (MAX_RUNS * 4 - budget[0] if len(sizes) else 0)
    if not exact:
        ok, unround, threshold, M = {}, {}, top, 1
    valid = _periodic_set(M, ok, threshold, small_ok).within(lo, hi)
    unrounded = _periodic_set(M, unround, threshold, small_unround).within(lo, hi)
    return DimAnalysis(name, first.dim, symbol, exact, why, M, threshold, runs, valid, unrounded, first_error,
                       formulas if exact else {})


# ----------------------------------------------------------------- formulas for display


def _formula(M: int, per_group: list, symbol: str) -> tuple:
    """Combine the generic shapes of all valid residue groups into one printable shape."""
    rs = np.concatenate([r for r, _ in per_group])
    first = per_group[0][1]
    out = []
    for j in range(len(first)):
        vals = [shape[j] for _, shape in per_group]
        if all(isinstance(v, int) for v in vals) and len(set(vals)) == 1:
            out.append(vals[0])
            continue
        a = {v.a if isinstance(v, Dim) else 0 for v in vals}
        if len(a) != 1:
            out.append("?")
            continue
        a = a.pop()
        b = np.concatenate([v.b if isinstance(v, Dim) else np.full(len(r), v) for (r, _), v in zip(per_group, vals)])
        out.append(_floor_form(M, a, b, rs, symbol))
    return tuple(out)


def _floor_form(M: int, a: int, b: np.ndarray, r: np.ndarray, X: str) -> str:
    """v = a*k + b_r with X = M*k + r, written as floor((alpha*X + beta) / gamma) when one beta fits."""
    if a == 0:
        return str(int(b[0])) if (b == b[0]).all() else "?"
    g = math.gcd(a, M)
    alpha, gamma = a // g, M // g
    c = (M * b - a * r) // g  # v = (alpha*X + c_r) / gamma exactly, for X = r mod M
    lo, hi = int(c.max()), int(c.min()) + gamma - 1
    if lo > hi:
        return _stepped_form(M, a, b, r, X)
    ax = _lin(alpha, 0, X)
    if gamma == 1:
        return _lin(alpha, lo, X)
    if (c == c[0]).all():  # one offset on every valid size: the division is exact (H/32, H/8 - 1 under H%32)
        c0 = int(c[0])
        if c0 % gamma:
            return f"({_lin(alpha, c0, X)})/{gamma}"
        return _lin_term(1, f"{ax}/{gamma}" if alpha == 1 else f"({ax})/{gamma}", c0 // gamma)
    if lo <= 0 <= hi:
        return f"⌊{ax}/{gamma}⌋"
    if lo <= gamma - 1 <= hi:
        return f"⌈{ax}/{gamma}⌉"
    beta = lo if lo > 0 else hi
    return f"⌊({_lin(alpha, beta, X)})/{gamma}⌋"


def _stepped_form(M: int, a: int, b: np.ndarray, r: np.ndarray, X: str) -> str:
    """v = a*k + b_r (X = M*k + r) written as q*floor((X + beta)/m) + c for a divisor m of M
    (e.g. U-Net's 16*floor((H - 12)/16) - 172, or 2*floor((H - 1)/2) after an upsampling)."""
    for m in (d for d in range(2, M + 1) if M % d == 0):
        if (a * m) % M:
            continue
        q = a * m // M
        for beta in range(-(m - 1), m):
            c = b - q * np.floor_divide(r + beta, m)
            if (c == c[0]).all():
                fl = f"⌊({_lin(1, beta, X)})/{m}⌋" if beta else f"⌊{X}/{m}⌋"
                return _lin_term(q, fl, int(c[0]))
    return f"(depends on {X} mod {M})"


def _lin_term(a: int, term: str, c: int) -> str:
    s = term if a == 1 else f"{a}·{term}"
    return f"{s} + {c}" if c > 0 else (f"{s} - {-c}" if c < 0 else s)


def _lin(alpha: int, beta: int, X: str) -> str:
    s = X if alpha == 1 else f"{alpha}{X}"
    if beta > 0:
        return f"{s} + {beta}"
    if beta < 0:
        return f"{s} - {-beta}"
    return s


# ----------------------------------------------------------------- which analysed sizes meet (joint analysis)


class _Tr:
    """A concrete size that remembers, as a bit mask, which analysed sizes it was computed from.

    The shape rules run once on these at the network's own sizes.  A comparison or remainder whose
    operands together depend on two or more sizes ties them (a merge of H with W after a transpose,
    a flatten of H*W compared with a fixed length); arithmetic only carries the masks along.
    """

    __slots__ = ("v", "m")

    def __init__(self, v, m: int):
        self.v, self.m = v, m

    def _meet(self, o) -> tuple:
        if isinstance(o, _Tr):
            return o.v, self.m | o.m
        return o, self.m

    def _bin(op, meet=False):  # noqa: N805 - a method factory
        def f(self, o):
            ov, m = self._meet(o)
            if meet and m & (m - 1):
                _STATE.seen.append(m)
            r = op(self.v, ov)
            return r if isinstance(r, bool) or r is NotImplemented else _Tr(r, m)

        def rf(self, o):
            ov, m = self._meet(o)
            if meet and m & (m - 1):
                _STATE.seen.append(m)
            return _Tr(op(ov, self.v), m)
        return f, rf

    import operator as _o
    __add__, __radd__ = _bin(_o.add)
    __sub__, __rsub__ = _bin(_o.sub)
    __mul__, __rmul__ = _bin(_o.mul)
    __floordiv__, __rfloordiv__ = _bin(_o.floordiv)
    __truediv__, __rtruediv__ = _bin(_o.truediv)
    __mod__, __rmod__ = _bin(_o.mod, True)
    __pow__, __rpow__ = _bin(_o.pow)
    __lt__ = _bin(_o.lt, True)[0]
    __le__ = _bin(_o.le, True)[0]
    __gt__ = _bin(_o.gt, True)[0]
    __ge__ = _bin(_o.ge, True)[0]
    __eq__ = _bin(_o.eq, True)[0]
    __ne__ = _bin(_o.ne, True)[0]
    del _o, _bin

    def __neg__(self):
        return _Tr(-self.v, self.m)

    def __pos__(self):
        return self

    def __abs__(self):
        return _Tr(abs(self.v), self.m)

    def __floor__(self):
        return _Tr(math.floor(self.v), self.m)

    def __ceil__(self):
        return _Tr(math.ceil(self.v), self.m)

    def __round__(self, n=None):
        return _Tr(round(self.v, n), self.m)

    def __int__(self):
        return int(self.v)

    def __index__(self):
        return int(self.v)

    def __float__(self):
        return float(self.v)

    def __bool__(self):
        return bool(self.v)

    def __hash__(self):
        return hash(self.v)

    def clip0(self):
        return _Tr(max(0, self.v), self.m)

    def __repr__(self):
        return repr(self.v)

    __str__ = __format__ = None  # set below: printed like the number


_Tr.__str__ = lambda self: str(self.v)
_Tr.__format__ = lambda self, spec: format(self.v, spec)


def ties(g: Graph, dims: list[list[Binding]]) -> tuple[list[tuple[int, int, int]], str]:
    """Which analysed sizes meet: ([(size i, size j, node id)], why-not) where size i's bindings are
    dims[i].  Runs every shape rule once at the graph's own sizes on `_Tr` values (bounded: one pass).
    `why-not` is non-empty when some rule could not run on them (then nothing is claimed)."""
    bound: dict[int, list] = {}
    for i, bs in enumerate(dims):
        for b in bs:
            bound.setdefault(b.node, []).append((b, i))
    sources = set(g.inputs.values())
    shapes: list = []
    found: list[tuple[int, int, int]] = []
    for n in g.nodes:
        if n.id in sources:
            y = list(n.shape)
            for b, i in bound.get(n.id, ()):
                y[b.dim] = _Tr(y[b.dim], 1 << i)
            shapes.append(tuple(y))
            continue
        _STATE.seen = []
        try:
            y = ops.OPS[n.op].infer(n.attrs, [shapes[i] for i in n.inputs])
            y = tuple(y.shape if isinstance(y, ops.Inferred) else y)
        except Exception as e:  # a rule that needs plain ints: say so rather than guess
            return [], f"{n.op} at {n.span.file}:{n.span.line} could not be traced ({type(e).__name__})"
        for m in _STATE.seen:
            bits = [i for i in range(len(dims)) if m >> i & 1]
            found += [(bits[0], j, n.id) for j in bits[1:]]
        shapes.append(y)
    _STATE.seen = []
    return found, ""


# ----------------------------------------------------------------- two sizes that meet in an equality


@dataclass
class PairAnalysis:
    """Every valid (A, B) of two sizes that meet at a merge, exactly: the lines q*B = p*A + E for E in a
    window (each with the exact valid set of A on it) and the finitely many valid pairs of two boxes
    (A below its threshold, or B below its threshold) where the formulas do not hold yet.

    On line E, A = q*(X - 1) + ra and B = p*(X - 1) + db for X >= 1 (`ra` in 1..q fixed by E): `lines[E]`
    is the set of A, already translated from X."""

    p: int
    q: int
    lines: dict[int, SizeSet]  # E -> the valid A on q*B = p*A + E (empty lines left out)
    unrounded: dict[int, SizeSet]
    box: set[tuple[int, int]]  # valid pairs found in the boxes
    box_unrounded: set[tuple[int, int]]
    bounds: tuple[int, int, int, int]  # box 1: A < T_A, B <= b1; box 2: B < T_B, A <= a1
    swapped: bool = False  # the lines are q*A = p*B + E (B the first size on them): pairs are (B, A) inside

    @property
    def c(self) -> int | None:
        """The whole slope B = c*A + E, when q = 1."""
        return self.p if self.q == 1 else None

    def _on(self, table: dict, a: int, b: int) -> bool:
        e = self.q * b - self.p * a
        return e in table and a in table[e]

    def __contains__(self, pair: tuple[int, int]) -> bool:
        a, b = pair[::-1] if self.swapped else pair
        return (a, b) in self.box or self._on(self.lines, a, b)

    def unrounded_has(self, pair: tuple[int, int]) -> bool:
        a, b = pair[::-1] if self.swapped else pair
        return (a, b) in self.box_unrounded or self._on(self.unrounded, a, b)

    def points(self, bound: int) -> set[tuple[int, int]]:
        """The valid pairs with both sizes <= bound, in the caller's order."""
        out = {pt for pt in self.box if max(pt) <= bound}
        for e, sset in self.lines.items():
            ra = _ra(e, self.p, self.q)
            for a in range(ra, bound + 1, self.q):
                b = (self.p * a + e) // self.q
                if 1 <= b <= bound and a in sset:
                    out.add((a, b))
        return {pt[::-1] for pt in out} if self.swapped else out


def _ra(e: int, p: int, q: int) -> int:
    """The residue of A (in 1..q) on line q*B = p*A + E: p*A = -E mod q."""
    if q == 1:
        return 1
    r = (-e * pow(p, -1, q)) % q
    return r or q


def _side(g: Graph, binds: list, m: int, budget: list[int]):
    """The generic run of one size up to node m (exclusive): (period, outcomes, threshold)."""
    outs, t = _drive(g, binds, True, 1, np.array([0]), None, budget, stop=m)
    return outs, t


def _lin_dim(outs: list, op: int, j: int):
    """(alpha, period, [(residue, beta)]) of operand `op`'s dim j on the valid outcomes; None if not affine."""
    pts, alpha, M = [], None, None
    for o in outs:
        if o.error is not None:
            continue
        v = o.shapes[op][j]
        if not isinstance(v, Dim) or v.a <= 0 or (alpha is not None and v.a != alpha):
            return None
        alpha, M = v.a, o.M
        pts += list(zip(o.cases.tolist(), v.b.tolist()))
    return (alpha, M, pts) if pts else None


def pair_analysis(g: Graph, ba: list, bb: list, m: int, box_points: int = 1 << 18, swapped: bool = False):
    """Exact joint valid set of sizes A (bindings ba) and B (bb) that first meet at node m, assuming the
    rule at m needs an equality f(A) = g(B) of one operand dim that depends on A only with one that
    depends on B only (the caller checks that assumption on a grid).  Returns a PairAnalysis, or a
    string saying why not.  Bounded: one generic run per size up to m, the window's lines in one run,
    and at most `box_points` concrete pairs.

    Why it is exact: for A >= T_A and B >= T_B (the thresholds of the two runs up to m) the operand dims
    are f = alpha*k + beta_r (A = M_A*k + r) and g = gamma*k' + delta_s, so f(A) = (alpha/M_A)*A + eps_A
    with eps_A in a finite range, and likewise g.  Equality then puts B - c*A, c = alpha*M_B/(gamma*M_A),
    in a finite window of offsets D; each line B = c*A + D is a tie, analysed exactly in one generic run
    over (residue, D) cases.  A < T_A gives finitely many values f(A), hence B <= b1; and symmetrically.
    """
    from fractions import Fraction as Fr

    budget = [MAX_RUNS]
    try:
        oa, ta = _side(g, ba, m, budget)
        ob, tb = _side(g, bb, m, budget)
    except NotSymbolic as e:
        return f"not affine before they meet ({e})"
    node = g.nodes[m]
    found = None
    for ia, xa in enumerate(node.inputs):
        for ib, xb in enumerate(node.inputs):
            if ia == ib:
                continue
            for j in range(1, len(g.nodes[xa].shape)):
                fa, fb = _lin_dim(oa, xa, j), _lin_dim(ob, xb, j)
                if fa and fb and _lin_dim(ob, xa, j) is None and _lin_dim(oa, xb, j) is None:
                    found = found or (xa, xb, j, fa, fb)
    if found is None:
        return "no operand dimension of one size meets one of the other"
    xa, xb, j, (alpha, Ma, pa), (gamma, Mb, pb) = found
    c = Fr(alpha * Mb, gamma * Ma)
    if c.denominator != 1 and c.numerator == 1 and not swapped:  # B = A / n: analyse A = n*B + D instead
        return pair_analysis(g, bb, ba, m, box_points, swapped=True)
    P, Q = c.numerator, c.denominator
    ea = [Fr(b) - Fr(alpha * r, Ma) for r, b in pa]
    eb = [Fr(b) - Fr(gamma * r, Mb) for r, b in pb]
    scale = Fr(Mb, gamma)
    # E = Q*B - P*A = Q*(B - c*A) lies between Q*scale*(eps_A - eps_B) at the extremes
    dlo, dhi = math.floor(Q * scale * (min(ea) - max(eb))), math.ceil(Q * scale * (max(ea) - min(eb)))
    if dhi - dlo > 256:
        return f"too many offsets ({dhi - dlo + 1})"
    # ---- the boxes where a formula does not hold yet: A < T_A (B bounded by the values f takes), and back
    fvals = _values_below(g, ba, m, xa, j, ta, budget)
    gvals = _values_below(g, bb, m, xb, j, tb, budget)
    b1 = max(tb, math.floor(scale * (max(fvals, default=0) - min(eb))) + 1)
    a1 = max(ta, math.floor(Fr(Ma, alpha) * (max(gvals, default=0) - min(ea))) + 1)
    if (ta - 1) * b1 + (tb - 1) * a1 > box_points:
        return f"the boxes below the thresholds are too large ({ta - 1} x {b1}, {a1} x {tb - 1})"
    box, box_un = _boxes(g, ba, bb, [(ta - 1, b1), (a1, tb - 1)])
    lines, unround = _window(g, ba, bb, P, Q, list(range(dlo, dhi + 1)))
    return PairAnalysis(P, Q, lines, unround, box, box_un, (ta, b1, tb, a1), swapped)


def _values_below(g: Graph, binds: list, m: int, op: int, j: int, top: int, budget) -> set[int]:
    """The values of operand `op`'s dim j at node m for the sizes 1..top-1 (valid up to m)."""
    if top <= 1:
        return set()
    outs, _ = _drive(g, binds, False, 1, np.arange(1, top, dtype=np.int64), None, budget, stop=m)
    vals: set[int] = set()
    for o in outs:
        if o.error is None:
            v = o.shapes[op][j]
            vals |= set(v.b.tolist()) if isinstance(v, Dim) else {int(v)}
    return vals


def _boxes(g: Graph, ba: list, bb: list, boxes: list) -> tuple[set, set]:
    """Valid (and unrounded) pairs in the boxes [1, na] x [1, nb], by one concrete run over all of them."""
    pts = {(a, b) for na, nb in boxes for a in range(1, na + 1) for b in range(1, nb + 1)}
    if not pts:
        return set(), set()
    grid = np.array(sorted(pts), dtype=np.int64).T
    tables = [Table(x.node, x.dim, x.c * grid[0] + x.e) for x in ba] + \
        [Table(x.node, x.dim, x.c * grid[1] + x.e) for x in bb]
    watch = {x.dim - 1 for x in ba + bb}
    outs, _ = _drive(g, tables, False, 1, np.arange(grid.shape[1]), rounding(watch), [MAX_RUNS * 4])
    ok, un = set(), set()
    for o in outs:
        if o.error is None:
            for cid, r in zip(o.cases.tolist(), o.rounds.tolist()):
                p = (int(grid[0, cid]), int(grid[1, cid]))
                ok.add(p)
                if not r:
                    un.add(p)
    return ok, un


def _window(g: Graph, ba: list, bb: list, P: int, Q: int, offsets: list[int]) -> tuple[dict, dict]:
    """The exact valid (and unrounded) set of A on each line Q*B = P*A + E, E in `offsets`, in one
    generic run over (residue, E) cases plus one concrete run below its threshold.  On line E the run's
    size X >= 1 gives A = Q*(X - 1) + ra, B = P*(X - 1) + db."""
    n = len(offsets)
    ra = np.array([_ra(e, P, Q) for e in offsets], dtype=np.int64)
    db = (np.array(offsets, dtype=np.int64) + P * ra) // Q
    binds = [Offsets(x.node, x.dim, x.c * Q, x.c * (ra - Q) + x.e) for x in ba] + \
            [Offsets(x.node, x.dim, x.c * P, x.c * (db - P) + x.e) for x in bb]
    watch = {x.dim - 1 for x in ba + bb}
    outs, top = _drive(g, binds, True, 1, np.zeros(n, dtype=np.int64), rounding(watch), [MAX_RUNS])
    M = outs[0].M if outs else 1
    ok = [{} for _ in offsets]
    un = [{} for _ in offsets]
    for o in outs:
        for r, t, rd in zip(o.cases.tolist(), o.tags.tolist(), o.rounds.tolist()):
            ok[t][r] = o.error is None
            un[t][r] = o.error is None and not rd
    small_ok = [set() for _ in offsets]
    small_un = [set() for _ in offsets]
    if top > 1:
        xs = np.repeat(np.arange(1, top, dtype=np.int64), n)
        ti = np.tile(np.arange(n), top - 1)
        tables = [Table(x.node, x.dim, x.c * (Q * (xs - 1) + ra[ti]) + x.e) for x in ba] + \
                 [Table(x.node, x.dim, x.c * (P * (xs - 1) + db[ti]) + x.e) for x in bb]
        outs2, _ = _drive(g, tables, False, 1, np.arange(len(xs)), rounding(watch), [MAX_RUNS * 4])
        for o in outs2:
            if o.error is None:
                for cid, rd in zip(o.cases.tolist(), o.rounds.tolist()):
                    small_ok[ti[cid]].add(int(xs[cid]))
                    if not rd:
                        small_un[ti[cid]].add(int(xs[cid]))
    lines, unround = {}, {}
    for i, e in enumerate(offsets):
        for out, table, small in ((lines, ok, small_ok), (unround, un, small_un)):
            sset = _periodic_set(M, table[i], top, small[i])
            if sset.progressions or sset.extra:
                out[e] = sset.affine(Q, int(ra[i]) - Q)  # X -> A = Q*X + (ra - Q)
    return lines, unround

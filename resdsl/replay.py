"""Replaying a body's IR: what running a loop body or a block call made once, emitted again.

A loop body or a block's body, run again with the same inputs, makes the same nodes, scopes, regions
and structure marks, shifted to where the graph has got to.  The elaborator (resdsl/elaborate.py)
keys a `Fragment` by everything such a body can observe and asks for one instead of running the
body again; this module only records and re-emits.  It reads and writes an `ir.Graph`, nothing else.

A fragment is relocatable: node, scope and region ids made by the body are stored relative to the
body's start, and the ids it received from outside are stored as -1 and replaced by the replay's
own: the tensor flowing in (`x`), the scope and the region the body runs in.  A body that refers to
anything else made before it (another tensor, an outer scope) is not recorded (`capture` gives None).
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass

from . import syntax as ast
from .evaluate import FrozenDict, Tensor
from .ir import Graph, Region, Scope, new_node
from .span import Span

OUTER = -1  # an id from outside the fragment: the tensor flowing in, the scope or region it runs in


class Unkeyable(Exception):
    """A value a body can read that is not plain data (a tensor, a poisoned name): no replay."""


KEY_ITEMS = 256  # list and dict items one value's key may hold: a body that reads a bigger table is run, not
# keyed (its key would cost more than running it, at every run: the body may only index the table)


def key_of(v: object) -> object:
    """A hashable stand-in for a value that is equal only for values that behave the same: types are
    part of it (1, 1.0 and true are equal in Python, not here), floats by their exact bits (-0.0).
    Raises Unkeyable for tensors and other objects, and for lists and dicts of more than KEY_ITEMS items."""
    t = type(v)
    if t is int or t is str or t is bool or v is None:
        return t, v
    return _key(v, [KEY_ITEMS])


def _key(v: object, budget: list[int]) -> object:
    t = type(v)
    if t is int or t is str or t is bool or v is None:
        return t, v
    if t is float:
        return t, v.hex()
    if t is tuple or t is FrozenDict:
        budget[0] -= len(v)
        if budget[0] < 0:
            raise Unkeyable()
        if t is tuple:
            return t, tuple([_key(i, budget) for i in v])
        return t, tuple([(_key(k, budget), _key(i, budget)) for k, i in v.items()])
    raise Unkeyable()


def reads_and_writes(body: tuple[ast.Stmt, ...]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The variables a loop body can read from its context (the names in its expressions, labels and
    `from`s, block calls' arguments included, their bodies not: those see only their parameters), and
    those it can set (assignments, loop variables, `-> NAME`).  None when it computes the names it reads
    or sets (`from skip{i}`, `concat(y{1..4})`, `-> x{i}`) or declares inputs and outputs: then they are
    not known beforehand, and it is never replayed."""
    names: set[str] = set()
    sets: set[str] = set()
    stack: list[object] = list(body)
    while stack:
        x = stack.pop()
        if isinstance(x, tuple):  # bodies are tuple subclasses (the parser's _Seq)
            stack.extend(x)
        elif isinstance(x, ast.Name):
            names.add(x.id)
        elif isinstance(x, (ast.Interp, ast.Input, ast.Output)):
            return None
        elif is_dataclass(x) and not isinstance(x, Span):
            if isinstance(x, (ast.From, ast.Bind)):
                if x.template is not None:
                    return None
                (names if isinstance(x, ast.From) else sets).add(x.name)
            elif isinstance(x, ast.Assign):
                sets.add(x.name)
            elif isinstance(x, ast.For):
                sets.update(x.names)
            elif isinstance(x, ast.Layer):
                for target in x.binds:
                    if not all(isinstance(p, str) for p in target.parts):
                        return None
                    sets.add("".join(target.parts))
                stack.extend((x.label, x.args, x.clauses))  # binds are names, not expressions
                continue
            stack.extend(getattr(x, f.name) for f in fields(x))
    return tuple(sorted(names)), tuple(sorted(sets))


_NAMES: dict[int, tuple] = {}  # id(body) -> (body, names_of(body)): the body is held, so its id is its own
_NAMES_KEPT = 4096  # bodies of files loaded since; more and the table starts again (bounded memory)


def names_of(body: tuple[ast.Stmt, ...]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The names that key a body sharing its context's variables -- those it reads or sets: a name it
    sets it may read back, and one it sets only where a test says so keeps its old value otherwise --
    and those it sets (`reads_and_writes`, worked out once per body); None if it is never replayed."""
    entry = _NAMES.get(id(body))
    if entry is None or entry[0] is not body:
        if len(_NAMES) >= _NAMES_KEPT:
            _NAMES.clear()
        found = reads_and_writes(body)
        names = None if found is None else (tuple(sorted(set(found[0]) | set(found[1]))), found[1])
        entry = _NAMES[id(body)] = (body, names)
    return entry[1]


class Fragment:
    """What one run of a body made: the graph's slices it appended (the node objects themselves, so a
    later in-place change of the graph -- `zero_init_last` replacing a node -- does not reach them),
    where it began (`Start`), the steps it counted, the statement it ended on, the tensor it left
    current and (for a loop body) the variables it set.  Made for every body run without errors: that
    costs a few list slices.  `compiled()` turns it into relocatable tuples the first time it is
    replayed (None if it cannot be: it refers to something from outside)."""

    __slots__ = ("anchors", "at", "raw", "steps", "last_span", "current", "env", "_compiled")

    def __init__(self, anchors: tuple, at: "Start", g: Graph, steps: int, last_span: Span,
                 current: Tensor | None, env: tuple | None):
        self.anchors = anchors  # the objects whose ids key it: held, so no other object can take an id
        self.at = at
        self.raw = (g.nodes[at.nodes:], g.scopes[at.scopes:], g.regions[at.regions:], g.structure[at.structure:])
        self.steps = steps - at.steps
        self.last_span = last_span
        self.current = current
        self.env = env
        self._compiled: tuple | None | bool = False

    def compiled(self) -> tuple | None:
        """(nodes, scopes, regions, structure, current, env) with ids relative to the body's start (see
        the module's docstring), or None when the body referred to anything made before it but what it
        received."""
        if self._compiled is False:
            try:
                self._compiled = _relocatable(self)
            except _Outside:
                self._compiled = None
            self.raw = None
        return self._compiled


class Start:
    """Where a body began: the graph's lengths, the step count, the tensor flowing in, the scope and
    region it runs in."""

    __slots__ = ("nodes", "scopes", "regions", "structure", "steps", "x", "scope", "region")

    def __init__(self, g: Graph, steps: int, x: Tensor | None, scope: int, region: int | None):
        self.nodes, self.scopes, self.regions, self.structure = len(g.nodes), len(g.scopes), len(g.regions), len(g.structure)
        self.steps, self.x, self.scope, self.region = steps, x, scope, region


class _Outside(Exception):
    """The body referred to something made before it other than what it received."""


def _relocatable(f: Fragment) -> tuple:
    """The fragment's contents with every id relative (raises _Outside where one cannot be)."""
    at = f.at
    n0, s0, r0 = at.nodes, at.scopes, at.regions
    xn = at.x.node if at.x is not None else None
    raw_nodes, raw_scopes, raw_regions, raw_structure = f.raw

    def node(i: int) -> int:
        if i >= n0:
            return i - n0
        if i == xn:
            return OUTER
        raise _Outside()

    def scope(i: int) -> int:
        if i >= s0:
            return i - s0
        if i == at.scope:
            return OUTER
        raise _Outside()

    def region(i: int | None) -> int:
        if i == at.region:
            return OUTER
        if i is not None and i >= r0:
            return i - r0
        raise _Outside()

    def tensor(t: object) -> object:
        if isinstance(t, Tensor):
            if t.shape is None:
                raise _Outside()
            return Tensor(node(t.node), t.shape)
        if _holds_tensor(t):  # a list of tensors (`l = [t]`): emit relocates only a bare tensor
            raise _Outside()
        return t

    if any(r is None for r in raw_regions):
        raise _Outside()
    nodes = tuple((n.op, tuple([node(i) for i in n.inputs]), n.attrs, n.shape, n.params, n.buffers, scope(n.scope),
                   n.label, n.span, n.calls, region(n.region)) for n in raw_nodes)
    scopes = tuple((scope(s.parent), s.label, s.hint, s.span, s.kind) for s in raw_scopes)
    regions = tuple((r.kind, region(r.parent), node(r.input), node(r.merge),
                     tuple(tuple([node(i) for i in b]) for b in r.branches), r.branch_slots,
                     tuple([node(i) for i in r.shortcut]), r.attrs, scope(r.scope), r.span, r.calls)
                    for r in raw_regions)
    structure = tuple((count - n0, action, kind, _ref(kind, ref, s0, r0), _BASE[kind])
                      for count, action, kind, ref in raw_structure)
    env = None if f.env is None else tuple((k, tensor(v)) for k, v in f.env)
    return nodes, scopes, regions, structure, tensor(f.current), env


def _holds_tensor(v: object) -> bool:
    """Whether a list or dict value holds a tensor, at any depth."""
    if type(v) is tuple:
        return any(isinstance(i, Tensor) or _holds_tensor(i) for i in v)
    if type(v) is FrozenDict:
        return any(isinstance(i, Tensor) or _holds_tensor(i) for i in v.values())
    return False


_BASE = {"part": 0, "scope": 1, "region": 2}  # which id a structure mark refers to: emit shifts it by that base


def _ref(kind: str, ref: int, s0: int, r0: int) -> int:
    """A structure mark's reference, relative: only scopes and regions the body made open or close in it."""
    if kind == "part":
        return ref
    base = s0 if kind == "scope" else r0
    if ref < base:
        raise _Outside()
    return ref - base


def emit(g: Graph, f: tuple, x: Tensor | None, scope: int, region: int | None) -> tuple[object, tuple]:
    """Append the fragment's nodes, scopes, regions and marks to `g`, received ids replaced by `x`'s
    node, `scope` and `region`; returns the tensor it leaves current and the variables it sets, both
    with their ids shifted.  Every value is made anew or shared read-only (attrs, spans, call chains):
    names are set in place later by `assign_names`."""
    f_nodes, f_scopes, f_regions, f_structure, f_current, f_env = f
    n0, s0, r0 = len(g.nodes), len(g.scopes), len(g.regions)
    xn = x.node if x is not None else None
    nodes = g.nodes
    append = nodes.append
    for nid, (op, ins, attrs, shape, params, buffers, sc, label, span, calls, rg) in enumerate(f_nodes, n0):
        append(new_node(nid, op, tuple([xn if i < 0 else i + n0 for i in ins]), attrs, shape, params, buffers,
                        scope if sc < 0 else sc + s0, label, span, calls, region if rg < 0 else rg + r0))
    for i, (parent, label, hint, span, kind) in enumerate(f_scopes):
        g.scopes.append(Scope(s0 + i, scope if parent < 0 else parent + s0, label, hint, span, kind))
    for i, (kind, parent, inp, merge, branches, slots, shortcut, attrs, sc, span, calls) in enumerate(f_regions):
        g.regions.append(Region(r0 + i, kind, region if parent < 0 else parent + r0, xn if inp < 0 else inp + n0,
                                merge + n0, tuple(tuple([i + n0 for i in b]) for b in branches), slots,
                                tuple([i + n0 for i in shortcut]), attrs, scope if sc < 0 else sc + s0, span, calls))
    bases = (0, s0, r0)
    g.structure.extend([(count + n0, action, kind, ref + bases[base]) for count, action, kind, ref, base in f_structure])
    current = f_current
    if type(current) is Tensor:
        current = x if current.node < 0 else Tensor(current.node + n0, current.shape)
    if not f_env:
        return current, ()
    return current, tuple((k, (x if v.node < 0 else Tensor(v.node + n0, v.shape)) if type(v) is Tensor else v)
                          for k, v in f_env)

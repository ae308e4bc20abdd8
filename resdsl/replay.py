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
from .ir import Graph, new_node, new_region, new_scope
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


class Absent:
    """Stands for a name a body can read or set that is not defined where it runs (`values_key`)."""


ABSENT = Absent()
_PLAIN = frozenset((int, str, bool, type(None), Absent))


def values_key(values: list) -> tuple:
    """A key for a list of values (ABSENT where a name is not defined): equal for two lists only where each
    value has the same type and is equal (as `key_of`); the common case -- ints, strings, bools, none --
    without a call per value.  Raises Unkeyable as key_of."""
    types = tuple(map(type, values))
    if _PLAIN.issuperset(types):
        return ("plain", types, tuple(values))
    return ("mixed", tuple([OUTER if v is ABSENT else key_of(v) for v in values]))


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
    found = _reads_and_writes(body)
    return None if found is None else (tuple(sorted(found[0])), tuple(sorted(found[1])))


_RW: dict[int, tuple] = {}  # id(body) -> (body, _reads_and_writes(body)): nested bodies are walked once


def _reads_and_writes(body: tuple) -> tuple[frozenset, frozenset] | None:
    """`reads_and_writes` as two sets, remembered per body: a body's nested bodies (loops', ifs', clauses')
    are taken from here, so a file parsed anew is walked once, not once per level it nests."""
    entry = _RW.get(id(body))
    if entry is not None and entry[0] is body:
        return entry[1]
    if len(_RW) >= _NAMES_KEPT:
        _RW.clear()
    names: set[str] = set()
    sets: set[str] = set()
    found = None
    stack: list[object] = list(body)
    while stack:
        x = stack.pop()
        if isinstance(x, tuple):  # bodies are tuple subclasses (the parser's _Seq)
            stack.extend(x)
        elif isinstance(x, ast.Name):
            names.add(x.id)
        elif isinstance(x, (ast.Interp, ast.Input, ast.Output)):
            break
        elif _fields_of(type(x)):
            inner: tuple = ()
            if isinstance(x, (ast.From, ast.Bind)):
                if x.template is not None:
                    break
                (names if isinstance(x, ast.From) else sets).add(x.name)
            elif isinstance(x, ast.Assign):
                sets.add(x.name)
            elif isinstance(x, ast.For):
                sets.update(x.names)
                stack.append(x.iterable)
                inner = (x.body,)
            elif isinstance(x, ast.If):
                stack.append(x.test)
                inner = (x.then, x.other)
            elif isinstance(x, ast.Clause):
                inner = (x.body,)
            elif isinstance(x, ast.Layer):
                if not all(all(isinstance(p, str) for p in target.parts) for target in x.binds):
                    break
                sets.update("".join(target.parts) for target in x.binds)
                stack.extend((x.label, x.args, x.clauses))  # binds are names, not expressions
                continue
            if inner:
                sub = [_reads_and_writes(b) for b in inner]
                if None in sub:
                    break
                for n, w in sub:
                    names |= n
                    sets |= w
                continue
            stack.extend([getattr(x, f) for f in _FIELDS[type(x)]])
    else:
        found = (frozenset(names), frozenset(sets))
    _RW[id(body)] = (body, found)
    return found


SHAPE_NAMES = ("in_channels", "in_shape")


def reads_no_shape(body: tuple[ast.Stmt, ...], blocks: dict) -> bool:
    """Whether nothing a body runs -- its statements and the blocks it calls, their parameters'
    defaults included -- reads a tensor's shape: no `in_channels` or `in_shape`, no `.shape` or
    `.channels` (the only attributes there are), no `shape(...)`.  (A tensor's other uses show no
    shape: compared, tensors are equal when their nodes are.)  Worked out once per body for the blocks
    it met, rechecked by identity."""
    entry = _SHAPE_FREE.get(id(body))
    if entry is not None and entry[0] is body and all(blocks.get(n) is bd for n, bd in entry[2]):
        return entry[1]
    if len(_SHAPE_FREE) >= _NAMES_KEPT:
        _SHAPE_FREE.clear()
    met: dict[str, object] = {}
    free = _reads_no_shape(body, blocks, met)
    _SHAPE_FREE[id(body)] = (body, free, tuple(met.items()))
    return free


_SHAPE_FREE: dict[int, tuple] = {}  # id(body) -> (body, reads_no_shape, ((name, BlockDef or None) it met))


def _reads_no_shape(body: tuple, blocks: dict, met: dict) -> bool:
    stack: list[object] = [body]
    while stack:
        x = stack.pop()
        if isinstance(x, tuple):  # bodies are tuple subclasses (the parser's _Seq)
            stack.extend(x)
        elif isinstance(x, ast.Name):
            if x.id in SHAPE_NAMES:
                return False
        elif isinstance(x, ast.Attr) or (isinstance(x, ast.Call) and x.func == "shape"):
            return False
        elif _fields_of(type(x)):
            if isinstance(x, ast.Layer) and x.op not in met:  # a block call (maybe): its body runs too
                bd = met[x.op] = blocks.get(x.op)
                if bd is not None:
                    stack.extend((bd.params, bd.body))
            stack.extend([getattr(x, f) for f in _FIELDS[type(x)]])
    return True


_FIELDS: dict[type, tuple[str, ...]] = {}  # AST class -> its field names (empty for anything that is not one)


def _fields_of(t: type) -> tuple[str, ...]:
    """The field names of an AST node class (not of a Span: spans hold no names), () for other types;
    looked up once per class -- `dataclasses.fields` at every node made the walks slow."""
    names = _FIELDS.get(t)
    if names is None:
        names = _FIELDS[t] = tuple(f.name for f in fields(t)) if is_dataclass(t) and t is not Span else ()
    return names


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
    """What one run of a body made: the graph's slices it appended (the node objects themselves, taken
    by `take` before a later in-place change of the graph -- `zero_init_last` replacing a node -- can
    reach them), where it began (`Start`) and ended, the steps it counted, the statement it ended on,
    the tensor it left current and (for a loop body) the variables it set.  Made for every keyed body
    run without errors: that costs a few lengths.  `compiled()` turns it into relocatable tuples the
    first time it is replayed (None if it cannot be: it refers to something from outside)."""

    __slots__ = ("anchors", "at", "raw", "steps", "last_span", "current", "env", "rules", "end", "_source",
                 "_compiled")

    def __init__(self, anchors: tuple, at: "Start", g: Graph, steps: int, last_span: Span,
                 current: Tensor | None, env: tuple | None, rules: list):
        self.anchors = anchors  # the objects whose ids key it: held, so no other object can take an id
        self.at = at
        self.end = len(g.nodes)
        self._source = (g, rules, len(g.scopes), len(g.regions), len(g.structure))  # sliced by `take`
        self.raw = None
        self.rules: list | None = None  # per node: (op, the attrs its shape rule read), as the elaborator keeps them
        self.steps = steps - at.steps
        self.last_span = last_span
        self.current = current
        self.env = env
        self._compiled: tuple | None | bool = False

    def take(self) -> None:
        """Slice what the body made out of the graph (and the elaborator's `rules` list), once.  Most
        fragments are never replayed, so this waits for the first replay; the graph only grows meanwhile,
        but for a node replaced in place (zero_init_last), before which the elaborator calls this for every
        fragment that holds it."""
        if self._source is not None:
            g, rules, scopes, regions, structure = self._source
            at = self.at
            self.raw = (g.nodes[at.nodes:self.end], g.scopes[at.scopes:scopes], g.regions[at.regions:regions],
                        g.structure[at.structure:structure])
            self.rules = rules[at.nodes:self.end]
            self._source = None

    def compiled(self) -> tuple | None:
        """(nodes, scopes, regions, structure, current, env) with ids relative to the body's start (see
        the module's docstring), or None when the body referred to anything made before it but what it
        received."""
        if self._compiled is False:
            self.take()
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


def emit(g: Graph, f: tuple, x: Tensor | None, scope: int, region: int | None,
         shapes: list | None = None) -> tuple[object, tuple]:
    """Append the fragment's nodes, scopes, regions and marks to `g`, received ids replaced by `x`'s
    node, `scope` and `region`; returns the tensor it leaves current and the variables it sets, both
    with their ids shifted (and, given `shapes` -- the nodes' shapes where they changed -- their shapes
    taken from it).  Every value is made anew or shared read-only (attrs, spans, call chains): names
    are set in place later by `assign_names`."""
    f_nodes, f_scopes, f_regions, f_structure, f_current, f_env = f
    n0, s0, r0 = len(g.nodes), len(g.scopes), len(g.regions)
    xn = x.node if x is not None else None
    nodes = g.nodes
    append = nodes.append
    for nid, (op, ins, attrs, shape, params, buffers, sc, label, span, calls, rg) in enumerate(f_nodes, n0):
        append(new_node(nid, op, tuple([xn if i < 0 else i + n0 for i in ins]), attrs, shape, params, buffers,
                        scope if sc < 0 else sc + s0, label, span, calls, region if rg < 0 else rg + r0))
    for i, (parent, label, hint, span, kind) in enumerate(f_scopes):
        g.scopes.append(new_scope(s0 + i, scope if parent < 0 else parent + s0, label, hint, span, kind))
    for i, (kind, parent, inp, merge, branches, slots, shortcut, attrs, sc, span, calls) in enumerate(f_regions):
        g.regions.append(new_region(r0 + i, kind, region if parent < 0 else parent + r0, xn if inp < 0 else inp + n0,
                                merge + n0, tuple([tuple([i + n0 for i in b]) for b in branches]), slots,
                                tuple([i + n0 for i in shortcut]), attrs, scope if sc < 0 else sc + s0, span, calls))
    bases = (0, s0, r0)
    g.structure.extend([(count + n0, action, kind, ref + bases[base]) for count, action, kind, ref, base in f_structure])
    current = f_current
    if type(current) is Tensor:
        current = _shifted(current, x, n0, shapes)
    if not f_env:
        return current, ()
    return current, tuple((k, _shifted(v, x, n0, shapes) if type(v) is Tensor else v) for k, v in f_env)


def _shifted(t: Tensor, x: Tensor | None, n0: int, shapes: list | None) -> Tensor:
    """A fragment's tensor where it is emitted: `x` for the one it received, else its node shifted by n0."""
    return x if t.node < 0 else Tensor(t.node + n0, t.shape if shapes is None else shapes[t.node])

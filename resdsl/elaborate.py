"""AST -> IR: run a network's body and build its graph, checking shapes as it goes.

Reads a `loader.Program` and network parameter overrides; writes an
`ir.Graph` with every node's shape and parameter counts, its span and the
chain of block calls it came from, plus the residual/dense/parallel regions
and the naming scopes.  Shapes are inferred while the body runs because the
body may depend on them (`in_channels`).

Errors do not stop elaboration: the failing statement's output is
"poisoned" (shape unknown), later statements that depend on it are skipped
quietly, and independent errors are all reported together.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, replace
from types import MappingProxyType

from . import lowerable, ops, replay, sizevars
from . import syntax as ast
from .diagnostics import Diagnostic, Note, ResdslError, did_you_mean, error
from .evaluate import (MAX_INT, Evaluator, FrozenDict, Tensor, _check_int, _Poisoned, check_assertion, compile_expr,
                       names_in, show, type_name)
from .ir import (CallSite, Contract, Graph, Node, Region, Scope, assign_names, cycle_collector_paused, freeze, new_node,
                 new_region, new_scope)
from .limits import DEFAULT, MODULE_DEPTH_CEILING, Limits, raise_hint
from .loader import Program
from .span import UNKNOWN, Span

STRUCTURAL = ("residual", "dense", "parallel", "group", "branch")
SHORTCUTS = ("identity", "project", "zeropad", "avgproject")
TOTALS = ("params", "buffers", "macs")  # network totals, in scope at an `assert` in a network body
POISON = Tensor(-1, None)
ANONYMOUS = "_"  # the label `_:` gives no name: `_: body(c)` opens no scope
UNDEFINED = object()  # a variable whose assignment failed: uses are skipped quietly
GIVE_UP = 8  # a body run this many times in a row without a replay is not keyed again (the keys cost time)
KEEP = object()  # Ctx.child: this field stays as it is (None is a value: no current tensor, no region)
_PLAIN_LABEL_RE = re.compile(r"[A-Za-z0-9_]+")  # used with fullmatch: `$` would let a trailing newline through
_LABEL_RE = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")  # fullmatch; dots nest module names: conv.0.0


@dataclass(slots=True)
class Ctx:
    """Where a statement runs: its variables, the current tensor, its scope."""

    env: dict[str, object]
    current: Tensor | None
    scope: int
    region: int | None
    calls: tuple[CallSite, ...]
    in_network: bool
    branches: list | None = None  # collects branch outputs inside parallel { }
    # inside a loop of this call's body (or the network's): its statements may run again under the same call
    # chain, so their bodies are worth keying for replay (`_shared_key`, `_block_key`); elsewhere each runs
    # once per call chain, and a key with the chain in it could never be met again
    repeats: bool = False

    def child(self, env: dict | object = KEEP, current: Tensor | None | object = KEEP, scope: int | object = KEEP,
              region: int | None | object = KEEP) -> "Ctx":
        """A context for a nested body: the same, except what is given (and no branches)."""
        return Ctx(self.env if env is KEEP else env, self.current if current is KEEP else current,
                   self.scope if scope is KEEP else scope, self.region if region is KEEP else region,
                   self.calls, self.in_network, None, self.repeats)


class _Abort(Exception):
    """Too many errors: stop and report what we have."""


def _check_module_depth(g: Graph) -> None:
    """Each component of a qualified name is a level of torch's module tree, which torch walks
    recursively (named_modules, state_dict, to, apply): refuse a tree it could not walk (E040)."""
    depths = [n.name.count(".") for n in g.nodes]
    if depths and max(depths) + 1 > MODULE_DEPTH_CEILING:
        deepest = g.nodes[depths.index(max(depths))]  # the first of the deepest
        levels = deepest.name.count(".") + 1
        shown = deepest.name if levels <= 6 else "....." + ".".join(deepest.name.split(".")[-5:])
        raise error("E040", f"layer `{shown}` is nested {levels} modules deep; PyTorch's module "
                    f"tree is limited here to {MODULE_DEPTH_CEILING}", deepest.span,
                    hint="flatten the nesting: call blocks one after another instead of each inside the previous "
                         "one, or leave the inner groups unlabelled (an unlabelled group adds no module level)")


class Elaborator:
    replay_bodies = True  # reuse what a repeated loop body or block call made (see _run_body); off: run every body

    def __init__(self, program: Program, limits: Limits = DEFAULT, input_shapes: dict | None = None,
                 size_scale: int = 1):
        self.input_shapes = {k: tuple(v) for k, v in (input_shapes or {}).items()}  # --input x=3,450,600
        self.size_scale = size_scale  # named sizes nobody gave are built at sizevars.EXAMPLE * size_scale
        self.program = program
        self.limits = limits
        self.diags: list[Diagnostic] = []
        self.steps = 0
        self.globals: dict[str, object] = {}
        self.graph: Graph | None = None
        self.last_span: Span = UNKNOWN  # the statement being run (for RecursionError reports)
        self._signatures: dict[int, tuple] = {}  # id(params) -> (params, signature): see _signature
        self._token_ids: set[int] = set()  # nodes whose attrs say dtype="int": token-id inputs (_check_ids)
        self._tied: list[int] = []  # nodes whose attrs have a `tie` (_resolve_ties)
        self._last_evaluator: tuple[Ctx | None, Evaluator | None] = (None, None)  # see _evaluator
        self._fragments: dict[tuple, list] = {}  # see _run_body
        self._misses: dict[int, int] = {}  # id(body or call site) -> runs since it was last replayed (GIVE_UP)
        self.replayed = 0  # nodes emitted from fragments rather than elaborated (counted by the tests)
        self.reshaped = 0  # of those, nodes whose shape rules ran again for a new input shape (see _reshape)
        self._rules: list[tuple | None] = []  # per node: (op, attrs its shape rule read), None if not made so
        self._shape_choices = 0  # constructs that chose attrs from shapes (shortcut, split): see _reshape
        self._unreplayable = 0  # contracts, inputs, outputs, ties and token ids made: a body that makes any is not kept
        self._pending: list[replay.Fragment] = []  # fragments in the order recorded (see _zero_last_norm)
        self._shape_free: dict[int, tuple] = {}  # id(body) -> (body, whether it never reads a shape)

    # ------------------------------------------------------------ errors

    def report(self, err: ResdslError) -> None:
        seen = {(d.code, d.span) for d in self.diags}
        # A mistake inside a loop or a block called many times is reported once, at its first occurrence.
        self.diags.extend(d for d in err.diagnostics if (d.code, d.span) not in seen)
        if len(self.diags) >= self.limits.max_errors:
            raise _Abort()

    # ------------------------------------------------------------ entry

    def network(self, name: str | None, overrides: dict[str, object]) -> Graph:
        prog = self.program
        genv = self.globals
        ev = self._evaluator(Ctx(genv, None, 0, None, (), False))
        for a in prog.constants:
            genv[a.name] = ev(a.value)
        net = self._pick(name)
        g = self.graph = Graph(net.name)
        g.scopes.append(Scope(0, None, None, net.name, net.span, "network", ""))
        env: dict[str, object] = {}
        for p in net.params:
            env[p.name] = ev(p.default) if p.default is not None else None
            if p.default is None and p.name not in overrides:
                raise error("E018", f"network parameter `{p.name}` has no default and was not set", p.span,
                            hint=f"pass --set {p.name}=VALUE or give it a default")
        known = {p.name: p for p in net.params}
        for key, value in overrides.items():
            if key not in known:
                raise error("E018", f"network `{net.name}` has no parameter `{key}`", net.span,
                            hint=did_you_mean(key, known) or f"its parameters are: {', '.join(known) or 'none'}")
            env[key] = _coerce_override(key, value, env[key], known[key].span)
        g.params = dict(env)
        ctx = Ctx(dict(env), None, 0, None, (), True)
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, 20 * self.limits.max_call_depth + 8 * self.limits.max_nesting + 2000))
        try:
            self.body(net.body, ctx)
        except _Abort:
            pass
        finally:
            sys.setrecursionlimit(old)
        if g.sizes is not None:  # does the structure read a named size? (the size analysis must know)
            g.sizes.uses = sizevars.body_uses(net.body, set(g.sizes.alias))
        if not self.diags:
            if not g.inputs:
                self.diags.append(Diagnostic("E037", f"network `{net.name}` has no input", net.span,
                                             hint="declare one, e.g. `input x: [3, 224, 224]`"))
            elif not g.outputs:
                if ctx.current is None or ctx.current.shape is None:
                    self.diags.append(Diagnostic("E037", f"network `{net.name}` has no output", net.span,
                                                 hint="end the body with `output y`"))
                else:
                    g.outputs["out"] = ctx.current.node
        if not self.diags:
            unknown = sorted(set(self.input_shapes) - set(g.inputs))
            if unknown:
                self.diags.append(Diagnostic("E018", f"network `{net.name}` has no input `{unknown[0]}`", net.span,
                                             hint=did_you_mean(unknown[0], g.inputs) or
                                             f"its inputs are: {', '.join(g.inputs)}"))
        if not self.diags:
            self._check_labels(g)
        if self.diags:
            raise ResdslError(self.diags)
        assign_names(g)
        self._check_names(g)
        if not self.diags:
            self._resolve_ties(g)
        if self.diags:
            raise ResdslError(self.diags)
        _check_module_depth(g)
        problems = lowerable.check(g, self.limits.max_errors)  # what the PyTorch backend could not name
        if problems:
            raise ResdslError(problems)
        return g

    def _resolve_ties(self, g: Graph) -> None:
        """`tie="LAYER"`: LAYER must be a layer with a `.weight` of the same shape (read from the ops' `weight`
        facet); reads names and attrs, reports E018/E036, writes nothing (the count already omits the weight)."""
        tied = [g.nodes[i] for i in self._tied]
        if not tied:
            return
        by_name = {n.name: n for n in g.nodes}
        for n in tied:
            tie = n.attrs["tie"]
            src = by_name.get(tie)
            if src is None or src.spec.weight is None:
                names = [m.name for m in g.nodes if m.spec.weight is not None and m.id != n.id]
                self.diags.append(Diagnostic("E018", f"tie: no layer with a weight is named `{tie}`", n.span, (),
                                             did_you_mean(tie, names) or f"layers with a weight: {', '.join(names)}"))
                continue
            want = n.spec.weight(n.attrs, [g.nodes[i].shape for i in n.inputs])
            have = src.spec.weight(src.attrs, [g.nodes[i].shape for i in src.inputs])
            if tuple(want) != tuple(have):
                self.diags.append(Diagnostic(
                    "E036", f"tie: `{n.name}` needs a weight {list(want)}, but `{tie}`'s is {list(have)}", n.span,
                    (Note(src.span, f"`{tie}` is made here"),), f"tie layers whose weights have the same shape: `{n.name}` must make a {list(have)} weight"))

    def _check_names(self, g: Graph) -> None:
        """Dotted labels can reach the same module name by two ways (`a.b:` beside `a: group { b: }`), or
        put one layer inside another (`conv:` beside `conv.0:`): both are E020."""
        if not self._names_may_clash(g):
            return
        start = len(self.diags)
        first: dict[str, Node] = {}
        for n in g.nodes:
            if n.name in first:
                self.diags.append(Diagnostic(
                    "E020", f"two layers are named `{n.name}`", n.span, (Note(first[n.name].span, "first named here"),),
                    "a dotted label and a labeled scope reach the same name; rename one"))
            else:
                first[n.name] = n
        clear: set[str] = set()  # prefixes known to name no layer: most nodes share their scopes' prefixes
        for n in g.nodes:
            name = n.name
            dot = name.find(".")
            while dot >= 0:
                prefix = name[:dot]
                if prefix not in clear:
                    outer = first.get(prefix)
                    if outer is not None:
                        own = prefix[prefix.rfind(".") + 1:]
                        self.diags.append(Diagnostic(
                            "E020", f"layer `{name}` would be inside layer `{outer.name}`", n.span,
                            (Note(outer.span, f"`{outer.name}` is a layer of its own, made here"),),
                            f"rename one of them, e.g. `{own}_0`"))
                        break
                    clear.add(prefix)
                dot = name.find(".", dot + 1)
            if len(self.diags) >= self.limits.max_errors:
                break
        self.diags[start:] = sorted(self.diags[start:], key=lambda d: (d.span.file, d.span.start))

    @staticmethod
    def _names_may_clash(g: Graph) -> bool:
        """False when no two nodes share a name and no node's name is another's dotted prefix, which is
        all `_check_names` reports.  A node's proper prefixes are the names of its scope and the scopes
        above it, or end inside a dotted label (its own or a scope's): where no node name is one of those,
        there is nothing to find."""
        names = {n.name for n in g.nodes}
        if len(names) != len(g.nodes):
            return True
        prefixes = {s.name for s in g.scopes}
        for item in (*g.scopes, *g.nodes):
            if item.label is not None and "." in item.label:
                name = item.name
                dot = name.find(".", len(name) - len(item.label))
                while dot >= 0:
                    prefixes.add(name[:dot])
                    dot = name.find(".", dot + 1)
        return not names.isdisjoint(prefixes)

    def _check_labels(self, g: Graph) -> None:
        """Two labels in one scope would give two layers the same name (E020)."""
        first: dict[tuple[int | None, str], Span] = {}
        items = [(s.parent, s.label, s.span) for s in g.scopes if s.label is not None] + \
                [(n.scope, n.label, n.span) for n in g.nodes if n.label is not None]
        if len({(parent, label) for parent, label, _ in items}) == len(items):
            return  # no label twice in a scope: nothing to report (the walk below is in source order)
        for parent, label, span in sorted(items, key=lambda t: (t[2].file, t[2].start)):
            key = (parent, label)
            if key in first:
                self.diags.append(Diagnostic(
                    "E020", f"two layers are labeled `{label}` in the same scope", span,
                    (Note(first[key], "first labeled here"),),
                    "labels name modules, so they must be unique within a block or group; inside a loop "
                    "interpolate the index, e.g. `fc{i}:`"))
                if len(self.diags) >= self.limits.max_errors:
                    return
            else:
                first[key] = span

    def _file_span(self) -> Span:
        """The main file's first character: where file-wide problems are reported."""
        return Span(self.program.main, 1, 1, 1, 2, 0, 1)

    def _pick(self, name: str | None) -> ast.NetworkDef:
        nets = self.program.networks
        if name is not None:
            if name not in nets:  # a command-line mistake: no place in the file to point at, so list the networks
                where = [Note(n.span, f"network `{k}` is defined here") for k, n in nets.items()]
                close = did_you_mean(name, nets)
                hint = (f"{close} (--network {close.split('`')[1]})" if close else
                        f"choose one with --network {next(iter(nets))}" if nets else "the file defines no network")
                raise error("E017", f"no network `{name}` in {self.program.main}", Span(self.program.main, 0, 0, 0, 0),
                            notes=where, hint=hint)
            return nets[name]
        if len(nets) == 1:
            return next(iter(nets.values()))
        if not nets:
            raise error("E017", f"{self.program.main} defines no network", self._file_span(),
                        hint="add `network NAME() { input x: [...] ... }`; a file of blocks is a library to import")
        first, *others = nets.values()
        raise error("E017", f"{self.program.main} defines {len(nets)} networks: {', '.join(nets)}", first.span,
                    notes=[Note(n.span, f"network `{n.name}` is defined here") for n in others],
                    hint=f"choose one with --network {first.name}")

    # ------------------------------------------------------------ expressions

    def _evaluator(self, ctx: Ctx) -> Evaluator:
        """The evaluator of expressions in `ctx`.  The last one made is reused while statements run in
        the same context (its lookup reads the context's variables when called, so it stays right as
        they change).  It is kept here, not on the context: the context holding its own evaluator would
        be a reference cycle, garbage only the cyclic collector frees (and it is off meanwhile)."""
        if self._last_evaluator[0] is not ctx:
            self._last_evaluator = (ctx, self._new_evaluator(ctx))
        return self._last_evaluator[1]

    def _new_evaluator(self, ctx: Ctx) -> Evaluator:
        genv = self.globals

        def lookup(name: str, span: Span) -> object:
            if name in ctx.env:
                v = ctx.env[name]
                if v is UNDEFINED:
                    raise _Poisoned()
                return v
            if name in ("in_channels", "in_shape"):
                cur = ctx.current
                if cur is None:
                    raise error("E010", f"`{name}` is undefined here: no tensor flows into this statement", span)
                if cur.shape is None:
                    raise _Poisoned()
                return cur.shape[0] if name == "in_channels" else tuple(cur.shape)
            if name in genv:
                return genv[name]
            candidates = list(ctx.env) + list(genv) + ["in_channels", "in_shape"]
            hint = did_you_mean(name, candidates)
            if name in self.program.blocks or ops.lookup(name):
                hint = f"`{name}` is a layer or block; call it as a statement, not inside an expression"
            raise error("E010", f"undefined name `{name}`", span, hint=hint)

        return Evaluator(lookup, lambda: list(ctx.env), self.charge, ctx.env, UNDEFINED)  # ctx.env: never replaced

    def eval(self, e: ast.Expr, ctx: Ctx) -> object:
        return self._evaluator(ctx)(e)

    # ------------------------------------------------------------ statements

    def body(self, stmts: tuple[ast.Stmt, ...], ctx: Ctx) -> None:
        limit = self.limits.max_steps
        for s in stmts:
            self.steps += 1  # charge(1, s.span) without the call: one per statement run
            if self.steps > limit:
                self.charge(0, s.span)  # reports and stops
            self.last_span = s.span
            try:
                if type(s) is ast.Layer:  # most statements: straight to it
                    self.layer(s, ctx)
                else:
                    self.stmt(s, ctx)
            except _Poisoned:
                ctx.current = POISON
                self._poison_bind(s, ctx)
            except ResdslError as e:
                self.report(e)
                ctx.current = POISON
                self._poison_bind(s, ctx)

    def _poison_bind(self, s: ast.Stmt, ctx: Ctx) -> None:
        """A failed `... -> name` or `name = ...` still defines `name` (poisoned), so later uses are
        skipped quietly instead of each reporting `undefined name` -- also when the statement failed
        only because it read a poisoned name (a chain of assignments after one bad dict lookup)."""
        try:
            if isinstance(s, ast.Assign):
                ctx.env[s.name] = UNDEFINED
            elif isinstance(s, ast.Layer):
                for target in s.binds:
                    for name in self._evaluator(ctx).expand_names(target.parts, target.span):
                        ctx.env[name] = POISON
            elif isinstance(s, ast.Bind):
                ctx.env[self.bound_name(s.name, s.template, ctx)] = POISON
        except (ResdslError, _Poisoned):  # the name itself failed: it was reported with the statement
            pass

    def charge(self, n: int, span: Span) -> None:
        """Count work (statements run, loop iterations, list items built) against max_steps."""
        self.steps += n
        if self.steps > self.limits.max_steps:  # fatal: stop at once rather than report it per statement
            self.diags.append(Diagnostic(
                "E040", f"elaboration ran more than {self.limits.max_steps} steps "
                "(statements, loop iterations and list items built)", span, (),
                "check loop bounds and list sizes; raise the limit with --limit max_steps=N"))
            raise _Abort()

    def stmt(self, s: ast.Stmt, ctx: Ctx) -> None:
        kind = type(s).__name__
        if kind == "Layer":
            self.layer(s, ctx)
        elif kind == "Assign":
            ctx.env[s.name] = self.eval(s.value, ctx)
        elif kind == "For":
            self.for_(s, ctx)
        elif kind == "If":
            test = self.eval(s.test, ctx)
            if isinstance(test, Tensor):
                raise error("E015", "a tensor has no truth value", s.test.span)
            self.body(s.then if test else s.other, ctx)
        elif kind == "Input":
            self.input(s, ctx)
        elif kind == "Output":
            self.output(s, ctx)
        elif kind == "From":
            ctx.current = self.tensor_named(self.bound_name(s.name, s.template, ctx), s.span, ctx)
        elif kind == "Bind":
            ctx.env[self.bound_name(s.name, s.template, ctx)] = self.need_current(ctx, s.span)
        elif kind == "Assert":
            self.assert_(s, ctx)
        else:  # pragma: no cover
            raise AssertionError(f"internal error: no rule for statement {kind}")

    def for_(self, s: ast.For, ctx: Ctx) -> None:
        items = self.eval(s.iterable, ctx)
        if isinstance(items, FrozenDict):
            items = tuple(items)
        if not isinstance(items, tuple):
            raise error("E015", f"cannot loop over a {type_name(items)}", s.iterable.span,
                        hint="loop over range(n) or a list")
        repeats, ctx.repeats = ctx.repeats, True
        try:
            for item in items:
                self.charge(1, s.span)  # an empty body must not make a loop free
                if len(s.names) == 1:
                    ctx.env[s.names[0]] = item
                else:
                    if not isinstance(item, tuple) or len(item) != len(s.names):
                        raise error("E015", f"cannot unpack {show(item)} into {len(s.names)} names", s.iterable.span)
                    for n, v in zip(s.names, item):
                        ctx.env[n] = v
                self._run_shared(s.body, ctx)
        finally:
            ctx.repeats = repeats

    def _run_shared(self, stmts: tuple[ast.Stmt, ...], ctx: Ctx) -> None:
        """Run a body that shares its context's variables (a loop's, a group's, a branch's): replayed
        where it ran before under the same key (`_shared_key`)."""
        key = self._shared_key(stmts, ctx) if stmts else None
        if key is None:
            self.body(stmts, ctx)
        else:
            self._run_body(key[0], (stmts, ctx.calls), stmts, ctx, key[1])

    def _shared_key(self, stmts: tuple[ast.Stmt, ...], ctx: Ctx) -> tuple | None:
        """What a body sharing its context's variables can observe of where it runs, as a key for
        `_run_body`, and the names it sets; None if it may not be replayed.  The key is the values of
        the names it reads or sets (`replay.names_of`), the tensor flowing in (its shape; its node is
        relocated, and so are the scope and region it runs in) and whether it holds token ids (what
        `_check_ids` says of the body's ops depends on that alone: a fragment refers to no other tensor
        from outside and makes no token ids), the call chain (held by the fragment: its identity is the
        key), whether it is in the network's own body, and how many variables exist (so that the names
        it sets are new or old, and in the same order)."""
        if not ctx.repeats or ctx.branches is not None or not self.replay_bodies or self.diags or \
                self._misses.get(id(stmts), 0) >= GIVE_UP:
            return None  # inside parallel { } a body appends branches; after an error: run as written
        names = replay.names_of(stmts)
        if names is None:
            return None
        env, cur = ctx.env, ctx.current
        try:
            values = replay.values_key([env.get(n, replay.ABSENT) for n in names[0]])
        except replay.Unkeyable:
            return None
        return (("shared", id(stmts), id(ctx.calls), ctx.in_network, len(env), cur is not None and cur.node in
                 self._token_ids, values), None if cur is None else cur.shape), names[1]  # (the shape apart: _run_body)

    def assert_(self, s: ast.Assert, ctx: Ctx) -> None:
        """Check an `assert` now, or -- when it names a network total -- once the network is built."""
        used = names_in(s.test) | names_in(s.message)
        totals = [n for n in TOTALS if n in used and n not in ctx.env and n not in self.globals]
        if not totals:
            check_assertion(self._evaluator(ctx), s.test, s.message)
            return
        if not ctx.in_network or ctx.calls:
            raise error("E010", f"`{totals[0]}` is a network total, known only at an `assert` in a network body",
                        s.test.span, hint="move the assert into the network, after the block's call")
        self.graph.contracts.append(Contract(s.test, s.message, FrozenDict({**self.globals, **ctx.env}), s.span))
        self._unreplayable += 1

    def input(self, s: ast.Input, ctx: Ctx) -> None:
        if not ctx.in_network or ctx.calls:
            raise error("E021", "`input` belongs in a network body, not in a block", s.span,
                        hint="a block's input is the tensor flowing into its call")
        dtype, shape_expr = _input_dtype(s.shape)
        sizes = self.graph.sizes or sizevars.Sizes()  # named sizes: input x: [3, H, W] where ... (sizevars.py)
        ctx.env.update(sizevars.declare(s, shape_expr, lambda n: n in ctx.env or n in self.globals or n in (
            "in_channels", "in_shape"), lambda e: self.eval(e, ctx), self.input_shapes.get(s.name), sizes,
            self.size_scale, lambda n: did_you_mean(n, [k for k, v in {**self.globals, **ctx.env}.items()
                                                        if isinstance(v, int) and k not in sizes.alias])))
        if sizes.roots:
            self.graph.sizes = sizes
        shape = self.eval(shape_expr, ctx)
        if dtype == "int" and isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)  # int[N]: N token ids
        if not isinstance(shape, tuple) or not shape or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise error("E014", f"an input shape is a list of ints without the batch dimension, got {show(shape)}",
                        s.shape.span, hint="e.g. input x: [3, 224, 224]")
        if s.name in self.input_shapes:  # the caller's shape replaces the file's, same rank
            given = self.input_shapes[s.name]
            if len(given) != len(shape) or not all(isinstance(d, int) and not isinstance(d, bool) for d in given):
                raise error("E014", f"input `{s.name}` is declared as {show(shape)}; the shape given for it, "
                            f"{show(given)}, is not a list of {len(shape)} ints", s.shape.span)
            shape = given
        if any(d < 1 for d in shape):
            raise error("E036", f"input sizes must be positive, got {show(shape)}", s.shape.span)
        self._check_elements(shape, s.shape.span)
        if s.name in self.graph.inputs:
            raise error("E011", f"input `{s.name}` is declared twice", s.span)
        attrs = {"shape": shape, "dtype": "int"} if dtype == "int" else {"shape": shape}
        t = self.add_node("input", attrs, [], shape, (0, 0), s.name, s.span, ctx)
        self.graph.inputs[s.name] = t.node
        self._unreplayable += 1
        ctx.env[s.name] = t
        if ctx.current is None:
            ctx.current = t

    def output(self, s: ast.Output, ctx: Ctx) -> None:
        if not ctx.in_network or ctx.calls:
            raise error("E021", "`output` belongs in a network body", s.span,
                        hint="a block's output is its last tensor")
        for lab in s.names:
            name = self.label(lab, ctx)
            if not name.isidentifier():
                raise error("E019", f"invalid output name `{name}`", lab.span,
                            hint="an output name starts with a letter or underscore, e.g. heatmap{s}")
            if name in ctx.env and isinstance(ctx.env[name], Tensor):
                t = ctx.env[name]
            elif len(s.names) == 1:
                t = self.need_current(ctx, s.span)
                ctx.env[name] = t
            else:
                raise error("E010", f"undefined tensor `{name}`", s.span,
                            hint=did_you_mean(name, [k for k, v in ctx.env.items() if isinstance(v, Tensor)])
                            or "bind it first with `-> NAME`")
            if t.shape is None:
                continue
            if name in self.graph.outputs:
                raise error("E011", f"output `{name}` is declared twice", s.span)
            self.graph.outputs[name] = t.node
            self._unreplayable += 1

    def need_current(self, ctx: Ctx, span: Span) -> Tensor:
        if ctx.current is None:
            raise error("E021", "no tensor flows into this statement", span,
                        hint="declare an `input` first, or switch to a named tensor with `from NAME`")
        if ctx.current.shape is None:
            raise _Poisoned()
        return ctx.current

    def tensor_named(self, name: str, span: Span, ctx: Ctx) -> Tensor:
        v = ctx.env.get(name, self.globals.get(name))
        if name not in ctx.env and name not in self.globals:
            raise error("E010", f"undefined tensor `{name}`", span,
                        hint=did_you_mean(name, [k for k, v in ctx.env.items() if isinstance(v, Tensor)])
                        or "bind a tensor to a name with `-> NAME` after a layer")
        if not isinstance(v, Tensor):
            raise error("E015", f"`{name}` is a {type_name(v)}, not a tensor", span)
        if v.shape is None:
            raise _Poisoned()
        return v

    # ------------------------------------------------------------ layers

    def label(self, lab: ast.Label | None, ctx: Ctx) -> str | None:
        if lab is None:
            return None
        text = self._evaluator(ctx).interpolate(lab.parts)
        if not _LABEL_RE.fullmatch(text):
            raise error("E019", f"invalid label `{repr(text)[1:-1]}`", lab.span,
                        hint="labels use letters, digits and underscores, with dots between names (conv.0)")
        return text

    def layer(self, s: ast.Layer, ctx: Ctx) -> None:
        plan = _PLANS.get(id(s))
        if plan is None or plan[0] is not s or plan[2]:
            plan = _plan_of(s)
        if plan[1] is not None and s.op not in self.program.blocks:  # an op call with a plan: see _OpPlan
            op = plan[1]
            label = op.label if op.label is not None else self.label(s.label, ctx) if s.label is not None else None
            self._planned_op(op, s, None if label == ANONYMOUS else label, ctx)
            if s.binds:
                self._bind_one(s, ctx)
            return
        label = self.label(s.label, ctx) if s.label is not None else None
        anonymous = label == ANONYMOUS
        if anonymous:  # `_:` no name of its own: a block call then names its layers in the caller's scope
            label = None
        if s.op == "split" and s.op not in self.program.blocks:  # a file's own block `split` keeps working
            self._split(s, label, ctx)
            return
        if s.op in STRUCTURAL:
            getattr(self, "_" + s.op)(s, label, ctx)
        elif s.op in self.program.blocks:
            self.call_block(s, label, ctx, anonymous)
        else:
            spec = ops.lookup(s.op)
            if spec is None or not spec.user:
                names = [n for n, o in ops.OPS.items() if o.user] + list(ops.ALIASES) + list(self.program.blocks) + list(STRUCTURAL)
                raise error("E012", f"unknown layer or block `{s.op}`", s.op_span,
                            hint=did_you_mean(s.op, names) or "see `resdsl ops` for the list of layers")
            if s.clauses:
                raise error("E021", f"`{s.op}` takes no body", s.clauses[0].span,
                            hint="only residual, dense, parallel, group and branch have bodies")
            self.op_layer(spec, s, label, ctx)
        if s.binds:
            self._bind_one(s, ctx)

    def _bind_one(self, s: ast.Layer, ctx: Ctx) -> None:
        """`layer -> NAME`: one name for the layer's one output (only `split` makes several)."""
        names = [n for t in s.binds for n in self._evaluator(ctx).expand_names(t.parts, t.span)]
        if len(names) != 1:
            raise error("E021", f"`{s.op}` gives one tensor; it cannot be bound to {len(names)} names",
                        s.binds[0].span if len(s.binds) == 1 else s.binds[1].span,
                        hint="only `split(...)` binds several tensors: split(4) -> x{1..4}")
        ctx.env[names[0]] = ctx.current

    def bound_name(self, name: str, template: ast.Label | None, ctx: Ctx) -> str:
        """The name a `-> NAME` or `from NAME` means here: `skip{i}` with i = 2 is `skip2`."""
        if template is None:
            return name
        text = self._evaluator(ctx).interpolate(template.parts)
        if not text.isidentifier():
            raise error("E019", f"invalid tensor name `{text}`", template.span,
                        hint="a tensor name starts with a letter or underscore, e.g. skip{i}")
        return text

    def bind_args(self, params: tuple[ops.Param, ...], args: tuple[ast.Arg, ...], ctx: Ctx, what: str,
                  span: Span) -> tuple[dict, dict, list]:
        """Match call arguments to parameters; returns (values, arg spans, tensors)."""
        entry = _BINDS.get((id(params), id(args)))
        if entry is None or entry[0] is not params or entry[1] is not args:  # the first time: the general path
            if len(_BINDS) >= _PLANS_KEPT:
                _BINDS.clear()
            entry = _BINDS[(id(params), id(args))] = (params, args, _LATER)
        elif entry[2] is _LATER:
            entry = _bind_plan_of(params, args, self._signature(params))
        plan = entry[2] if entry[2] is not _LATER else None
        if plan is not None:  # what bind_args finds of these arguments, but their values, was found once
            values = {}
            if plan[0]:
                ev = self._evaluator(ctx)
                for name, value, vspan, p in plan[0]:
                    values[name] = _check_kind(p, value(ev), vspan)
            for name, default in plan[1]:
                values[name] = default
            return values, dict(plan[2]), []
        values: dict[str, object] = {}
        spans: dict[str, Span] = {}
        tensors: list[tuple[Tensor, Span]] = []
        takes_tensors, positional, by_name, plain, defaults = self._signature(params)
        if not args and defaults is not None:  # a construct or layer called without arguments
            return dict(defaults), spans, tensors
        pos_i = 0
        ev = self._evaluator(ctx)
        for a in args:
            v = ev.eval(a.value)
            if a.name is None:
                if takes_tensors and isinstance(v, Tensor):
                    tensors.append((v, a.span))
                    continue
                if takes_tensors and isinstance(a.value, ast.Interp) and isinstance(v, tuple):
                    tensors.extend((t, a.span) for t in v)  # concat(y{1..4}): several tensors (maybe none)
                    continue
                if pos_i >= len(positional):
                    raise error("E013", f"{what} takes {len(positional)} positional argument"
                                f"{'s' if len(positional) != 1 else ''}, got more", a.span,
                                hint=f"its parameters are: {', '.join(p.name for p in params)}")
                p = positional[pos_i]
                pos_i += 1
            else:
                p = by_name.get(a.name)
                if p is None:
                    raise error("E013", f"{what} has no argument `{a.name}`", a.span,
                                hint=did_you_mean(a.name, [q.name for q in params])
                                or f"its arguments are: {', '.join(q.name for q in params) or 'none'}")
                if a.name in values:
                    raise error("E013", f"argument `{a.name}` given twice", a.span)
            values[p.name] = _check_kind(p, v, a.value.span)
            spans[p.name] = a.value.span
        for p in plain:
            if p.name not in values:
                if p.default is ops.REQUIRED:
                    raise error("E013", f"{what} is missing its required argument `{p.name}`", span,
                                hint=f"e.g. {what}({', '.join(q.name + '=...' for q in params if q.default is ops.REQUIRED)})")
                values[p.name] = p.default
        for t, sp in tensors:
            if t.shape is None:
                raise _Poisoned()
        return values, spans, tensors

    def _signature(self, params: tuple[ops.Param, ...]) -> tuple[bool, list, dict, list, dict | None]:
        """What `bind_args` needs to know of a parameter list, worked out once per list: whether it takes
        tensors, the positional parameters, the parameters by name (the first of a name wins), the
        parameters that are not tensors, and their defaults (None if one is required).  Keyed by identity:
        op and construct lists live as long as the process, a block's list as long as this elaboration
        (`_block_params`), and the entry holds it."""
        entry = self._signatures.get(id(params))
        if entry is None or entry[0] is not params:
            by_name: dict[str, ops.Param] = {}
            for p in params:
                by_name.setdefault(p.name, p)
            plain = [p for p in params if p.kind != "tensors"]
            defaults: dict[str, object] = {}
            for p in plain:
                defaults.setdefault(p.name, p.default)
            sig = (any(p.kind == "tensors" for p in params),
                   [p for p in params if p.positional and p.kind != "tensors"], by_name, plain,
                   None if any(v is ops.REQUIRED for v in defaults.values()) else defaults)
            entry = self._signatures[id(params)] = (params, sig)
        return entry[1]

    def _block_params(self, bd: ast.BlockDef) -> tuple[ops.Param, ...]:
        """A block's parameters as argument kinds ("any": the block checks its own values); one tuple per
        block definition (kept while it lives, as the parsed file is), so its signature and the plans of
        its calls' arguments are worked out once."""
        params = _BLOCK_PARAMS.get(id(bd))
        if params is None or params[0] is not bd:
            if len(_BLOCK_PARAMS) >= _PLANS_KEPT:
                _BLOCK_PARAMS.clear()
            params = _BLOCK_PARAMS[id(bd)] = (bd, tuple(
                ops.Param(p.name, "any", ops.REQUIRED if p.default is None else p, True) for p in bd.params))
        return params[1]

    def op_layer(self, spec: ops.OpSpec, s: ast.Layer, label: str | None, ctx: Ctx) -> None:
        attrs, spans, tensors = self.bind_args(spec.params, s.args, ctx, s.op, s.span)
        x = self.need_current(ctx, s.span)
        inputs = [x] + [t for t, _ in tensors]
        lo, hi = spec.arity
        if len(inputs) < lo:
            raise error("E013", f"{s.op} needs at least {lo - 1} named tensor{'s' if lo > 2 else ''} to merge "
                        "with the current one", s.span, hint=f"e.g. {s.op}(skip) after binding `-> skip`")
        attrs.pop("tensors", None)
        ctx.current = self.make(spec, attrs, inputs, label, s.span, ctx, spans,
                                operand_spans=[s.span] + [sp for _, sp in tensors])

    def _planned_op(self, plan: "_OpPlan", s: ast.Layer, label: str | None, ctx: Ctx) -> None:
        """`op_layer` for a call site whose plan did once what depends on the statement alone: the same
        evaluations, checks and errors in the same order, for the arguments that are not constants."""
        attrs = dict(plan.template)  # every argument in the order op_layer's would have; constants checked
        if plan.variable:
            ev = self._evaluator(ctx)
            for name, value, span, p in plan.variable:
                attrs[name] = _check_kind(p, value(ev), span)
        x = ctx.current
        if x is None or x.shape is None:
            x = self.need_current(ctx, s.span)  # raises
        # = self.make(plan.spec, attrs, [x], label, s.span, ctx, plan.spans, plan.operand_spans, checks=plan.checks),
        # with the one input and without the calls: most of a network's nodes are made here
        spec, span, xs = plan.spec, s.span, [x.shape]
        if self._token_ids or spec.ids is not None:
            self._check_ids(spec, [x], span)
        try:
            for name, p in plan.checks:
                v = attrs[name]
                if v is not p.default:
                    p.check(v)
            shape, final = spec.infer_full(attrs, xs)
        except (ops.ShapeProblem, OverflowError, ValueError, ZeroDivisionError) as e:
            raise self._rule_error(e, spec, [x], span, ctx, plan.spans, plan.operand_spans, None) from None
        if math.prod(shape) > self.limits.max_tensor_elements:
            self._check_elements(shape, span)  # raises
        ctx.current = self._append(spec, final, (x.node,), shape, spec.count(final, xs, shape), label, span, ctx,
                                   (spec, attrs))

    def make(self, spec: ops.OpSpec, attrs: dict, inputs: list[Tensor], label: str | None, span: Span, ctx: Ctx,
             spans: dict[str, Span] | None = None, operand_spans: list[Span] | None = None,
             hints: dict[str, str] | None = None, checks: tuple | None = None) -> Tensor:
        """Infer shape and counts, then add the node; ShapeProblems become diagnostics (`hints`: code -> the
        hint to give instead of the op's, where the node comes from a construct such as dense).  `checks`
        (from an `_OpPlan`): attrs already hold every default and only these (name, Param) need their range
        checked -- what `spec.elaborate` would find of the others was found once."""
        in_shapes = [t.shape for t in inputs]
        if self._token_ids or spec.ids is not None:  # without token-id inputs only an id reader can be wrong
            self._check_ids(spec, inputs, span)
        try:
            if checks is None:
                merged = spec.checked(attrs, in_shapes)
            else:
                for name, p in checks:
                    v = attrs[name]
                    if v is not p.default:  # as spec.elaborate: defaults are valid by construction
                        p.check(v)
                merged = attrs
            shape, attrs = spec.infer_full(merged, in_shapes)
        except (ops.ShapeProblem, OverflowError, ValueError, ZeroDivisionError) as e:
            raise self._rule_error(e, spec, inputs, span, ctx, spans, operand_spans, hints) from None
        self._check_elements(shape, span)
        return self._append(spec, attrs, tuple([t.node for t in inputs]), shape, spec.count(attrs, in_shapes, shape),
                            label, span, ctx, (spec, merged))

    def _append(self, spec: ops.OpSpec, attrs: dict, inputs: tuple[int, ...], shape: tuple, counts: tuple[int, int],
                label: str | None, span: Span, ctx: Ctx, rule: tuple) -> Tensor:
        """`add_node` for a node of a shape rule (`shape` a tuple already), the common case inline."""
        nodes = self.graph.nodes
        nid = len(nodes)
        if nid >= self.limits.max_nodes or attrs.get("dtype") == "int" or attrs.get("tie"):
            return self.add_node(spec.name, attrs, list(inputs), shape, counts, label, span, ctx, rule)
        nodes.append(new_node(nid, spec.name, inputs, MappingProxyType(attrs), shape, counts[0], counts[1], ctx.scope,
                              label, span, ctx.calls, ctx.region))
        self._rules.append(rule)
        return Tensor(nid, shape)

    def _rule_error(self, e: Exception, spec: ops.OpSpec, inputs: list[Tensor], span: Span, ctx: Ctx,
                    spans: dict | None, operand_spans: list | None, hints: dict | None) -> ResdslError:
        """The diagnostic for a ShapeProblem of an op's checks or shape rule (at the argument it names,
        with the operands' shapes for a merge), or for arithmetic on absurd arguments (E041)."""
        if isinstance(e, ops.ShapeProblem):
            where = (spans or {}).get(e.arg, span) if e.arg else span
            notes = []
            if spec.family == "merge" and operand_spans:
                notes = [Note(self.made_at(t.node, ctx), f"operand {i + 1} has shape {list(t.shape)}, made here")
                         for i, t in enumerate(inputs)]
            return error(e.code, e.message, where, hint=(hints or {}).get(e.code, e.hint), notes=notes)
        return error("E041", f"{spec.name}: the output shape cannot be computed from these arguments ({e})", span,
                     hint="check the sizes, strides and scale factors")

    def made_at(self, node_id: int, ctx: Ctx) -> Span:
        """Where the user made a tensor, seen from `ctx`: the block call it came out of (not the
        library's insides), or the statement that made it (not a `post=` argument)."""
        n = self.graph.nodes[node_id]
        depth = len(ctx.calls)
        if len(n.calls) > depth and n.calls[:depth] == ctx.calls:
            return n.calls[depth].span
        for r in self.graph.regions:  # the activation a residual's post= adds after its merge
            if r is not None and n.inputs == (r.merge,) and node_id == r.merge + 1 and r.attrs.get("post"):
                return r.span
        return n.span

    def _check_ids(self, spec: ops.OpSpec, inputs: list[Tensor], span: Span) -> None:
        """Integer token ids (`input ids: int[N]`) feed only ops that read ids (`embedding`), and those only them."""
        ids = [t.node in self._token_ids for t in inputs]
        if spec.ids is not None and not all(ids):
            raise error("E033", f"{spec.name} reads token ids, but its input is a float tensor", span,
                        hint="declare the input as token ids: `input ids: int[N]`")
        if spec.ids is None and any(ids):
            raise error("E033", f"{spec.name} needs a float tensor, but its input holds integer token ids", span,
                        hint="embed the ids first: `embedding(vocab, dim)`")

    def _check_elements(self, shape: tuple[int, ...], span: Span) -> None:
        n = math.prod(shape)
        if n > self.limits.max_tensor_elements:
            raise error("E040", f"a tensor of shape {list(shape)} has {n} elements per sample; "
                        f"the limit is {self.limits.max_tensor_elements}", span,
                        hint="raise it with --limit max_tensor_elements=N if you mean it")

    def add_node(self, op: str, attrs: dict, inputs: list[int], shape: tuple, counts: tuple[int, int],
                 label: str | None, span: Span, ctx: Ctx, rule: tuple | None = None) -> Tensor:
        """Append a node; it keeps `attrs` itself (read-only), so the caller must not change that dict later.
        `rule`: (op, the attrs its shape rule read), kept for reshaped replays (see `_reshape`)."""
        g = self.graph
        nid = len(g.nodes)
        if nid >= self.limits.max_nodes:  # fatal, like max_steps: one report, then stop
            self.diags.append(Diagnostic("E040", f"the network has more than {self.limits.max_nodes} operations",
                                         span, (), "raise the limit with --limit max_nodes=N"))
            raise _Abort()
        shape = tuple(shape)
        if attrs.get("dtype") == "int":
            self._token_ids.add(nid)
            self._unreplayable += 1
        if attrs.get("tie"):
            self._tied.append(nid)  # read here, while attrs is at hand, not in a walk over every node later
            self._unreplayable += 1
        # `attrs` is the caller's fresh dict, handed over: wrapping it read-only needs no copy
        g.nodes.append(new_node(nid, op, tuple(inputs), MappingProxyType(attrs), shape, counts[0], counts[1], ctx.scope,
                                label, span, ctx.calls, ctx.region))
        self._rules.append(rule)
        return Tensor(nid, shape)

    def new_scope(self, label: str | None, hint: str, kind: str, span: Span, ctx: Ctx) -> int:
        sid = len(self.graph.scopes)
        self.graph.scopes.append(new_scope(sid, ctx.scope, label, hint, span, kind))
        return sid

    def mark(self, action: str, kind: str, ref: int) -> None:
        """Record structure (see Graph.structure) so `expand` can print it back."""
        self.graph.structure.append((len(self.graph.nodes), action, kind, ref))

    # ------------------------------------------------------------ blocks

    def call_block(self, s: ast.Layer, label: str | None, ctx: Ctx, anonymous: bool = False) -> None:
        bd = self.program.blocks[s.op]
        if s.clauses:
            raise error("E021", f"block `{s.op}` takes no body", s.clauses[0].span)
        if len(ctx.calls) >= self.limits.max_call_depth:
            self._too_deep(s, bd, ctx)
        values, _, _ = self.bind_args(self._block_params(bd), s.args, ctx, s.op, s.span)
        env: dict[str, object] = {}
        defaults_ctx = None
        for p in bd.params:  # defaults are evaluated in the block's (global) scope, in order
            v = values[p.name]
            if isinstance(v, ast.Param):
                if defaults_ctx is None:
                    defaults_ctx = Ctx(env, None, 0, None, (), False)  # sees the parameters bound so far
                v = self.eval(v.default, defaults_ctx)
            env[p.name] = v
        x = self.need_current(ctx, s.span)
        sid = ctx.scope if anonymous else self.new_scope(label, s.op, "block", s.span, ctx)
        inner = Ctx(env, x, sid, ctx.region, ctx.calls + (CallSite(s.op, s.span),), False)
        before = len(self.diags)
        self._open_scope(sid, ctx)
        try:
            key = self._block_key(s, env, x, ctx)
            if key is None:
                self.body(bd.body, inner)
            else:
                self._run_body(key, (s, ctx.calls), bd.body, inner, None)
            self._close_scope(sid, ctx)
        finally:
            # Errors inside the block point back at this call site too.
            for i in range(before, len(self.diags)):
                d = self.diags[i]
                if all(n.span != s.span for n in d.notes):  # E016 already lists the call chain
                    self.diags[i] = replace(d, notes=d.notes + (Note(s.span, f"in block `{s.op}` called here"),))
        ctx.current = inner.current if inner.current is not None else x

    def _block_key(self, s: ast.Layer, env: dict, x: Tensor, ctx: Ctx) -> tuple | None:
        """What a block's body can observe, as a key for `_run_body` (None: run it).  That is its
        parameters' values (all it sees besides the file's constants), the tensor flowing in (its shape,
        whether it holds token ids), and the call chain: this call site (a statement object) under the
        caller's chain (its identity)."""
        if not ctx.repeats or not self.replay_bodies or self.diags or self._misses.get(id(s), 0) >= GIVE_UP:
            return None  # (ctx.repeats: see Ctx)
        try:
            values = replay.values_key(list(env.values()))
        except replay.Unkeyable:
            return None
        return ("block", id(s), id(ctx.calls), x.node in self._token_ids, values), x.shape  # (the shape apart: _run_body)

    def _run_body(self, key: tuple, anchors: tuple, body: tuple[ast.Stmt, ...], ctx: Ctx,
                  sets: tuple[str, ...] | None) -> None:
        """Run a body, or replay what it made when it ran before under the same key (`_shared_key`,
        `_block_key`): every node, scope, region and structure mark, the steps it counted, the tensor it
        left current and the variables `sets` names (a block's own variables are not kept) -- the same
        as running it again.
        A body is recorded only if it ran without any error anywhere so far and made no token ids, ties,
        contracts, inputs or outputs; it is replayed only while there are still no errors and only where
        its steps and nodes stay within the limits (else it runs, and reports the limit where it is hit)."""
        g = self.graph
        values_key, shape = key  # all the key but the input's shape; the shape
        # [the fragment for another shape that may be reshaped (see _reshape), {shape: fragment}]
        entry = self._fragments.get(values_key)
        if entry is None:
            entry = self._fragments[values_key] = [None, {}]
        f = entry[1].get(shape)
        made = f.compiled() if f is not None else None
        if f is None and entry[0] is not None and self._reshape(entry[0], body, ctx):  # the same but the shape
            self._misses[id(anchors[0])] = 0
            return
        self._misses[id(anchors[0])] = 0 if made is not None else self._misses.get(id(anchors[0]), 0) + 1
        if made is not None and self.steps + f.steps <= self.limits.max_steps and \
                len(g.nodes) + len(made[0]) <= self.limits.max_nodes:
            self._emit(f, made, ctx)
            return
        at = replay.Start(g, self.steps, ctx.current, ctx.scope, ctx.region)
        before = self._unreplayable
        choices = self._shape_choices
        self.body(body, ctx)
        if f is not None or self.diags or before != self._unreplayable:
            return  # (a fragment that cannot be replayed is not made again)
        env = ctx.env
        values = None if sets is None else tuple((k, env[k]) for k in sets if k in env)
        f = entry[1][shape] = replay.Fragment(anchors, at, g, self.steps, self.last_span, ctx.current, values,
                                              self._rules)
        self._pending.append(f)
        if entry[0] is None and choices == self._shape_choices:
            entry[0] = f  # (whether it reads a shape, and its nodes' attrs are their rules': checked by _reshape)

    def _emit(self, f: replay.Fragment, made: tuple, ctx: Ctx, shapes: list | None = None) -> None:
        """Append what a fragment made (`replay.emit`; `shapes`: its nodes' new shapes) and do what running
        its body did besides."""
        current, sets = replay.emit(self.graph, made, ctx.current, ctx.scope, ctx.region, shapes)
        self._rules.extend(f.rules)
        self.steps += f.steps
        self.last_span = f.last_span
        self.replayed += len(made[0])
        ctx.current = current
        for k, v in sets:
            ctx.env[k] = v

    def _reshape(self, f: replay.Fragment, body: tuple, ctx: Ctx) -> bool:
        """Replay a fragment recorded for another input shape, its nodes' shape rules and counts run again
        for this one; False (nothing done) where the fragment cannot be replayed or a rule or a limit
        refuses: then the body runs and reports what it finds.
        Exact because of what the fragment was recorded for (`_run_body`): its body and the blocks it calls
        read no shape (`replay.reads_no_shape`), no construct in it chose attrs from one (a shortcut, a
        split: `_shape_choices`) and every node's attrs are what its rule gave (`_rules`).  So a run for
        this shape takes the same statements, with the same values, and makes the same nodes from the
        same rule inputs: only what the rules and counts give differs.  The checks constructs make of
        shapes are those of the rules (a residual's add is the op's own equality check)."""
        if not replay.reads_no_shape(body, self.program.blocks):
            return False
        made = f.compiled()
        g = self.graph
        if made is None or None in f.rules or self.steps + f.steps > self.limits.max_steps or \
                len(g.nodes) + len(made[0]) > self.limits.max_nodes:
            return False
        x = ctx.current.shape if ctx.current is not None else None
        limit = self.limits.max_tensor_elements
        shapes: list[tuple] = []
        nodes = []
        try:
            for (op, ins, _, _, _, _, sc, label, span, calls, rg), (spec, given) in zip(made[0], f.rules):
                xs = [x if i < 0 else shapes[i] for i in ins]
                shape, attrs = spec.infer_full(given, xs)
                if math.prod(shape) > limit:
                    return False
                params, buffers = spec.count(attrs, xs, shape)
                shapes.append(shape)
                nodes.append((op, ins, MappingProxyType(attrs), shape, params, buffers, sc, label, span, calls, rg))
        except (ops.ShapeProblem, OverflowError, ValueError, ZeroDivisionError):
            return False
        self._emit(f, (tuple(nodes),) + made[1:], ctx, shapes)
        self.reshaped += len(nodes)
        return True

    def _too_deep(self, s: ast.Layer, bd: ast.BlockDef, ctx: Ctx) -> None:
        """Block calls nested past max_call_depth: E016 with the call chain when a block recurs, else E040."""
        limit = self.limits.max_call_depth
        if not any(c.block == s.op for c in ctx.calls):
            raise error("E040", f"block calls nested more than {limit} deep", s.span,
                        hint="call fewer blocks inside one another; " + raise_hint("max_call_depth", limit))
        p = bd.params[0].name if bd.params else "depth"
        last = max(i for i, c in enumerate(ctx.calls) if c.block == s.op)
        loop = [c.block for c in ctx.calls[last:]] + [s.op]
        cycle = f" through {' -> '.join(loop)}" if len(loop) > 2 else ""  # mutual recursion: name the cycle
        notes, seen = [], {}
        for c in ctx.calls:  # the chain, one note per call site (a recursive call repeats its site)
            if c.span in seen:
                seen[c.span][1] += 1
            else:
                seen[c.span] = [c, 1]
        for c, k in seen.values():
            notes.append(Note(c.span, f"`{c.block}` called here" + (f" ({k} times, nested)" if k > 1 else "")))
        notes.append(Note(bd.span, "defined here"))
        # Fatal, like max_steps: a runaway recursion that branches would otherwise hit the limit 2**depth times.
        self.diags.append(Diagnostic(
            "E016", f"block `{s.op}` recurses{cycle} more than {limit} calls deep without stopping", s.op_span,
            tuple(notes), f"stop the recursion with an `if` on a parameter that shrinks, e.g. "
                    f"`if {p} > 1 {{ {s.op}({p} - 1) }}`; or raise the limit with --limit max_call_depth=N"))
        raise _Abort()

    # ------------------------------------------------------------ structure

    def _group(self, s: ast.Layer, label: str | None, ctx: Ctx) -> None:
        self._no_args(s)
        body = self._one_body(s)
        sid = self.new_scope(label, "group", "group", s.span, ctx) if label is not None else ctx.scope
        inner = ctx.child(scope=sid)
        self._open_scope(sid, ctx)
        self._run_shared(body, inner)
        self._close_scope(sid, ctx)
        ctx.current = inner.current

    def _open_scope(self, sid: int, ctx: Ctx) -> None:
        if sid != ctx.scope:
            self.mark("open", "scope", sid)

    def _close_scope(self, sid: int, ctx: Ctx) -> None:
        if sid != ctx.scope:
            self.mark("close", "scope", sid)

    def _branch(self, s: ast.Layer, label: str | None, ctx: Ctx) -> None:
        if ctx.branches is None:
            raise error("E021", "`branch` belongs directly inside `parallel { }`", s.op_span,
                        hint="parallel(merge=\"add\") { branch { ... } branch { ... } }")
        self._no_args(s)
        body = self._one_body(s)
        sid = self.new_scope(label, "branch", "branch", s.span, ctx)
        start = len(self.graph.nodes)
        inner = ctx.child(scope=sid, current=ctx.env["__parallel_input__"])
        self.mark("open", "part", len(ctx.branches))
        self.mark("open", "scope", sid)
        self._run_shared(body, inner)
        self.mark("close", "scope", sid)
        self.mark("close", "part", len(ctx.branches))
        ctx.branches.append((inner.current, tuple(range(start, len(self.graph.nodes))), s.span))

    def _no_args(self, s: ast.Layer) -> None:
        if s.args:
            raise error("E013", f"`{s.op}` takes no arguments", s.args[0].span)

    def _one_body(self, s: ast.Layer) -> tuple:
        if not s.clauses:
            raise error("E021", f"`{s.op}` needs a body in braces", s.span, hint=f"{s.op} {{ ... }}")
        if len(s.clauses) > 1:
            raise error("E021", f"`{s.op}` takes one body, not `{s.clauses[1].keyword}`", s.clauses[1].span)
        return s.clauses[0].body

    def _open_region(self, kind: str, label: str | None, s: ast.Layer, ctx: Ctx) -> tuple[int, int]:
        """Reserve a region id (nested regions get later ids) and its scope: a label opens one."""
        rid = len(self.graph.regions)
        self.graph.regions.append(None)  # filled in once the merge node exists
        sid = self.new_scope(label, kind, kind, s.span, ctx) if label is not None else ctx.scope
        self._open_scope(sid, ctx)
        self.mark("open", "region", rid)
        return rid, sid

    def _close_region(self, region: Region, ctx: Ctx) -> None:
        self.graph.regions[region.id] = region
        self.mark("close", "region", region.id)

    def _branch_body(self, body: tuple, x: Tensor, sid: int, rid: int, ctx: Ctx, part: int) -> tuple[Ctx, int]:
        """Run a branch (or shortcut) body from x; returns its context and first node id."""
        self.mark("open", "part", part)
        start = len(self.graph.nodes)
        bctx = ctx.child(current=x, scope=sid, region=rid)
        self._run_shared(body, bctx)
        return bctx, start

    _RESIDUAL = (
        ops.Param("shortcut", "choice_or_none", None, SHORTCUTS),
        ops.Param("scale", "scale", 1.0),
        ops.Param("scale_init", "float", 0.0),
        ops.Param("drop_path", "float", 0.0),
        ops.Param("post", "activation", None),
        ops.Param("shortcut_norm", "norm", "batchnorm"),
        ops.Param("shortcut_label", "str", None),  # default: auto-named downsample, downsample_1, ...
        ops.Param("zero_init_last", "bool", False),
    )

    def _residual(self, s: ast.Layer, label: str | None, ctx: Ctx) -> None:
        a, spans, _ = self.bind_args(self._RESIDUAL, s.args, ctx, "residual", s.span)
        main = [c for c in s.clauses if c.keyword == ""]
        custom = [c for c in s.clauses if c.keyword == "shortcut"]
        other = [c for c in s.clauses if c.keyword not in ("", "shortcut")]
        if not main:
            raise error("E021", "`residual` needs a branch body in braces", s.span, hint="residual { conv(...) ... }")
        if other or len(custom) > 1:
            bad = (other + custom[1:])[0]
            raise error("E021", f"unexpected `{bad.keyword}` clause after residual", bad.span,
                        hint="the only clause is `} shortcut { ... }`")
        if custom and a["shortcut"] is not None:
            raise error("E013", "give the shortcut either as shortcut=... or as a `shortcut { }` body, not both",
                        spans["shortcut"])
        kind = "custom" if custom else (a["shortcut"] or "identity")
        x = self.need_current(ctx, s.span)
        g = self.graph
        rid, sid = self._open_region("residual", label, s, ctx)
        bctx, start = self._branch_body(main[0].body, x, sid, rid, ctx, 0)
        b = bctx.current
        if b is None or b.shape is None:
            raise _Poisoned()
        scale = a["scale"]
        if scale == "learnable":
            b = self.make(ops.OPS["scalar_scale"], {"init": a["scale_init"]}, [b], None, spans.get("scale", s.span), bctx)
        elif scale != 1.0:
            b = self.make(ops.OPS["scale"], {"value": float(scale)}, [b], None, spans.get("scale", s.span), bctx)
        if a["drop_path"]:
            b = self.make(ops.OPS["drop_path"], {"p": a["drop_path"]}, [b], None, spans.get("drop_path", s.span), bctx)
        branch = tuple(range(start, len(g.nodes)))
        if a["zero_init_last"]:
            self._zero_last_norm(branch, s, spans)
        self.mark("close", "part", 0)
        sctx, sc_start = self._branch_body(custom[0].body if custom else (), x, sid, rid, ctx, -1)
        if kind == "custom":
            sc = sctx.current
            if sc is None or sc.shape is None:
                raise _Poisoned()
        elif kind == "identity":
            sc = x
        else:
            sc = self._shortcut(kind, a, x, b, s, spans, sctx)
        shortcut = tuple(range(sc_start, len(g.nodes)))
        self.mark("close", "part", -1)
        if sc.shape != b.shape:
            notes = [Note(self.graph.nodes[b.node].span if b.node >= start else main[0].span,
                          f"the branch ends here, giving {list(b.shape)}"),
                     Note(self.made_at(x.node, ctx), f"the residual's input {list(x.shape)} comes from here")]
            hint = ('use shortcut="project" (1x1 conv + batchnorm) or shortcut="zeropad" (option A)'
                    if kind == "identity" else "make the shortcut produce the branch's shape")
            raise error("E030", f"residual add: the {kind} shortcut gives {list(sc.shape)} but the branch gives "
                        f"{list(b.shape)}", s.op_span, notes=notes, hint=hint)
        rctx = ctx.child(scope=sid, region=ctx.region)
        out = self.make(ops.OPS["add"], {}, [sc, b], None, s.span, rctx)
        self._close_region(new_region(rid, "residual", ctx.region, x.node, out.node, (branch,), (1,), shortcut,
                                  freeze({"shortcut": kind, "scale": scale, "scale_init": a["scale_init"],
                                          "drop_path": a["drop_path"], "post": a["post"]}),
                                  sid, s.span, ctx.calls), ctx)
        if a["post"] is not None:
            out = self.make(ops.OPS[a["post"]], {k.name: k.default for k in ops.OPS[a["post"]].params}, [out], None,
                            spans.get("post", s.span), rctx)
        self._close_scope(sid, ctx)
        ctx.current = out

    _SPLIT = (ops.Param("sections", "any", ops.REQUIRED),)

    def _split(self, s: ast.Layer, label: str | None, ctx: Ctx) -> None:
        """`split(4) -> x{1..4}` or `split([a, b]) -> p, q`: channel slices of the current tensor, one
        `slice` node each, bound to the names in order; afterwards no tensor is current (`from x1`)."""
        a, spans, _ = self.bind_args(self._SPLIT, s.args, ctx, "split", s.span)
        if s.clauses:
            raise error("E021", "`split` takes no body", s.clauses[0].span)
        x = self.need_current(ctx, s.span)
        self._shape_choices += 1  # the pieces' attrs are worked out from the channels: see _reshape
        sizes = _split_sizes(a["sections"], x.shape[0], spans["sections"])
        names = [n for t in s.binds for n in self._evaluator(ctx).expand_names(t.parts, t.span)]
        if len(names) != len(sizes):
            k = len(sizes)
            raise error("E013", f"split makes {k} tensors but {'they are' if names else 'none is'} bound to "
                        f"{len(names) or 'no'} name{'s' if len(names) != 1 else ''}",
                        s.binds[0].span if s.binds else s.span, hint=f"bind each piece: split(...) -> x{{1..{k}}}")
        start = 0
        for i, (name, size) in enumerate(zip(names, sizes)):
            piece = self.make(ops.OPS["slice"], {"start": start, "stop": start + size, "dim": 0}, [x],
                              f"{label}.{i}" if label else None, s.span, ctx)
            ctx.env[name] = piece
            start += size
        ctx.current = None

    def _zero_last_norm(self, branch: tuple[int, ...], s: ast.Layer, spans: dict) -> None:
        g = self.graph
        for i in reversed(branch):
            n = g.nodes[i]
            if n.family == "norm" and "init" in n.attrs:
                for f in reversed(self._pending):  # fragments holding node i keep it as it was (Fragment.take)
                    if f.end <= i:
                        break  # (recorded in the order they ended: the earlier ones end before i too)
                    if f.at.nodes <= i:
                        f.take()
                g.nodes[i] = replace(n, attrs=freeze({**n.attrs, "init": "zeros"}))
                self._rules[i] = None  # its attrs are no longer what its rule gave: a body with it is not reshaped
                return
        raise error("E014", "zero_init_last=true but the branch has no normalization layer", spans.get("zero_init_last", s.span),
                    hint="for networks without norms, use init=\"zeros\" on the branch's last conv (Fixup)")

    def _shortcut(self, kind: str, a: dict, x: Tensor, b: Tensor, s: ast.Layer, spans: dict, ctx: Ctx) -> Tensor:
        """Build a projection, average-pool projection or zero-pad shortcut from x to b's shape."""
        self._shape_choices += 1  # the shortcut's attrs are worked out from the shapes: see _reshape
        xs, bs = x.shape, b.shape
        where = spans.get("shortcut", s.span)
        if len(xs) != len(bs):
            raise error("E030", f"residual: cannot make a {kind} shortcut from {list(xs)} to {list(bs)}", where)
        stride = []
        for i, (L, M) in enumerate(zip(xs[1:], bs[1:])):
            st = -(-L // M)
            if M * st - L >= st or (kind != "zeropad" and (L + st - 1) // st != M):
                raise error("E030", f"residual: the branch maps spatial size {L} to {M}, which no strided "
                            f"shortcut reproduces", where, hint="check the branch's strides and padding")
            stride.append(st)
        stride = tuple(stride)
        if kind == "zeropad":
            return self.make(ops.OPS["zeropad"], {"out_channels": bs[0], "stride": stride}, [x], None, where, ctx)
        sid = self.new_scope(a["shortcut_label"], "downsample", "shortcut", where, ctx)
        c = ctx.child(scope=sid)
        self.mark("open", "scope", sid)
        idx = 0
        t = x
        if kind == "avgproject":
            if any(st > 1 for st in stride):
                t = self.make(ops.OPS["avgpool"], {"kernel_size": stride, "stride": stride, "padding": 0,
                                                   "ceil_mode": True, "count_include_pad": False}, [t], "0", where, c)
            else:
                t = self.make(ops.OPS["identity"], {}, [t], "0", where, c)
            idx, stride = 1, (1,) * len(stride)
        if len(xs) == 1:
            t = self.make(ops.OPS["linear"], {"out_features": bs[0], "bias": False, "init": "default", "init_gain": 1.0},
                          [t], str(idx), where, c)
        else:
            t = self.make(ops.OPS["conv"], {"out_channels": bs[0], "kernel_size": 1, "stride": stride, "padding": 0,
                                            "dilation": 1, "groups": 1, "bias": False, "init": "default",
                                            "init_gain": 1.0}, [t], str(idx), where, c)
        norm = a["shortcut_norm"]
        if norm != "none":
            spec = ops.OPS[norm]
            attrs = {p.name: p.default for p in spec.params}
            if any(v is ops.REQUIRED for v in attrs.values()):
                raise error("E014", f"shortcut_norm=\"{norm}\" needs arguments; write the shortcut as a "
                            "`shortcut { }` body instead", spans.get("shortcut_norm", s.span))
            t = self.make(spec, attrs, [t], str(idx + 1), where, c)
        self.mark("close", "scope", sid)
        return t

    _DENSE = (ops.Param("crop", "bool", False),)

    def _dense(self, s: ast.Layer, label: str | None, ctx: Ctx) -> None:
        a, _, _ = self.bind_args(self._DENSE, s.args, ctx, "dense", s.span)
        body = self._one_body(s)
        x = self.need_current(ctx, s.span)
        g = self.graph
        rid, sid = self._open_region("dense", label, s, ctx)
        bctx, start = self._branch_body(body, x, sid, rid, ctx, 0)
        self.mark("close", "part", 0)
        b = bctx.current
        if b is None or b.shape is None:
            raise _Poisoned()
        branch = tuple(range(start, len(g.nodes)))
        out = self.make(ops.OPS["concat"], {"crop": a["crop"]}, [x, b], None, s.span, ctx.child(scope=sid),
                        operand_spans=[s.span, s.span],
                        hints={"E031": "use dense(crop=true) to center-crop to the smaller size"})
        self._close_region(new_region(rid, "dense", ctx.region, x.node, out.node, (branch,), (1,), (),
                                  freeze({"crop": a["crop"]}), sid, s.span, ctx.calls), ctx)
        self._close_scope(sid, ctx)
        ctx.current = out

    _PARALLEL = (ops.Param("merge", "choice", "concat", ("add", "concat")), ops.Param("crop", "bool", False))

    def _parallel(self, s: ast.Layer, label: str | None, ctx: Ctx) -> None:
        a, _, _ = self.bind_args(self._PARALLEL, s.args, ctx, "parallel", s.span)
        body = self._one_body(s)
        x = self.need_current(ctx, s.span)
        rid, sid = self._open_region("parallel", label, s, ctx)
        collected: list = []
        pctx = ctx.child(scope=sid, region=rid, env={**ctx.env, "__parallel_input__": x})
        pctx.branches = collected
        for st in body:
            if not isinstance(st, (ast.Layer, ast.For, ast.If)) or (isinstance(st, ast.Layer) and st.op != "branch"):
                raise error("E021", "only `branch { }` statements (and for/if around them) belong in parallel { }",
                            st.span, hint="parallel(merge=\"concat\") { branch { ... } branch { ... } }")
        self.body(body, pctx)
        if len(collected) < 2:
            raise error("E021", f"parallel needs at least two branches, got {len(collected)}", s.span)
        outs = [t for t, _, _ in collected]
        if any(t is None or t.shape is None for t in outs):
            raise _Poisoned()
        spec = ops.OPS[a["merge"]]
        attrs = {"crop": a["crop"]} if a["merge"] == "concat" else {}
        out = self.make(spec, attrs, outs, None, s.span, ctx.child(scope=sid), operand_spans=[sp for _, _, sp in collected],
                        hints={"E031": 'use parallel(merge="concat", crop=true) to center-crop to the smaller size'})
        branches = tuple(nodes for _, nodes, _ in collected)
        self._close_region(new_region(rid, "parallel", ctx.region, x.node, out.node, branches, tuple(range(len(outs))), (),
                                  freeze({"merge": a["merge"]}), sid, s.span, ctx.calls), ctx)
        self._close_scope(sid, ctx)
        ctx.current = out


# ---------------------------------------------------------------- call-site plans


class _OpPlan:
    """What an op call statement's arguments give that does not depend on where it runs, worked out once
    per statement (`_plan_of`): the op, the label when it is literal text, the attrs dict in the order
    `op_layer` builds it -- `bind_args`' order merged into the op's defaults as `OpDef.elaborate` does --
    with the constants' values (kind- and range-checked) and the defaults, and the arguments left to
    evaluate at each run.  Made only where that changes nothing: constants that pass every check, no
    tensor arguments, no argument errors; anything else takes the general path and its errors."""

    __slots__ = ("spec", "label", "template", "variable", "checks", "spans", "operand_spans")

    def __init__(self, spec: ops.OpSpec, label: str | None, template: dict, variable: tuple, spans: dict,
                 operand_spans: list):
        self.spec, self.label, self.template, self.variable = spec, label, template, variable
        self.checks = tuple((name, p) for name, _, _, p in variable)
        self.spans, self.operand_spans = spans, operand_spans


_PLANS: dict[int, tuple] = {}  # id(statement) -> (statement, _OpPlan | None); the statement is held
_PLANS_KEPT = 8192  # statements of files loaded since; more and the table starts again (bounded memory)


_BLOCK_PARAMS: dict[int, tuple] = {}  # id(BlockDef) -> (BlockDef, its parameters as ops.Params)
_LATER = object()  # a bind plan not made yet: the arguments were bound once (a plan costs more than that)
_BINDS: dict[tuple, tuple] = {}  # (id(params), id(args)) -> (params, args, plan or None): see _bind_plan_of


def _bind_plan_of(params: tuple, args: tuple, signature: tuple) -> tuple:
    """What `bind_args` finds of these arguments for these parameters that does not depend on the values:
    ((name, compiled value, value span, Param) per argument in order, (name, default) per omitted one in
    order, the argument spans) -- None where it would report an error or may receive tensors.  Remembered,
    both held."""
    takes_tensors, positional, by_name, plain, _ = signature
    plan: tuple | None = None
    if not takes_tensors:
        given, spans, pos_i = [], {}, 0
        for a in args:
            if a.name is None:
                if pos_i >= len(positional):
                    break
                p = positional[pos_i]
                pos_i += 1
            else:
                p = by_name.get(a.name)
                if p is None or a.name in spans:
                    break
            given.append((p.name, compile_expr(a.value), a.value.span, p))
            spans[p.name] = a.value.span
        else:
            missing, seen = [], set(spans)
            for p in plain:  # as bind_args: the first parameter of a name gives its default
                if p.name not in seen:
                    seen.add(p.name)
                    missing.append((p.name, p.default))
            missing = tuple(missing)
            if not any(d is ops.REQUIRED for _, d in missing):
                plan = (tuple(given), missing, spans)
    if len(_BINDS) >= _PLANS_KEPT:
        _BINDS.clear()
    entry = _BINDS[(id(params), id(args))] = (params, args, plan)
    return entry


def _plan_of(s: ast.Layer) -> tuple:
    """(s, its plan or None), remembered; the first time a statement runs, (s, None) and a note that it
    ran: planning costs more than one run, and most statements outside loops and blocks run once."""
    if len(_PLANS) >= _PLANS_KEPT:
        _PLANS.clear()
    entry = _PLANS.get(id(s))
    if entry is None or entry[0] is not s:
        entry = _PLANS[id(s)] = (s, None, True)
        return entry
    try:
        plan = _make_plan(s)
    except ResdslError:  # a constant the general path will refuse, with its diagnostic
        plan = None
    entry = _PLANS[id(s)] = (s, plan, False)
    return entry


def _make_plan(s: ast.Layer) -> _OpPlan | None:
    """The plan of an op call (None for anything else, or where the general path would report an error
    or needs the tensors' values): a mirror of `Elaborator.label` and `bind_args` for what is constant."""
    if s.op == "split" or s.op in STRUCTURAL or s.clauses:
        return None  # (a file's own block of the op's name is checked at each use: the plan is per op)
    spec = ops.lookup(s.op)
    if spec is None or not spec.user or spec.arity[0] > 1 or spec.arity[1] == 0 or \
            any(p.kind == "tensors" for p in spec.params):
        return None
    label = None
    if s.label is not None and all(isinstance(p, str) for p in s.label.parts):
        label = "".join(s.label.parts)
        if not _LABEL_RE.fullmatch(label):
            return None
    positional = [p for p in spec.params if p.positional]
    by_name: dict[str, ops.Param] = {}
    for p in spec.params:
        by_name.setdefault(p.name, p)
    values: dict[str, object] = {}
    variable = []
    spans: dict[str, Span] = {}
    pos_i = 0
    for a in s.args:
        if a.name is None:
            if pos_i >= len(positional):
                return None
            p = positional[pos_i]
            pos_i += 1
        else:
            p = by_name.get(a.name)
            if p is None or a.name in values:
                return None
        if type(a.value) is ast.Const:
            v = a.value.value
            values[p.name] = _check_kind(p, v if type(v) is int and -MAX_INT <= v <= MAX_INT else
                                         _check_int(v, a.value.span), a.value.span)
            if values[p.name] is not p.default:
                try:
                    p.check(values[p.name])
                except ops.ShapeProblem:
                    return None
        else:
            values[p.name] = None  # its place in the order; the value comes at each run
            variable.append((p.name, compile_expr(a.value), a.value.span, p))
        spans[p.name] = a.value.span
    for p in spec.params:
        if p.name not in values:
            if p.default is ops.REQUIRED:
                return None
            values[p.name] = p.default
    template = {**spec._defaults, **values}
    return _OpPlan(spec, label, template, tuple(variable), spans, [s.span])


# ---------------------------------------------------------------- argument kinds


def _input_dtype(e: ast.Expr) -> tuple[str, ast.Expr]:
    """`int[N]` (parsed as indexing the name `int`) declares N integer token ids; anything else is a float shape."""
    if isinstance(e, ast.Index) and isinstance(e.obj, ast.Name) and e.obj.id == "int":
        return "int", e.index
    return "float", e


def _check_kind(p: ops.Param, v: object, span: Span) -> object:
    """Validate one argument value against its parameter kind; returns the normalised value."""
    k = p.kind
    if k == "any":
        return v
    if v is None and (p.default is None or k == "choice_or_none"):
        return None
    isint = isinstance(v, int) and not isinstance(v, bool)
    isnum = isint or isinstance(v, float)

    def bad(expected: str, hint: str | None = None):
        return error("E014", f"`{p.name}` must be {expected}, got {show(v)}", span, hint=hint)

    if k == "int":
        if not isint:
            raise bad("an int")
        return v
    if k == "posint":
        if not isint or v < 1:
            raise bad("a positive int")
        return v
    if k == "float":
        if not isnum:
            raise bad("a number")
        return float(v)
    if k == "bool":
        if not isinstance(v, bool):
            raise bad("true or false")
        return v
    if k in ("ints", "padding"):
        if k == "padding" and v in ("same", "valid"):
            return v
        if isint:
            return v
        if isinstance(v, tuple) and v and all(isinstance(i, int) and not isinstance(i, bool) for i in v):
            return v
        raise bad("an int or a list of ints" + (' or "same"/"valid"' if k == "padding" else ""))
    if k == "size":
        if isint or (isinstance(v, tuple) and v and all(i is None or (isinstance(i, int) and not isinstance(i, bool)) for i in v)):
            return v
        raise bad("an int or a list of ints")
    if k == "float_or_list":
        if isnum or (isinstance(v, tuple) and v and all(isinstance(i, (int, float)) and not isinstance(i, bool) for i in v)):
            return v
        raise bad("a number or a list of numbers")
    if k in ("choice", "choice_or_none"):
        if v not in p.choices:
            raise bad("one of " + ", ".join(show(c) for c in p.choices),
                      did_you_mean(str(v), p.choices) if isinstance(v, str) else None)
        return v
    if k == "str":
        if not isinstance(v, str):
            raise bad("a string")
        if p.name == "shortcut_label" and not _PLAIN_LABEL_RE.fullmatch(v):
            raise bad("a label (letters, digits, underscores)")
        return v
    if k == "scale":
        if v == "learnable" or isnum:
            return v if v == "learnable" else float(v)
        raise bad('a number or "learnable"', 'e.g. scale=1/sqrt(2), or scale="learnable", scale_init=0 (SkipInit)')
    if k == "activation":
        if v not in ops.ACTIVATIONS:
            raise bad("an activation name: " + ", ".join(ops.ACTIVATIONS),
                      did_you_mean(str(v), ops.ACTIVATIONS) if isinstance(v, str) else None)
        return v
    if k == "norm":
        if v != "none" and v not in ops.NORMS:
            raise bad('"none" or a norm: ' + ", ".join(ops.NORMS), did_you_mean(str(v), ops.NORMS) if isinstance(v, str) else None)
        return v
    raise AssertionError(f"internal error: no rule for argument kind {k}")


def _near_equal(channels: int, k: int) -> tuple[int, ...]:
    """k sizes adding up to channels, the first ones one larger (as torch.tensor_split)."""
    return tuple(channels // k + (1 if i < channels % k else 0) for i in range(min(k, channels)))


def _split_sizes(sections: object, channels: int, span: Span) -> tuple[int, ...]:
    """The channel counts of `split(n)` (n equal pieces) or `split([a, b, ...])` (they must add up)."""
    if isinstance(sections, int) and not isinstance(sections, bool):
        if sections < 1 or channels % sections:
            raise error("E014", f"split({sections}): {channels} channels do not split into {sections} equal pieces",
                        span, hint=f"give the sizes instead: split({show(_near_equal(channels, sections))})"
                        if sections >= 1 else "split(n) takes n >= 1")
        return (channels // sections,) * sections
    if isinstance(sections, tuple) and sections and all(
            isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in sections):
        if sum(sections) != channels:
            raise error("E014", f"split sizes {show(sections)} add up to {sum(sections)}, but the tensor has "
                        f"{channels} channels", span)
        return sections
    raise error("E014", f"split takes a number of equal pieces or a list of positive sizes, got {show(sections)}",
                span, hint="e.g. split(4) or split([26, 26, 26, 26])")


def _coerce_override(name: str, value: object, default: object, span: Span) -> object:
    """Check a --set/keyword override against the parameter's default type."""
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, dict):
        value = FrozenDict(value)
    if default is None or value is None:
        return value
    if isinstance(default, bool) != isinstance(value, bool):
        raise error("E014", f"network parameter `{name}` expects a {type_name(default)}, got {show(value)}", span)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if type_name(default) != type_name(value):
        raise error("E014", f"network parameter `{name}` expects a {type_name(default)}, got {show(value)}", span,
                    hint=f"its default is {show(default)}")
    return value


def elaborate(program: Program, network: str | None = None, overrides: dict | None = None,
              limits: Limits = DEFAULT, input_shapes: dict | None = None, size_scale: int = 1) -> Graph:
    """Build the IR graph of one network of a loaded program.

    `overrides` set network parameters; `input_shapes` replace declared input shapes (name -> shape);
    named sizes (`input x: [3, H, W]`) that no shape gives are built at sizevars.EXAMPLE * `size_scale`.
    """
    el = Elaborator(program, limits, input_shapes, size_scale)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20 * limits.max_call_depth + 8 * limits.max_nesting + 2000))
    try:
        with cycle_collector_paused():  # the graph is acyclic data made in one go (see there)
            return el.network(network, dict(overrides or {}))
    except ResdslError as e:  # keep the inputs declared before the error: the size analysis explains it
        g = el.graph
        e.partial_inputs = {k: g.nodes[i].shape for k, i in g.inputs.items()} if g is not None else {}
        e.partial_sizes = g.sizes if g is not None else None  # named sizes met: retry at a larger example
        raise
    except _Abort:  # raised outside the network body (e.g. while evaluating top-level constants)
        raise ResdslError(el.diags) from None
    except RecursionError:
        # Nesting is bounded by the parser and max_call_depth; this is the last line of defence.
        raise error("E040", "the network nests blocks, bodies and expressions too deeply to elaborate", el.last_span,
                    hint="nested block calls and the bodies inside them add up: flatten the nesting, e.g. "
                         "call blocks one after another instead of each inside the previous one's group") from None
    finally:
        sys.setrecursionlimit(old)
        el._last_evaluator = (None, None)  # it refers back to `el` (charge): no cycle outlives the run

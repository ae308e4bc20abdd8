"""Step 4 of `resdsl import`: statements -> labelled items -> blocks and loops -> .res text.

Reads `Stmt` trees (structure.py) and the module tree's class names; writes
.res source.  Runs of statements under one child module become
`child: group { }` (a single child item a dotted label `a.b:`), so every layer
is named like the torch module it came from.  Module classes used twice or
more with one layout become `block` definitions: every argument is kept per
slot (defaults too), slots that differ between uses become parameters --
named after their argument (`channels`, `stride`), written as a multiple of an
earlier one where they are (`channels * 4`) -- and runs of calls
`name{k}: b(...)` with consecutive k become `for` loops.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

from ..ops import OPS, REQUIRED
from .structure import Stmt, is_projection
from .trace import ImportProblem, is_default

KEYWORDS = {"in_channels", "in_shape", "true", "false", "none", "and", "or", "not", "if", "else", "for", "in",
            "block", "network", "input", "output", "from", "import", "residual", "dense", "parallel", "branch",
            "group", "assert", "params", "buffers", "macs",
            # builtins, which a parameter would shadow
            "min", "max", "sum", "sqrt", "abs", "int", "float", "round", "floor", "ceil", "log2", "range", "len",
            "shape", "str", "enumerate"}


@dataclass
class Call:
    """A statement head: an op, block or region keyword with all its arguments, defaults included, so
    that uses of one module class line up slot by slot."""
    name: str
    args: list[tuple[str, object, bool]] = field(default_factory=list)  # (argument, value, must be written)
    positional: int = 0  # leading arguments written without their names
    bare: bool = True  # no parentheses when nothing is written (`relu`, `group`)

    def text(self, exprs: list[str | None] | None = None) -> str:
        exprs = exprs or [None] * len(self.args)
        parts = []
        for k, ((arg, value, needed), e) in enumerate(zip(self.args, exprs)):
            if e is None and not needed:
                continue
            text = e if e is not None else value_text(value)
            parts.append(text if k < self.positional else f"{arg}={text}")
        return self.name if not parts and self.bare else f"{self.name}({', '.join(parts)})"


@dataclass
class Item:
    """One .res statement: a layer, a block call, or a scope with a body (group/residual/dense/parallel)."""
    label: str | None
    call: Call
    body: list["Item"] | None = None
    shortcut: list["Item"] | None = None
    branches: list[list["Item"]] | None = None
    branch_labels: list[str] | None = None  # parallel: each branch's label (its module)
    module: str = ""  # the torch module this scope stands for (blocks are made per module class)
    exprs: list[str | None] | None = None  # block templates: parameter expressions per argument slot

    def children(self) -> list[list["Item"]]:
        return [x for x in [self.body, self.shortcut] if x is not None] + list(self.branches or [])


def value_text(v) -> str:
    """A Python value as a resdsl literal."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ImportProblem(f"the value {v} has no resdsl spelling")
        r = repr(v)
        return r if ("." in r or "e" in r) else r + ".0"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value_text(x) for x in v) + "]"
    return str(v)


def _op_call(op) -> Call:
    spec = OPS[op.op]
    first = 1 if spec.params and spec.params[0].default is REQUIRED else 0
    bare = spec.family != "norm"  # `batchnorm()`, as the zoo writes it; `relu`, `flatten`
    return Call(op.op, [(k, v, not is_default(op.op, k, v)) for k, v in op.args], first, bare)


# ----------------------------------------------------------------- statements -> items in module scopes

def _prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    p = paths[0]
    for q in paths[1:]:
        n = 0
        while n < min(len(p), len(q)) and p[n] == q[n]:
            n += 1
        p = p[:n]
    return p


def _scope_of(s: Stmt) -> tuple[str, ...] | None:
    """The module scope a statement belongs to: the common prefix of its layers' paths, kept a strict prefix
    of every path so that each layer keeps its own label; None when it has no labelled layer."""
    if s.kind == "layer":
        return s.op.path[:-1] if s.op.path else (s.op.home or None)
    paths = [o.path for o in s.leaves() if o.path]
    if not paths:
        return None
    p = _prefix(paths)
    return p[:-1] if any(len(q) == len(p) for q in paths) else p


def items(stmts: list[Stmt], scope: tuple[str, ...] = ()) -> list[Item]:
    """Statements inside `scope` -> items; runs of statements under one child module become `child: group`."""
    out: list[Item] = []
    i = 0
    while i < len(stmts):
        sc = _scope_of(stmts[i])
        if sc is None or len(sc) <= len(scope):
            out += _item(stmts[i], scope)
            i += 1
            continue
        child = sc[len(scope)]
        j, last = i, i
        while j < len(stmts):  # unlabelled statements join the run only if it goes on after them
            sj = _scope_of(stmts[j])
            if sj is not None and (len(sj) <= len(scope) or sj[len(scope)] != child):
                break
            if sj is not None:
                last = j
            j += 1
        run, inner = stmts[i:last + 1], scope + (child,)
        made = _item(run[0], inner) if len(run) == 1 and run[0].kind != "layer" and _scope_of(run[0]) == inner else []
        body = items(run, inner) if len(made) != 1 else made
        if len(made) == 1:
            item = made[0]
            item.label = child
        elif len(body) == 1 and body[0].label is None and not body[0].children():
            item = body[0]  # `gate: group { sigmoid }` is `gate: sigmoid` (it owns no weights to name)
            item.label = child
        else:
            item = Item(child, Call("group"), body)
        item.module = ".".join(inner)
        out.append(item)
        i = last + 1
    return out


def _item(s: Stmt, scope: tuple[str, ...]) -> list[Item]:
    """One statement as items: one, except a concat whose branches are not each one module (named tensors)."""
    if s.kind == "layer":
        if s.op.path and s.op.path[:-1] != scope:
            raise AssertionError(f"internal error in import: {'.'.join(s.op.path)} placed in {'.'.join(scope)}")
        return [Item(s.op.path[-1] if s.op.path else None, _op_call(s.op))]
    if s.kind == "dense":
        return [Item(None, Call("dense"), items(s.bodies[0], scope))]
    if s.kind == "parallel":
        return _parallel(s, scope)
    if s.kind == "gate":
        return _named_merge(s, scope, "mul")
    return [_residual(s, scope)]


def _parallel(s: Stmt, scope: tuple[str, ...]) -> list[Item]:
    """`parallel` with each branch labelled by its module (`branch1: branch { conv: ... }`, GoogLeNet); when a
    branch spans several modules (an unlabelled branch would be a scope `branch` of its own), named tensors:
    `-> fork`, branches 2..n each bound, then `from fork`, branch 1 and `concat(...)` in torch's order."""
    labels = []
    for b in s.bodies:
        sc = [_scope_of(x) for x in b]
        sc = [x for x in sc if x is not None]
        child = {x[len(scope)] for x in sc if len(x) > len(scope)}
        labels.append(child.pop() if len(child) == 1 and all(len(x) > len(scope) for x in sc) else None)
    if all(labels) and len(set(labels)) == len(labels):
        return [Item(None, Call("parallel", [("merge", "concat", True)]), branch_labels=labels,
                     branches=[items(b, scope + (c,)) for b, c in zip(s.bodies, labels)])]
    return _named_merge(s, scope, "concat")


def _named_merge(s: Stmt, scope: tuple[str, ...], merge: str) -> list[Item]:
    """A merge of branches from one fork with named tensors: `-> fork`, branches 2..n each computed from
    the fork and bound, then branch 1 and `merge(...)` with the operands in torch's order."""
    n = s.op.id  # the merge's: names are unique and the same on every run
    fork = f"fork{n}"
    stem = {"concat": "cat", "mul": "gate"}[merge]
    names = [f"{stem}{n}_{k}" if b else fork for k, b in enumerate(s.bodies[1:], 1)]
    out = [Item(None, Call(f"-> {fork}"))]
    for b, name in zip(s.bodies[1:], names):
        if b:
            out += items(b, scope) + [Item(None, Call(f"-> {name}")), Item(None, Call(f"from {fork}"))]
    return out + items(s.bodies[0], scope) + [Item(None, Call(f"{merge}({', '.join(names)})"))]


def _residual(s: Stmt, scope: tuple[str, ...]) -> Item:
    branch = s.bodies[0]
    short = s.bodies[1] if len(s.bodies) > 1 else []
    kind, label = "identity", "downsample"
    if short and is_projection(short) and short[0].op.path[:-2] == scope:
        kind, label = "project", short[0].op.path[-2]
    head = Call("residual", [("shortcut", kind, kind != "identity"), ("shortcut_label", label, label != "downsample")])
    custom = items(short, scope) if short and kind == "identity" else None
    return Item(None, head, items(branch, scope), shortcut=custom)


# ----------------------------------------------------------------- blocks

def _signature(it: Item) -> tuple:
    """The layout of an item: labels, heads and argument names, without the argument values."""
    # named-tensor statements (`-> fork21`, `mul(gate21_1)`) match whatever their numbers: in a block the
    # names are the block's own
    name = re.sub(r"\d+", "#", it.call.name) if re.search(r"[ (]", it.call.name) else it.call.name
    return (it.label, name, tuple(a for a, _, _ in it.call.args), it.shortcut is not None,
            tuple(it.branch_labels or ()),
            tuple(tuple(_signature(x) for x in c) for c in it.children()))


def _slots(it: Item, where: str = "block") -> list[tuple[str, str, object]]:
    """(layer label, argument, value) of every argument slot, depth first."""
    here = it.label or where
    out = [(here, a, v) for a, v, _ in it.call.args]
    for c in it.children():
        for x in c:
            out += _slots(x, here)
    return out


def _template(it: Item, exprs: list[str | None], pos: list[int]) -> Item:
    n = len(it.call.args)
    new = Item(it.label, it.call, exprs=exprs[pos[0]:pos[0] + n])
    pos[0] += n
    sub = lambda c: [_template(x, exprs, pos) for x in c] if c is not None else None
    new.body, new.shortcut = sub(it.body), sub(it.shortcut)
    new.branches = [sub(b) for b in it.branches] if it.branches is not None else None
    new.branch_labels = it.branch_labels
    return new


def _as_body(it: Item) -> Item:
    """A scope item as a block body: a group's statements, or the (unlabelled) region itself."""
    if it.call.name == "group":
        return Item(None, Call("group"), it.body)
    return Item(None, Call("group"), [Item(None, it.call, it.body, it.shortcut, it.branches, it.branch_labels)])


def blocks(top: list[Item], classes: dict[str, str]) -> list[str]:
    """Module classes used twice or more with one layout -> block definitions (returned, innermost first);
    their uses in `top` become calls."""
    found: dict[tuple, list[Item]] = defaultdict(list)
    depth: dict[tuple, int] = {}

    def collect(its: list[Item], d: int) -> None:
        for it in its:
            cls = classes.get(it.module)
            if cls is not None and it.label is not None and it.children():
                key = (cls, _signature(_as_body(it)))
                found[key].append(it)
                depth[key] = max(depth.get(key, 0), d)
            for c in it.children():
                collect(c, d + 1)
    collect(top, 0)
    defs: list[str] = []
    used: dict[str, int] = defaultdict(int)
    for key in sorted(found, key=lambda k: -depth[k]):  # inner classes first: outer templates then call them
        uses = found[key]
        if len(uses) < 2:
            continue
        base = _snake(key[0])
        used[base] += 1
        name = base if used[base] == 1 else f"{base}_{used[base]}"
        params, columns, exprs = _parameters([_slots(_as_body(u)) for u in uses])
        order = sorted(range(len(params)), key=lambda i: not all(type(v) is int for v in columns[i]))
        params, columns = [params[i] for i in order], [columns[i] for i in order]  # numbers first
        # every parameter but the first defaults to its most common value; calls write the others
        defaults = [max(col, key=lambda v: (col.count(v), -col.index(v))) for col in columns]
        header = [p if i == 0 else f"{p}={value_text(d)}" for i, (p, d) in enumerate(zip(params, defaults))]
        body = _template(_as_body(uses[0]), exprs, [0]).body
        defs.append("\n".join([f"block {name}({', '.join(header)}) {{"] + render(body, 1) + ["}"]))
        for k, u in enumerate(uses):
            args = [(p, col[k], i == 0 or col[k] != d) for i, (p, col, d) in enumerate(zip(params, columns, defaults))]
            u.call = Call(name, args, positional=1, bare=False)
            u.body = u.shortcut = u.branches = None
    return defs


def _parameters(slots: list[list[tuple[str, str, object]]]) -> tuple[list[str], list[tuple], list[str | None]]:
    """Block parameters from the argument slots that differ between uses: (names, their values per use, the
    expression standing in each slot -- None where all uses agree and the literal stays)."""
    columns = list(zip(*[[v for _, _, v in s] for s in slots]))
    first: dict[tuple, int] = {}  # column (as text) -> parameter index
    picked: list[int] = []  # slot of each parameter
    exprs: list = []
    for k, col in enumerate(columns):
        key = tuple(map(value_text, col))
        if len(set(key)) == 1:
            exprs.append(None)
        elif key in first:
            exprs.append(("param", first[key]))
        else:
            mult = _multiple(col, {i: columns[picked[i]] for i in range(len(picked))})
            if mult is not None:
                exprs.append(("times", *mult))
            else:
                first[key] = len(picked)
                picked.append(k)
                exprs.append(("param", first[key]))
    # a parameter is named after its argument (`channels`, `stride`) when that is unambiguous, else after its
    # layer too (`conv1_channels`), else numbered
    args = [_nice(slots[0][k][1]) for k in picked]
    names: list[str] = []
    for k, arg in zip(picked, args):
        label = slots[0][k][0]
        name = arg if args.count(arg) == 1 else (f"{label}_{arg}" if label.isidentifier() else arg)
        names.append(_unique(name, names))
    text = lambda e: None if e is None else (names[e[1]] if e[0] == "param" else f"{names[e[1]]} {e[2]} {e[3]}")
    return names, [columns[k] for k in picked], [text(e) for e in exprs]


def _nice(arg: str) -> str:
    return {"out_channels": "channels", "out_features": "features"}.get(arg, arg)


def _multiple(col: tuple, known: dict[int, tuple]) -> tuple[int, str, int] | None:
    """(parameter, "*" or "//", k) when a column is k times an earlier parameter's, or it divided by k
    (k > 1, the same for every use): `channels * 4`, `channels // 4`."""
    if not all(type(v) is int for v in col):
        return None
    for i, other in known.items():
        if not all(type(x) is int and x > 0 for x in other) or not all(y > 0 for y in col):
            continue
        if all(y % x == 0 for x, y in zip(other, col)):
            ks = {y // x for x, y in zip(other, col)}
            if len(ks) == 1 and ks != {1}:
                return i, "*", ks.pop()
        if all(x % y == 0 for x, y in zip(other, col)):
            ks = {x // y for x, y in zip(other, col)}
            if len(ks) == 1 and ks != {1}:
                return i, "//", ks.pop()
    return None


def _unique(name: str, taken: list[str]) -> str:
    name = re.sub(r"\W", "_", name)
    if not re.match(r"[A-Za-z_]", name) or name in KEYWORDS:
        name = "p_" + name
    out, k = name, 2
    while out in taken:
        out, k = f"{name}{k}", k + 1
    return out


def _snake(cls: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls).lower()
    s = re.sub(r"\W", "_", s).strip("_") or "block"
    return s + "_block" if s in OPS or s in KEYWORDS else s


# ----------------------------------------------------------------- text

def _loops(its: list[Item]) -> list:
    """Runs of three or more calls `prefix{k}: same(...)` with consecutive k -> one `for` loop."""
    out: list = []
    i = 0
    while i < len(its):
        it = its[i]
        m = re.fullmatch(r"([A-Za-z_]*?)(\d+)", it.label or "")
        if m and not it.children():
            pre, k0, head = m.group(1), int(m.group(2)), it.call.text(it.exprs)
            j = i + 1
            while (j < len(its) and not its[j].children() and its[j].call.text(its[j].exprs) == head
                   and its[j].label == f"{pre}{k0 + j - i}"):
                j += 1
            if j - i >= 3:
                out.append(("for", k0, k0 + j - i, Item(f"{pre}{{i}}" if pre else "{i}", it.call, exprs=it.exprs)))
                i = j
                continue
        out.append(it)
        i += 1
    return out


def render(its: list[Item], depth: int) -> list[str]:
    pad = "    " * depth
    lines: list[str] = []
    for it in _loops(its):
        if isinstance(it, tuple):
            _, a, b, inner = it
            lines.append(f"{pad}for i in {f'range({b})' if a == 0 else f'range({a}, {b})'} {{")
            lines += _render_one(inner, depth + 1)
            lines.append(f"{pad}}}")
        else:
            lines += _render_one(it, depth)
    return lines


def _render_one(it: Item, depth: int) -> list[str]:
    pad = "    " * depth
    if it.call.name == "group" and it.label is not None and it.body and len(it.body) == 1 and it.body[0].label:
        inner = it.body[0]  # `a: group { b: x }` is `a.b: x` (a dotted label opens both scopes)
        return _render_one(Item(f"{it.label}.{inner.label}", inner.call, inner.body, inner.shortcut,
                                inner.branches, inner.branch_labels, exprs=inner.exprs), depth)
    label = f"{it.label}: " if it.label is not None else ""
    head = it.call.text(it.exprs)
    if it.branches is not None:
        lines = [f"{pad}{label}{head} {{"]
        for b, name in zip(it.branches, it.branch_labels or [None] * len(it.branches)):
            lines += [f"{pad}    {name + ': ' if name else ''}branch {{"] + render(b, depth + 2) + [f"{pad}    }}"]
        return lines + [f"{pad}}}"]
    if it.body is None:
        return [f"{pad}{label}{head}"]
    lines = [f"{pad}{label}{head} {{"] + render(it.body, depth + 1)
    if it.shortcut is not None:
        lines += [f"{pad}}} shortcut {{"] + render(it.shortcut, depth + 1)
    return lines + [f"{pad}}}"]

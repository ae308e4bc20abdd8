"""Named input sizes: `input x: [3, H, W] where H % 32 == 0, W == H` (docs/sizes.md).

Reads an `Input` statement of the AST (its shape list and its `where` constraints); writes a
`Sizes` record that the elaborator keeps on the graph and the size analysis
(resdsl/analysis/sizes.py) reads.  A name in an input's shape that is not bound to a value is a
*named size*; the elaborator builds the IR at an example value of it (the caller's, or
`EXAMPLE` moved onto the constraints) and the analysis treats it as a symbol.

Constraints are integer-affine, the forms the exact analysis represents:

  H % 32 == 0, H % 16 == 12    a residue class (any affine size expression on the left)
  W == H, H2 == 2 * H - 1      a tie: one size follows another (one side has coefficient 1)
  H >= 64, H <= 1024           bounds

An input dimension written as an affine expression of known sizes (`input y: [3, 2 * H, W]`)
ties it the same way.  Anything else is refused with a located E014 that says what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from . import syntax as ast
from .diagnostics import ResdslError, error
from .evaluate import names_in
from .span import Span

EXAMPLE = 224  # the example size of a named size nobody gave a value for (documented in docs/sizes.md)
MAX_MODULUS = 1 << 16  # the residue classes of a size are listed one by one (the analysis' own period is 4,096)
FORMS = "`H % 32 == 0`, `W == H`, `H2 == 2 * H + 1`, `H >= 64` or `H <= 1024`"


@dataclass
class Sizes:
    """The named sizes of a network, its ties and constraints, and the example values it was built at."""

    roots: list[tuple[str, str, int, Span]] = field(default_factory=list)  # (name, input, dim, span) in order
    dims: list[tuple[str, int, str, int, int]] = field(default_factory=list)  # (input, dim, root, c, e)
    alias: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # name -> (root, c, e)
    mods: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)  # root -> (modulus, residues)
    bounds: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # root -> (lo, hi)
    values: dict[str, int] = field(default_factory=dict)  # every name -> its example value
    given: set[str] = field(default_factory=set)  # roots whose value the caller gave (not symbolic then)
    text: dict[str, tuple[list, str]] = field(default_factory=dict)  # input -> (dim texts, where text)
    uses: list[tuple[str, Span]] = field(default_factory=list)  # where the body reads a named size

    def symbolic_roots(self) -> list[str]:
        """The sizes left named (not tied to another, no value given by the caller), in order."""
        return [r[0] for r in self.roots if self.alias[r[0]][0] == r[0] and r[0] not in self.given]


def _affine(e: ast.Expr, sizes: Sizes, ev: Callable[[ast.Expr], object]) -> tuple[dict[str, int], int] | None:
    """e as (coefficients per root, constant), or None when e mentions no named size.  Raises E014
    when e mentions one in a way that is not integer-affine (H // 2, H * W)."""
    names = names_in(e) & (set(sizes.alias) | {r[0] for r in sizes.roots})
    if not names:
        return None
    return _lin(e, sizes, ev)


def _lin(e: ast.Expr, sizes: Sizes, ev) -> tuple[dict[str, int], int]:
    known = set(sizes.alias) | {r[0] for r in sizes.roots}
    if not (names_in(e) & known):
        v = ev(e)
        if isinstance(v, bool) or not isinstance(v, int):
            raise error("E014", f"a size expression takes whole numbers, got {v!r}", e.span, hint=f"write {FORMS}")
        return {}, v
    if isinstance(e, ast.Name):
        if e.id in sizes.alias:
            root, c, k = sizes.alias[e.id]
            return {root: c}, k
        return {e.id: 1}, 0
    if isinstance(e, ast.UnaryOp) and e.op in ("-", "+"):
        co, k = _lin(e.operand, sizes, ev)
        return ({n: -c for n, c in co.items()}, -k) if e.op == "-" else (co, k)
    if isinstance(e, ast.BinOp) and e.op in ("+", "-"):
        (a, ka), (b, kb) = _lin(e.left, sizes, ev), _lin(e.right, sizes, ev)
        s = 1 if e.op == "+" else -1
        out = dict(a)
        for n, c in b.items():
            out[n] = out.get(n, 0) + s * c
        return {n: c for n, c in out.items() if c}, ka + s * kb
    if isinstance(e, ast.BinOp) and e.op == "*":
        (a, ka), (b, kb) = _lin(e.left, sizes, ev), _lin(e.right, sizes, ev)
        if a and b:
            raise error("E014", "a product of two sizes is not a constraint resdsl can analyse", e.span,
                        hint=f"write {FORMS}")
        co, k, f = (b, kb, ka) if not a else (a, ka, kb)
        return {n: c * f for n, c in co.items() if c * f}, k * f
    raise error("E014", "a size expression is a sum of sizes times whole numbers", e.span,
                hint=f"write {FORMS}; `//`, `%` and other operations on a size are not affine")


def _text(co: dict[str, int], k: int) -> str:
    parts = []
    for n, c in co.items():
        t = n if abs(c) == 1 else f"{abs(c)} * {n}"
        parts.append(("- " if c < 0 else "+ ") + t if parts else ("-" if c < 0 else "") + t)
    if k or not parts:
        parts.append(f"{'- ' if k < 0 else '+ '}{abs(k)}" if parts else str(k))
    return " ".join(parts)


def declare(s: ast.Input, shape: ast.Expr, is_bound: Callable[[str], bool], ev: Callable[[ast.Expr], object],
            given: tuple | None, sizes: Sizes, scale: int = 1, near: Callable[[str], str | None] = lambda n: None
            ) -> dict[str, int]:
    """Record the named sizes of input statement `s` (shape expression `shape`) in `sizes`, and return
    the values to bind them to: the caller's (`given`, the --input shape) or an example that satisfies
    the constraints (EXAMPLE * scale, moved onto them).  Raises E010 for a name that looks like a typo,
    E014 for a constraint of another form and E042 when the constraints or a given size fail."""
    if not isinstance(shape, ast.ListLit):
        if s.where:
            raise error("E014", "`where` constrains named sizes: write the shape as a list, e.g. [3, H, W]",
                        s.where[0].span)
        return {}
    items = shape.items
    fresh = _fresh(items, is_bound, sizes, near)
    known = set(sizes.alias) | {r[0] for r in sizes.roots}
    if not fresh and not s.where and not any(names_in(it) & known for it in items):
        return {}
    for name, d, span in fresh:
        sizes.roots.append((name, s.name, d, span))
        sizes.alias[name] = (name, 1, 0)
    _unnamed(s, items, is_bound, sizes, ev, near)
    for c in _flatten(s.where):
        _constrain(c, sizes, ev)
    _satisfiable(s, sizes)
    out = _examples(fresh, given, sizes, scale)
    texts = _input_dims(s, items, sizes, ev)
    _check_given(s, items, given, sizes, ev)
    sizes.text[s.name] = (texts, ", ".join(_where_text(c, sizes, ev) for c in _flatten(s.where)))
    return out


def _fresh(items, is_bound, sizes: Sizes, near) -> list[tuple[str, int, Span]]:
    """The new named sizes of a shape list: bare names bound to nothing, in spatial positions."""
    fresh: list[tuple[str, int, Span]] = []
    for d, it in enumerate(items):
        if not isinstance(it, ast.Name) or is_bound(it.id) or it.id in sizes.alias or \
                it.id in {f[0] for f in fresh}:
            continue
        hint = near(it.id) if len(it.id) >= 3 or d == 0 else None  # `sise` for `size`: a typo, not a size
        if d == 0:
            raise error("E010", f"undefined name `{it.id}`", it.span,
                        hint=(hint + "; " if hint else "") + "the channel count is a number or a network "
                        "parameter: only the spatial sizes can be named sizes")
        if hint:
            raise error("E010", f"undefined name `{it.id}`", it.span,
                        hint=f"{hint} (a name bound to nothing in an input shape is a named size; "
                             f"this one looks like a typo)")
        fresh.append((it.id, d, it.span))
    return fresh


def _unnamed(s: ast.Input, items, is_bound, sizes: Sizes, ev, near) -> None:
    """E010 for a size expression (`2 * H + 1`) whose name is not a named size yet, with the rewrite that
    keeps its sizes: the dim named on its own, constrained to the values c * H + e takes for H >= 1."""
    for d, it in enumerate(items):
        if d == 0 or isinstance(it, ast.Name):
            continue
        unknown = sorted(n for n in names_in(it) if not is_bound(n) and n not in sizes.alias)
        if not unknown:
            continue
        for n in unknown:
            typo = near(n)
            if typo:
                raise error("E010", f"undefined name `{n}`", _name_span(it, n) or it.span, hint=typo)
        name = unknown[0]
        span = _name_span(it, name) or it.span
        try:
            co, e = _lin(it, Sizes(alias={**sizes.alias, **{n: (n, 1, 0) for n in unknown}}), ev)
        except ResdslError:  # not affine either: E014 names the form once the size is named
            co, e = {}, 0
        hint = (f"write the dimension as a named size (`{name}`), with `where` constraints for the form it must "
                f"have (a size follows another as c * {name} + e, e.g. `where {name} % 2 == 0`)")
        if len(co) == 1 and name in co and co[name] >= 1 and not any(name in names_in(c) for c in s.where):
            c = co[name]
            where = ([f"{name} % {c} == {e % c}"] if c > 1 else []) + ([f"{name} >= {c + e}"] if c + e > 1 else [])
            text = _text(co, e)
            add = ("" if not where else f" and add `{', '.join(where)}` to its `where`" if s.where else
                   f" and add `where {', '.join(where)}` after the shape")
            hint = f"write the dimension as `{name}`{add}: the sizes {text} takes for {name} >= 1"
        used = f"`{_text(co, e)}`" if co else "an expression"
        raise error("E010", f"undefined name `{name}`: a size used in {used} must be named first", span, hint=hint)


def _name_span(e: ast.Expr, name: str):
    """The span of the first use of `name` in e (the caret goes under it)."""
    todo = [e]
    while todo:
        x = todo.pop(0)
        if isinstance(x, ast.Name) and x.id == name:
            return x.span
        todo += [v for v in vars(x).values() if isinstance(v, ast.Expr)] if hasattr(x, "__dict__") else \
            [getattr(x, f) for f in getattr(x, "__slots__", ()) if isinstance(getattr(x, f, None), ast.Expr)]
    return None


def _satisfiable(s: ast.Input, sizes: Sizes) -> None:
    """E042 when the constraints leave a size no value at all."""
    span = s.where[0].span if s.where else s.span
    for root, (m, res) in sizes.mods.items():
        lo, hi = sizes.bounds.get(root, (1, None))
        if not res or (hi is not None and not any(x % m in res for x in range(lo, min(hi, lo + m - 1) + 1))):
            raise error("E042", f"the size constraints leave no value for {root}", span,
                        hint="drop or loosen one of the `where` constraints")
    for root, (lo, hi) in sizes.bounds.items():
        if hi is not None and hi < lo:
            raise error("E042", f"the size constraints leave no value for {root} ({lo} <= {root} <= {hi})", span,
                        hint="drop or loosen one of the `where` constraints")


def _examples(fresh, given, sizes: Sizes, scale: int) -> dict[str, int]:
    """The value of every named size: given by the caller, or the example moved onto the constraints."""
    for name, d, _ in fresh:
        if sizes.alias[name][0] != name:
            continue  # tied to another size: follows its value
        g = given[d] if given and d < len(given) else None
        g = g if isinstance(g, int) and not isinstance(g, bool) else None
        if g is not None:
            sizes.given.add(name)
            sizes.values[name] = g
        else:
            sizes.values[name] = _example(EXAMPLE * scale, *sizes.mods.get(name, (1, (0,))),
                                          *sizes.bounds.get(name, (1, None)))
    out: dict[str, int] = {}
    for name, (root, c, e) in sizes.alias.items():
        if root in sizes.values:
            out[name] = sizes.values[name] = c * sizes.values[root] + e
    return out


def _input_dims(s: ast.Input, items, sizes: Sizes, ev) -> list:
    """Record which dims of this input follow a named size (c * H + e); their texts for expand."""
    texts: list = []
    for d, it in enumerate(items):
        lin = _affine(it, sizes, ev) if d > 0 else None
        if lin is None:
            texts.append(None)
            continue
        co, k = lin
        if len(co) != 1 or next(iter(co.values())) < 1:
            raise error("E014", "an input dimension follows one named size (c * H + e with c >= 1)", it.span,
                        hint=f"e.g. [3, 2 * H, W]; tie two sizes with `where`: {FORMS}")
        (root, c), = co.items()
        sizes.dims.append((s.name, d, root, c, k))
        texts.append(_text(co, k) if not isinstance(it, ast.Name) else it.id)
    return texts


def _flatten(cs) -> list:
    out = []
    for c in cs:
        todo = [c]
        while todo:
            x = todo.pop(0)
            if isinstance(x, ast.BinOp) and x.op == "and":
                todo = [x.left, x.right] + todo
            else:
                out.append(x)
    return out


_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "=="}


def _constrain(c: ast.Expr, sizes: Sizes, ev) -> None:
    """Add one constraint to `sizes` (a residue class, a tie or a bound)."""
    bad = error("E014", "a size constraint compares sizes", c.span, hint=f"write {FORMS}")
    if not isinstance(c, ast.BinOp) or c.op not in _FLIP:
        raise bad
    left, right, op = c.left, c.right, c.op
    for a, b in ((left, right), (right, left)):
        if op == "==" and isinstance(a, ast.BinOp) and a.op == "%":  # a residue class: expr % m == r
            lin = _lin(a.left, sizes, ev)
            m, r = _lin(a.right, sizes, ev), _lin(b, sizes, ev)
            if len(lin[0]) != 1 or m[0] or r[0] or m[1] < 1:
                raise error("E014", "a residue constraint is `size % m == r` with whole numbers m >= 1 and r",
                            c.span, hint="e.g. H % 32 == 0 or H % 16 == 12")
            (root, coef), = lin[0].items()
            m, r = m[1], r[1]
            if not 0 <= r < m:  # `H % 4 == 7`: a remainder mod 4 is 0..3, so this never holds
                raise error("E042", f"this size constraint never holds: a remainder mod {m} is 0 to {m - 1}",
                            b.span, hint=f"write a remainder from 0 to {m - 1} (e.g. {r % m})")
            M0, r0 = sizes.mods.get(root, (1, (0,)))
            L = _modulus(math.lcm(M0, m), c.span)
            res = tuple(x for x in range(m) if (coef * x + lin[1] - r) % m == 0)
            both = tuple(x for x in range(L) if x % M0 in r0 and x % m in res)
            sizes.mods[root] = (L, both)
            return
    (a, ka), (b, kb) = _lin(left, sizes, ev), _lin(right, sizes, ev)
    co = dict(a)
    for n, x in b.items():
        co[n] = co.get(n, 0) - x
    co = {n: x for n, x in co.items() if x}
    k = ka - kb  # the constraint: sum co[n] * n + k  (op)  0
    if not co:
        if not {"==": k == 0, "<": k < 0, ">": k > 0, "<=": k <= 0, ">=": k >= 0}.get(op, False):
            raise error("E042", "this size constraint never holds", c.span,
                        hint="check the precedence: `%` binds tighter than `+`, e.g. (2 * H + 1) % 4 == 1")
        return
    if len(co) == 2 and op == "==":  # a tie: the later-declared size follows the earlier one
        order = [r[0] for r in sizes.roots]
        later, earlier = sorted(co, key=order.index, reverse=True)
        if abs(co[later]) != 1:
            later, earlier = earlier, later
        if abs(co[later]) != 1 or (-co[earlier] * co[later]) < 1:
            raise error("E014", "a tie between sizes is `W == c * H + e` with a whole c >= 1", c.span,
                        hint="e.g. W == H or H2 == 2 * H - 1")
        cl = co[later]
        f, e = -co[earlier] * cl, -k * cl  # later = f * earlier + e
        for n, (root, c2, e2) in list(sizes.alias.items()):
            if root == later:
                sizes.alias[n] = (earlier, c2 * f, c2 * e + e2)
        sizes.dims[:] = [(i, d, earlier, c2 * f, c2 * e + e2) if root == later else (i, d, root, c2, e2)
                         for i, d, root, c2, e2 in sizes.dims]
        _move_constraints(sizes, later, earlier, f, e, c.span)
        return
    if len(co) != 1:
        raise error("E014", "a size constraint relates at most two sizes", c.span, hint=f"write {FORMS}")
    (root, x), = co.items()
    if op == "==":  # x * root + k == 0: one size
        if (-k) % x or -k // x < 1:
            raise error("E042", "this size constraint never holds for a size >= 1", c.span,
                        hint="check the precedence: `%` binds tighter than `+`, e.g. (2 * H + 1) % 4 == 1")
        lo = hi = -k // x
    else:
        if x < 0:
            x, k, op = -x, -k, _FLIP[op]
        # x * root + k (op) 0
        lo, hi = 1, None
        if op in (">", ">="):
            lo = -(k // x) if op == ">=" else (-k) // x + 1
        else:
            hi = (-k - 1) // x if op == "<" else (-k) // x
    old_lo, old_hi = sizes.bounds.get(root, (1, None))
    new_hi = hi if old_hi is None else (old_hi if hi is None else min(hi, old_hi))
    sizes.bounds[root] = (max(old_lo, lo), new_hi)


def _modulus(L: int, span: Span) -> int:
    """E040 for residue classes too fine to list (`H % 10**18 == 3`, two coprime moduli of 10**6)."""
    if L > MAX_MODULUS:
        raise error("E040", f"the size constraints need residues mod {L}; at most {MAX_MODULUS} are supported",
                    span, hint=f"use moduli whose least common multiple is at most {MAX_MODULUS} "
                    "(strides are powers of two or small numbers: e.g. H % 32 == 0)")
    return L


def _move_constraints(sizes: Sizes, later: str, earlier: str, f: int, e: int, span: Span) -> None:
    """`later` = f * earlier + e: its residue class and bounds become constraints on `earlier`."""
    if later in sizes.mods:
        m, res = sizes.mods.pop(later)
        mine = tuple(x for x in range(m) if (f * x + e) % m in res)
        M0, r0 = sizes.mods.get(earlier, (1, (0,)))
        L = _modulus(math.lcm(M0, m), span)
        sizes.mods[earlier] = (L, tuple(x for x in range(L) if x % M0 in r0 and x % m in mine))
    if later in sizes.bounds:
        lo, hi = sizes.bounds.pop(later)
        lo2 = -((e - lo) // f)  # f * X + e >= lo
        hi2 = None if hi is None else (hi - e) // f
        old_lo, old_hi = sizes.bounds.get(earlier, (1, None))
        new_hi = hi2 if old_hi is None else (old_hi if hi2 is None else min(hi2, old_hi))
        sizes.bounds[earlier] = (max(old_lo, lo2), new_hi)


def _example(v: int, m: int, residues: tuple[int, ...], lo: int, hi: int | None) -> int:
    """The smallest size >= max(v, lo) on one of the residues mod m; below v when hi requires it."""
    if not residues:
        return max(v, lo)
    start = max(v, lo)
    best = min(start + ((r - start) % m) for r in residues)
    if hi is not None and best > hi:
        cands = [x for x in range(max(lo, hi - m + 1), hi + 1) if x % m in residues]
        best = cands[-1] if cands else best
    return best


def _check_given(s: ast.Input, items, given, sizes: Sizes, ev) -> None:
    """A size the caller gave must satisfy the constraints (E042 names the first one it breaks)."""
    if not given:
        return
    for inp, d, root, c, e in sizes.dims:
        if inp != s.name or d >= len(given) or not isinstance(given[d], int) or root not in sizes.values:
            continue
        v, X = given[d], sizes.values[root]
        m, res = sizes.mods.get(root, (1, (0,)))
        lo, hi = sizes.bounds.get(root, (1, None))
        why = None
        if v != c * X + e:
            why = (f"it must equal {root} = {X}" if (c, e) == (1, 0) else
                   f"it must be {_text({root: c}, e)} = {c * X + e} with {root} = {X}")
        elif X % m not in res:
            why = f"{root} must be {' or '.join(map(str, res))} mod {m}"
        elif X < lo or (hi is not None and X > hi):
            why = f"{root} must be at least {lo}" + (f" and at most {hi}" if hi is not None else "")
        if why:
            ok = [x for x in range(max(lo, X - m), X + m + 1) if x % m in res and (hi is None or x <= hi)]
            near = [x for x in (max((x for x in ok if x < X), default=None),
                                min((x for x in ok if x > X), default=None)) if x is not None]
            raise error("E042", f"input `{s.name}` dimension {d} = {v} breaks its size constraints: {why}",
                        items[d].span if d < len(items) else s.span,
                        hint=(f"the nearest values of {root} that satisfy them: {' and '.join(map(str, near))}; "
                              if near and _follows(v, c, X, e) else "") +
                        "give sizes that satisfy the `where` constraints, or leave them named "
                        "(`resdsl check FILE --sizes` lists the valid ones)")


def _follows(v: int, c: int, X: int, e: int) -> bool:
    """The given size follows its tie (only the root's own constraints are broken)."""
    return v == c * X + e


def _where_text(c: ast.Expr, sizes: Sizes, ev) -> str:
    """A constraint as normalised source text (expand prints it; it parses back to the same constraint)."""
    def side(x):
        if isinstance(x, ast.BinOp) and x.op == "%":
            return f"{_raw(x.left, sizes, ev, 3)} % {_lin(x.right, sizes, ev)[1]}"
        return _raw(x, sizes, ev)
    return f"{side(c.left)} {c.op} {side(c.right)}" if isinstance(c, ast.BinOp) else "?"


_PREC = {"+": 1, "-": 1, "*": 2}


def _raw(x, sizes, ev, outer: int = 0, right: bool = False) -> str:
    """An affine expression in the names as written (not resolved to roots), parenthesised as needed
    inside an operator of precedence `outer` (3: the left of `%`)."""
    if not (names_in(x) & (set(sizes.alias) | {r[0] for r in sizes.roots})):
        v = ev(x)
        return f"({v})" if v < 0 and outer else str(v)
    if isinstance(x, ast.Name):
        return x.id
    if isinstance(x, ast.UnaryOp):
        return f"{x.op}{_raw(x.operand, sizes, ev, 3)}"
    p = _PREC.get(x.op, 0)
    text = f"{_raw(x.left, sizes, ev, p)} {x.op} {_raw(x.right, sizes, ev, p, True)}"
    return f"({text})" if p < outer or (right and p == outer and p == 1) else text


def body_uses(stmts, names: set[str], skip: ast.Input | None = None) -> list[tuple[str, Span]]:
    """Where a network body reads a named size outside the input statements (the structure may then
    depend on the size: `if H > 64 { ... }`, `conv(H // 8, 3)`).  Syntactic and conservative: a name
    rebound by an assignment still counts."""
    out: list[tuple[str, Span]] = []
    todo = list(stmts)
    while todo:
        x = todo.pop()
        if isinstance(x, ast.Input):
            continue
        if isinstance(x, ast.Name) and x.id in names:
            out.append((x.id, x.span))
            continue
        if isinstance(x, (tuple, list)):
            todo += list(x)
            continue
        fields = getattr(x, "__dataclass_fields__", None)
        if fields:
            todo += [getattr(x, f) for f in fields if f != "span"]
    return sorted(out, key=lambda u: (u[1].line, u[1].col))

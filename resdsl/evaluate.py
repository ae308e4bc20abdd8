"""Compile-time expressions: values, builtins and the evaluator.

Reads `syntax.Expr`; produces plain immutable Python values (int, float,
bool, str, None, tuple for lists, `FrozenDict`) or `Tensor` references.
Nothing is ever passed to Python's eval; every operation is checked against
the resource limits so no expression can take unbounded time or memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, get_args

from . import syntax as ast
from .diagnostics import ResdslError, did_you_mean, error
from .span import Span, lookup

MAX_INT = 10**18  # integers beyond this are refused (E040)
MAX_ITEMS = 1_000_000  # longest list or range


@dataclass(frozen=True, slots=True)
class Tensor:
    """A reference to an IR node's output, as seen by expressions."""

    node: int
    shape: tuple[int, ...] | None  # None: poisoned by an earlier error

    def __repr__(self) -> str:
        return f"tensor{list(self.shape) if self.shape else ''}"


class FrozenDict(dict):
    def __hash__(self):  # pragma: no cover - values are only compared
        return hash(tuple(sorted(self.items(), key=repr)))

    def _ro(self, *a, **k):
        raise TypeError("read-only")

    __setitem__ = __delitem__ = update = pop = clear = setdefault = _ro

    def __reduce__(self):  # pickle's default refills a dict subclass item by item, which is refused here
        return FrozenDict, (dict(self),)


def type_name(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if v is None:
        return "none"
    return {int: "int", float: "float", str: "string", tuple: "list", FrozenDict: "dict", Tensor: "tensor"}.get(
        type(v), type(v).__name__)


def show(v: object) -> str:
    """Format a value as .res source text (used by expand and messages)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r or "inf" in r or "nan" in r) else r + ".0"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{show(k)}: {show(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _check_int(v: object, span: Span) -> object:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
        raise error("E040", f"integer {'too large' if v > 0 else 'too small'} (limit is 10**18)", span,
                    hint="sizes and counts in a network are far smaller; check the expression")
    if isinstance(v, float) and not math.isfinite(v):
        raise error("E041", f"expression gives {v}", span, hint="check for overflow or division by zero")
    return v


def deep_size(v: object, cap: int = MAX_ITEMS) -> int:
    """Items in a value counting nested lists and dicts; stops counting soon after `cap`."""
    n, stack = 0, [v]
    while stack and n <= cap:
        x = stack.pop()
        if isinstance(x, (tuple, FrozenDict)):
            items = tuple(x.values()) if isinstance(x, FrozenDict) else x
            n += len(items)
            stack.extend(i for i in items if isinstance(i, (tuple, FrozenDict)))
    return n


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Evaluator:
    """Evaluates expressions in an environment (a chain of dicts)."""

    def __init__(self, lookup: Callable[[str, Span], object], names: Callable[[], list[str]],
                 charge: Callable[[int, Span], None] | None = None, env: dict | None = None,
                 undefined: object = None):
        self.lookup = lookup  # raises E010 with did-you-mean when a name is unknown
        self.names = names
        self.charge = charge or (lambda n, span: None)  # counts work against Limits.max_steps
        # `env`, if given, is the first dict `lookup` looks in, and what it returns from there unless it is
        # `undefined`: compiled names read it directly and call `lookup` for everything else
        self.env, self.undefined = env, undefined

    def _built(self, v: object, span: Span) -> object:
        """Bound every list a program builds: at most MAX_ITEMS items counting nested
        lists (`[[0] * 10**6] * 10**6` is refused), and its size is charged as work."""
        if isinstance(v, (tuple, FrozenDict)):
            n = deep_size(v)
            if n > MAX_ITEMS:
                raise error("E040", f"a list with more than {MAX_ITEMS} items (counting nested lists)", span,
                            hint="networks need far smaller tables; check the expression")
            self.charge(n, span)
        elif isinstance(v, str):
            self.charge(len(v) // 64, span)
        return v

    def __call__(self, e: ast.Expr) -> object:
        return self.eval(e)

    def eval(self, e: ast.Expr) -> object:
        c = _COMPILED.get(id(e))
        if c is None or c[0] is not e:  # the first evaluation walks the tree; a second one compiles it
            _seen(e)
            return _RULES[type(e)](self, e)  # the method named after the expression's class: _Const, _Name, ...
        f = c[1]
        if f is None:
            f = _compiled_entry(e)[1]
        return f(self)  # = _RULES[type(e)](self, e): see `compile_expr`

    def _Const(self, e: ast.Const):
        v = e.value
        if type(v) is int and -MAX_INT <= v <= MAX_INT:  # the common case, without _check_int's calls
            return v
        return _check_int(v, e.span)

    def _Name(self, e: ast.Name):
        return self.lookup(e.id, e.span)

    def _ListLit(self, e: ast.ListLit):
        return self._built(tuple(self.eval(x) for x in e.items), e.span)

    def _DictLit(self, e: ast.DictLit):
        d = {}
        for k, v in e.pairs:
            key = self.eval(k)
            if isinstance(key, (tuple, FrozenDict, Tensor)):
                raise error("E015", f"a {type_name(key)} cannot be a dict key", k.span, hint="use ints, strings or bools")
            d[key] = self.eval(v)
        return self._built(FrozenDict(d), e.span)

    def _Cond(self, e: ast.Cond):
        return self.eval(e.then) if self._truth(self.eval(e.test), e.test.span) else self.eval(e.other)

    def _truth(self, v: object, span: Span) -> bool:
        if isinstance(v, Tensor):
            raise error("E015", "a tensor has no truth value", span)
        return bool(v)

    def _UnaryOp(self, e: ast.UnaryOp):
        v = self.eval(e.operand)
        if e.op == "not":
            return not self._truth(v, e.operand.span)
        if not _num(v):
            raise error("E015", f"unary `{e.op}` needs a number, got {type_name(v)}", e.span)
        return -v if e.op == "-" else v

    def _BinOp(self, e: ast.BinOp):
        if e.op == "and":
            left = self.eval(e.left)
            return self.eval(e.right) if self._truth(left, e.left.span) else left
        if e.op == "or":
            left = self.eval(e.left)
            return left if self._truth(left, e.left.span) else self.eval(e.right)
        a, b = _RULES[type(e.left)](self, e.left), _RULES[type(e.right)](self, e.right)  # = self.eval, inlined
        if e.op in ("==", "!="):  # comparing lists walks them
            self.charge(deep_size(a) + deep_size(b), e.span)
        v = binop(e.op, a, b, e.span)
        if type(v) is int and -MAX_INT <= v <= MAX_INT:  # an in-range int: nothing for _check_int or _built to do
            return v
        return self._built(_check_int(v, e.span), e.span)

    def _Index(self, e: ast.Index):
        obj, idx = self.eval(e.obj), self.eval(e.index)
        if isinstance(obj, FrozenDict):
            if idx not in obj or isinstance(idx, bool) != isinstance(next(iter(obj), idx), bool):
                keys = ", ".join(show(k) for k in list(obj)[:12])
                raise error("E014", f"key {show(idx)} is not in the dict", e.index.span, hint=f"the keys are {keys}")
            return obj[idx]
        if isinstance(obj, (tuple, str)):
            if not isinstance(idx, int) or isinstance(idx, bool):
                raise error("E015", f"list index must be an int, got {type_name(idx)}", e.index.span)
            if not -len(obj) <= idx < len(obj):
                raise error("E014", f"index {idx} is out of range for a list of length {len(obj)}", e.index.span)
            return obj[idx]
        raise error("E015", f"a {type_name(obj)} cannot be indexed", e.obj.span)

    def _Attr(self, e: ast.Attr):
        obj = self.eval(e.obj)
        if isinstance(obj, Tensor) and obj.shape is not None:
            if e.name == "shape":
                return tuple(obj.shape)
            if e.name == "channels":
                return obj.shape[0]
        if isinstance(obj, Tensor) and obj.shape is None:
            raise _Poisoned()
        raise error("E015", f"a {type_name(obj)} has no attribute `{e.name}`", e.span,
                    hint="tensors have `.shape` and `.channels`")

    def interpolate(self, parts: tuple) -> str:
        """The text of a label or interpolated name: literal parts, and expression parts that give an
        int or a string."""
        text = ""
        for part in parts:
            if isinstance(part, str):
                text += part
                continue
            if isinstance(part, ast.RangePart):
                raise error("E019", "`{a..b}` names several tensors, and this place takes one name", part.span,
                            hint="ranges belong in `split(n) -> x{1..n}` and in merges' arguments: concat(y{1..n})")
            v = self.eval(part)
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise error("E019", f"a label part must be an int or a string, got {type_name(v)}", part.span)
            text += str(v)
        return text

    def expand_names(self, parts: tuple, span: Span) -> tuple[str, ...]:
        """The names a template stands for: one, or one per value of its `{a..b}` range (inclusive)."""
        ranges = [i for i, p in enumerate(parts) if isinstance(p, ast.RangePart)]
        if not ranges:
            names = (self.interpolate(parts),)
        elif len(ranges) > 1:
            raise error("E019", "a name can hold one `{a..b}` range", span)
        else:
            i = ranges[0]
            lo, hi = self.eval(parts[i].lo), self.eval(parts[i].hi)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)):
                raise error("E019", f"a range's ends must be ints, got {type_name(lo)} and {type_name(hi)}", span)
            if hi - lo + 1 > MAX_ITEMS:
                raise error("E040", f"`{{{lo}..{hi}}}` names more than {MAX_ITEMS} tensors", span)
            self.charge(max(hi - lo + 1, 0), span)
            names = tuple(self.interpolate(parts[:i] + (str(v),) + parts[i + 1:]) for v in range(lo, hi + 1))
        for name in names:
            if not name.isidentifier():
                raise error("E019", f"invalid tensor name `{name}`", span,
                            hint="a tensor name starts with a letter or underscore, e.g. skip{i}")
        return names

    def _Interp(self, e: ast.Interp):
        names = self.expand_names(e.parts, e.span)
        if any(isinstance(p, ast.RangePart) for p in e.parts):  # y{1..4}: the tensors y1, y2, y3, y4
            return tuple(self.lookup(n, e.span) for n in names)
        return self.lookup(names[0], e.span)

    def _Call(self, e: ast.Call):
        fn = BUILTINS.get(e.func)
        if fn is None:
            raise error("E010", f"unknown function `{e.func}`", e.span,
                        hint=did_you_mean(e.func, BUILTINS) or f"the functions are {', '.join(sorted(BUILTINS))}")
        if any(a.name is not None for a in e.args):
            bad = next(a for a in e.args if a.name is not None)
            raise error("E013", f"`{e.func}` takes no keyword arguments", bad.span)
        args = [self.eval(a.value) for a in e.args]
        if e.func == "str":  # formatting walks the whole value
            self.charge(sum(deep_size(a) for a in args), e.span)
        try:
            return self._built(_check_int(fn(*args), e.span), e.span)
        except _BuiltinError as err:
            raise error(err.code, f"{e.func}(): {err}", e.span, hint=err.hint) from None


# Expression class -> Evaluator method, looked up once here rather than by name at every evaluation.
_RULES = {cls: getattr(Evaluator, "_" + cls.__name__) for cls in get_args(ast.Expr)}


# ---------------------------------------------------------------- compiled expressions
#
# Each expression is turned once into a Python closure that does what the Evaluator's method for it does,
# step for step: the same evaluation order, checks, charges, errors and spans.  The closures are built from
# the AST's structure (no text is ever compiled or eval'ed); what they save is the dispatch on the node's
# class at every evaluation and the checks a constant or an int operation never needs.  Expression kinds
# without a closure of their own call their Evaluator method (which evaluates its parts through here).

_MISSING = object()
_COMPILED: dict[int, tuple] = {}  # id(expression) -> (expression, closure); the expression is held
_COMPILED_KEPT = 16384  # expressions of files loaded since; more and the table starts again (bounded memory)


def _seen(e: ast.Expr) -> None:
    """Remember an expression evaluated once: compiling costs more than one evaluation, and most
    expressions outside loops and blocks are evaluated once (in a file parsed anew, its objects are new)."""
    if len(_COMPILED) >= _COMPILED_KEPT:
        _COMPILED.clear()
    _COMPILED[id(e)] = (e, None)


def _compiled_entry(e: ast.Expr) -> tuple:
    if len(_COMPILED) >= _COMPILED_KEPT:
        _COMPILED.clear()
    entry = _COMPILED[id(e)] = (e, compile_expr(e))
    return entry


def compile_expr(e: ast.Expr) -> Callable[[Evaluator], object]:
    """A closure `f(ev)` that evaluates `e` with the Evaluator `ev` exactly as `ev.eval(e)` does."""
    t = type(e)
    if t is ast.Const:
        v = e.value
        if type(v) is int and -MAX_INT <= v <= MAX_INT:
            return lambda ev: v
        span = e.span
        return lambda ev: _check_int(v, span)
    if t is ast.Name:
        name, span = e.id, e.span

        def read(ev: Evaluator) -> object:
            env = ev.env
            if env is not None:
                v = env.get(name, _MISSING)
                if v is not _MISSING and v is not ev.undefined:
                    return v
            return ev.lookup(name, span)
        return read
    if t is ast.BinOp:
        return _compile_binop(e)
    if t is ast.UnaryOp:
        return _compile_unary(e)
    if t is ast.Cond:
        test, then, other, tspan = compile_expr(e.test), compile_expr(e.then), compile_expr(e.other), e.test.span
        return lambda ev: then(ev) if ev._truth(test(ev), tspan) else other(ev)
    if t is ast.ListLit:
        items, span = tuple(compile_expr(x) for x in e.items), e.span
        return lambda ev: ev._built(tuple([f(ev) for f in items]), span)
    rule = _RULES[t]
    return lambda ev: rule(ev, e)


_INT_OPS = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__}  # int op int: no check but the range
_INT_COMPARE = {"<": int.__lt__, "<=": int.__le__, ">": int.__gt__, ">=": int.__ge__}


def _compile_binop(e: ast.BinOp) -> Callable[[Evaluator], object]:
    """`Evaluator._BinOp`, with shortcuts where both operands are ints (or, for == and !=, both ints or
    both strings): the general path would find nothing to charge (deep_size of either is 0, and the step
    count never exceeds the limit without stopping) and nothing to check but the result's range."""
    op, span = e.op, e.span
    left, right, lspan = compile_expr(e.left), compile_expr(e.right), e.left.span
    if op == "and":
        return lambda ev: (lambda a: right(ev) if ev._truth(a, lspan) else a)(left(ev))
    if op == "or":
        return lambda ev: (lambda a: a if ev._truth(a, lspan) else right(ev))(left(ev))

    def general(ev: Evaluator, a: object, b: object) -> object:
        if op == "==" or op == "!=":  # comparing lists walks them
            ev.charge(deep_size(a) + deep_size(b), span)
        v = binop(op, a, b, span)
        if type(v) is int and -MAX_INT <= v <= MAX_INT:
            return v
        return ev._built(_check_int(v, span), span)

    fast = _INT_OPS.get(op)
    if fast is not None:
        def arith(ev: Evaluator) -> object:
            a, b = left(ev), right(ev)
            if type(a) is int and type(b) is int:
                v = fast(a, b)
                if -MAX_INT <= v <= MAX_INT:
                    return v
            return general(ev, a, b)
        return arith
    if op == "//" or op == "%":
        fast = int.__floordiv__ if op == "//" else int.__mod__

        def divide(ev: Evaluator) -> object:
            a, b = left(ev), right(ev)
            if type(a) is int and type(b) is int and b != 0:
                v = fast(a, b)
                if -MAX_INT <= v <= MAX_INT:
                    return v
            return general(ev, a, b)
        return divide
    compare = _INT_COMPARE.get(op)
    if compare is not None:
        def order(ev: Evaluator) -> object:
            a, b = left(ev), right(ev)
            if type(a) is int and type(b) is int:
                return compare(a, b)
            return general(ev, a, b)
        return order
    if op == "==" or op == "!=":
        same = op == "=="

        def equal(ev: Evaluator) -> object:
            a, b = left(ev), right(ev)
            ta = type(a)
            if ta is type(b) and (ta is int or ta is str):
                return (a == b) is same
            return general(ev, a, b)
        return equal
    return lambda ev: general(ev, left(ev), right(ev))


def _compile_unary(e: ast.UnaryOp) -> Callable[[Evaluator], object]:
    """`Evaluator._UnaryOp`."""
    op, span, ospan, operand = e.op, e.span, e.operand.span, compile_expr(e.operand)
    if op == "not":
        return lambda ev: not ev._truth(operand(ev), ospan)

    def sign(ev: Evaluator) -> object:
        v = operand(ev)
        if not _num(v):
            raise error("E015", f"unary `{op}` needs a number, got {type_name(v)}", span)
        return -v if op == "-" else v
    return sign


class _Poisoned(Exception):
    """An expression used a tensor whose shape is unknown after an earlier error."""


class _BuiltinError(Exception):
    def __init__(self, message: str, code: str = "E015", hint: str | None = None):
        super().__init__(message)
        self.code, self.hint = code, hint


def binop(op: str, a: object, b: object, span: Span) -> object:
    if op in ("==", "!="):
        eq = a == b and type_name(a) == type_name(b) or (_num(a) and _num(b) and a == b)
        return eq if op == "==" else not eq
    if op in ("<", "<=", ">", ">="):
        if not ((_num(a) and _num(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise error("E015", f"cannot compare {type_name(a)} and {type_name(b)} with `{op}`", span)
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
        if len(a) + len(b) > MAX_ITEMS:
            raise error("E040", f"list of {len(a) + len(b)} items is too long (limit {MAX_ITEMS})", span,
                        hint="networks need far smaller tables; check the expression")
        return a + b
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > 10_000:
            raise error("E040", "string of more than 10000 characters", span,
                        hint="strings in .res files are names and options; check the expression")
        return a + b
    if op == "*" and isinstance(a, tuple) and isinstance(b, int) and not isinstance(b, bool):
        if len(a) * max(b, 0) > MAX_ITEMS:
            raise error("E040", f"list of {len(a) * b} items is too long (limit {MAX_ITEMS})", span,
                        hint="networks need far smaller tables; check the expression")
        return a * b
    if not (_num(a) and _num(b)):
        hint = None
        if {type_name(a), type_name(b)} <= {"int", "float", "string"} and op == "+":
            hint = "convert first: str(n) turns a number into text"
        elif "none" in (type_name(a), type_name(b)):
            hint = "a parameter or variable is `none` here; give it a value (e.g. --set NAME=VALUE)"
        elif "tensor" in (type_name(a), type_name(b)):
            hint = "tensors are combined with layers (add(t), concat(t)); use t.channels or t.shape for numbers"
        raise error("E015", f"unsupported operand types for `{op}`: {type_name(a)} and {type_name(b)}", span,
                    hint=hint)
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "//":
            return a // b
        if op == "%":
            return a % b
        if op == "**":
            if isinstance(a, int) and isinstance(b, int):
                if b < 0:
                    return float(a) ** b
                if abs(a) > 1 and b * math.log2(abs(a)) > 62:
                    raise error("E040", f"{a} ** {b} is too large (limit is 10**18)", span,
                                hint="integers in .res files stay below 10**18")
            return a ** b
    except ZeroDivisionError:
        raise error("E041", "division by zero", span, hint=f"the right operand of `{op}` evaluates to 0") from None
    except OverflowError:
        raise error("E041", f"`{op}` overflows", span) from None
    raise AssertionError(f"internal error: operator {op}")


def _ints(*xs) -> None:
    for x in xs:
        if not isinstance(x, int) or isinstance(x, bool):
            raise _BuiltinError(f"expected an int, got {type_name(x)}")


def _range(*args):
    if not 1 <= len(args) <= 3:
        raise _BuiltinError("takes 1 to 3 ints", "E013")
    _ints(*args)
    if len(args) == 3 and args[2] == 0:
        raise _BuiltinError("the step must not be zero", "E014")
    r = range(*args)
    if len(r) > MAX_ITEMS:
        raise _BuiltinError(f"{len(r)} iterations exceed the limit of {MAX_ITEMS}", "E040")
    return tuple(r)


def _seq(fn):
    def call(*args):
        items = args[0] if len(args) == 1 and isinstance(args[0], tuple) else args
        if not items:
            raise _BuiltinError("needs at least one value", "E013")
        if not all(_num(x) for x in items):
            raise _BuiltinError("needs numbers")
        return fn(items)
    return call


def _one_num(fn):
    def call(*args):
        if len(args) != 1 or not _num(args[0]):
            raise _BuiltinError("takes one number", "E013")
        return fn(args[0])
    return call


def _sqrt(x):
    if x < 0:
        raise _BuiltinError("square root of a negative number", "E041")
    return math.sqrt(x)


def _len(*args):
    if len(args) != 1 or not isinstance(args[0], (tuple, str, FrozenDict)):
        raise _BuiltinError("takes one list, string or dict", "E013")
    return len(args[0])


def _shape(*args):
    if len(args) != 1 or not isinstance(args[0], Tensor):
        raise _BuiltinError("takes one tensor", "E013")
    if args[0].shape is None:
        raise _Poisoned()
    return tuple(args[0].shape)


def _str(*args):
    if len(args) != 1 or isinstance(args[0], (Tensor, FrozenDict)):
        raise _BuiltinError("takes one value", "E013")
    return show(args[0]) if not isinstance(args[0], str) else args[0]


def _enumerate(*args):
    if len(args) != 1 or not isinstance(args[0], tuple):
        raise _BuiltinError("takes one list", "E013")
    return tuple((i, v) for i, v in enumerate(args[0]))


def _int(x):
    try:
        return int(x)
    except (OverflowError, ValueError):
        raise _BuiltinError(f"cannot convert {x} to int", "E041") from None


BUILTINS: Mapping[str, Callable] = {
    "min": _seq(min),
    "max": _seq(max),
    "sum": _seq(lambda xs: sum(xs)),
    "sqrt": _one_num(_sqrt),
    "abs": _one_num(abs),
    "int": _one_num(_int),
    "float": _one_num(float),
    "round": _one_num(lambda x: _int(round(x))),
    "floor": _one_num(lambda x: _int(math.floor(x))),
    "ceil": _one_num(lambda x: _int(math.ceil(x))),
    "log2": _one_num(lambda x: math.log2(x) if x > 0 else (_ for _ in ()).throw(_BuiltinError("log of a non-positive number", "E041"))),
    "range": _range,
    "len": _len,
    "shape": _shape,
    "str": _str,
    "enumerate": _enumerate,
}


# ---------------------------------------------------------------- assertions

_COMPARE = ("==", "!=", "<", "<=", ">", ">=")


def names_in(e: ast.Expr | None) -> set[str]:
    """Every name an expression reads."""
    out: set[str] = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, ast.Name):
            out.add(x.id)
        elif isinstance(x, (ast.BinOp,)):
            stack += [x.left, x.right]
        elif isinstance(x, ast.UnaryOp):
            stack.append(x.operand)
        elif isinstance(x, ast.Cond):
            stack += [x.test, x.then, x.other]
        elif isinstance(x, ast.Call):
            stack += [a.value for a in x.args]
        elif isinstance(x, (ast.Index,)):
            stack += [x.obj, x.index]
        elif isinstance(x, ast.Attr):
            stack.append(x.obj)
        elif isinstance(x, ast.ListLit):
            stack += list(x.items)
        elif isinstance(x, ast.DictLit):
            stack += [v for kv in x.pairs for v in kv]
        elif isinstance(x, ast.Interp):
            stack += [p for p in x.parts if not isinstance(p, str)]
        elif isinstance(x, ast.RangePart):
            stack += [x.lo, x.hi]
    return out


def source_text(span: Span) -> str:
    """The text a span covers, if its source is known."""
    src = lookup(span.file)
    return src.text[span.start:span.end] if src is not None and span.end > span.start else "the condition"


def _operands(e: ast.Expr) -> list[ast.Expr]:
    """The sub-expressions whose values explain a failed condition: the non-constant sides of
    every comparison, through and / or / not; a bare condition explains itself."""
    if isinstance(e, ast.BinOp) and e.op in ("and", "or"):
        return _operands(e.left) + _operands(e.right)
    if isinstance(e, ast.UnaryOp) and e.op == "not":
        return _operands(e.operand)
    if isinstance(e, ast.BinOp) and e.op in _COMPARE:
        return [x for x in (e.left, e.right) if not isinstance(x, (ast.Const, ast.ListLit))]
    return [] if isinstance(e, ast.Const) else [e]


def check_assertion(ev: "Evaluator", test: ast.Expr, message: ast.Expr | None) -> None:
    """Run `assert test, message`; a false test raises E042 at the test, with the values involved."""
    ok = ev(test)
    if isinstance(ok, Tensor):
        raise error("E015", "a tensor has no truth value", test.span, hint="compare its .shape or .channels")
    if ok:
        return
    text = source_text(test.span)
    if message is not None:
        m = ev(message)
        text = m if isinstance(m, str) else show(m)
    values: list[str] = []
    for x in _operands(test)[:6]:
        try:
            v = ev(x)
        except (ResdslError, _Poisoned):  # e.g. the right side of `n != 0 and 8 // n > 1`
            continue
        item = f"{source_text(x.span)} = {show(v)}"
        if item not in values:
            values.append(item)
    raise error("E042", f"assertion failed: {text}" + (f" ({', '.join(values)})" if values else ""), test.span)

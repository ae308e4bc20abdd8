"""The typed AST: what the parser produces and the elaborator consumes.

Every node is a frozen dataclass that carries the `Span` it was parsed from.
Expressions and statements are closed unions (`Expr`, `Stmt`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .span import Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Const:  # int, float, bool, str or None
    value: object
    span: Span


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class BinOp:  # + - * / // % ** and or, comparisons
    op: str
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class UnaryOp:  # - + not
    op: str
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Cond:  # then if test else other
    test: "Expr"
    then: "Expr"
    other: "Expr"
    span: Span


@dataclass(frozen=True)
class Call:  # builtin function call inside an expression: min(a, b)
    func: str
    args: tuple["Arg", ...]
    span: Span


@dataclass(frozen=True)
class Index:
    obj: "Expr"
    index: "Expr"
    span: Span


@dataclass(frozen=True)
class Attr:
    obj: "Expr"
    name: str
    span: Span


@dataclass(frozen=True)
class ListLit:
    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class DictLit:
    pairs: tuple[tuple["Expr", "Expr"], ...]
    span: Span


@dataclass(frozen=True)
class RangePart:
    """`{1..s}` inside a tensor name: the names for lo, lo + 1, ..., hi (inclusive, as x_1 .. x_s)."""

    lo: "Expr"
    hi: "Expr"
    span: Span


@dataclass(frozen=True)
class Interp:
    """A name built when the network is: `skip{i}` (parts are literal text or expressions)."""

    parts: tuple[Union[str, "Expr"], ...]
    span: Span


Expr = Union[Const, Name, BinOp, UnaryOp, Cond, Call, Index, Attr, ListLit, DictLit, Interp]


@dataclass(frozen=True)
class Arg:
    name: str | None  # None for positional
    value: Expr
    span: Span


# ---------------------------------------------------------------- statements


@dataclass(frozen=True)
class Label:
    """`conv1:` or `layer{s + 1}:`; parts are literal text or expressions."""

    parts: tuple[Union[str, Expr], ...]
    span: Span


@dataclass(frozen=True)
class Clause:
    """A body attached to a layer: the main one (keyword '') or `shortcut { }`."""

    keyword: str
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True)
class Layer:
    """One layer, block call or structural statement (residual, dense, ...)."""

    label: Label | None
    op: str
    op_span: Span
    args: tuple[Arg, ...]
    clauses: tuple[Clause, ...]
    bind: str | None  # the name as written; `skip{i}` when it interpolates
    span: Span
    has_parens: bool = False
    binds: tuple["Label", ...] = ()  # every `-> a, b{i}, x{1..4}` target, each as a (template) label


@dataclass(frozen=True)
class Assign:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class For:
    names: tuple[str, ...]
    iterable: Expr
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True)
class If:
    test: Expr
    then: tuple["Stmt", ...]
    other: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True)
class Input:
    name: str
    shape: Expr
    span: Span
    where: tuple[Expr, ...] = ()  # `where H % 32 == 0, W == H`: constraints on the named sizes


@dataclass(frozen=True)
class Output:
    names: tuple["Label", ...]  # plain names, or templates such as heatmap{s}
    span: Span


@dataclass(frozen=True)
class From:
    name: str  # as written; `skip{i}` when it interpolates (then `template` holds its parts)
    span: Span
    template: "Label | None" = None


@dataclass(frozen=True)
class Bind:
    name: str
    span: Span
    template: "Label | None" = None


@dataclass(frozen=True)
class Assert:
    """`assert test, message`: checked where it stands, or once the network is built when it
    names a network total (params, buffers, macs)."""

    test: Expr
    message: Expr | None
    span: Span


Stmt = Union[Layer, Assign, For, If, Input, Output, From, Bind, Assert]


# ---------------------------------------------------------------- top level


@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class BlockDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class NetworkDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Import:
    path: str
    span: Span


@dataclass(frozen=True)
class Module:
    file: str
    items: tuple[Union[Import, BlockDef, NetworkDef, Assign], ...]

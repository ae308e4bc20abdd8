"""Source text -> typed AST (`resdsl.syntax`), built inside lark's LALR parse.

Reads: the grammar file `grammar/resdsl.lark` (shipped inside the wheel as
`resdsl/grammar/resdsl.lark`).  Writes: `syntax.Module`.  Syntax errors become
`ResdslError` E001 with the exact position, the expected tokens and a hint.

No parse tree is built: each grammar rule's reduction calls the matching
`_ToAst` method at once (`_Builder`), with the positions lark's
`propagate_positions` would have given (the extent of the rule's tokens,
brackets included), so spans are those of a tree-then-transform parse.
Parsed modules are cached by (file name, text, nesting limit): the standard
library and shared imports are parsed once per process.
"""
from __future__ import annotations

import _thread
import functools
import gc
import operator
import re
import sys
from collections import OrderedDict
from pathlib import Path

from typing import TYPE_CHECKING

from . import syntax as ast
from .diagnostics import Note, ResdslError, error
from .limits import DEFAULT, Limits, raise_hint
from .span import Source, Span, named, register

if TYPE_CHECKING:  # lark is imported where it is used: valid text is parsed without it (see `_Driver`)
    from lark import Lark, Token
    from lark.exceptions import UnexpectedInput

RESERVED = frozenset(
    "and or not if else for in true false none input output from import block network assert".split()
)


def grammar_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "grammar" / "resdsl.lark", here.parent / "grammar" / "resdsl.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("internal error: grammar/resdsl.lark is missing from the installation")


_BODY_AFTER = frozenset({"NAME", "TNAME", "RPAR", "RSQB", "INT", "FLOAT", "STRING", "TRUE", "FALSE", "NONE"})


def _opens_body(last: str, prev: str) -> bool:
    """Whether a '{' after tokens of types `prev`, `last` opens a body (else a dict literal)."""
    return last in _BODY_AFTER or (last == "ELSE" and prev == "RBRACE")


class _Brackets:
    """The post-lexer's rule for one parse: drop newlines inside (), [] and dict literals.

    A '{' opens a body when it follows something that can end an expression or
    a header (a name, a literal, ')', ']' or `} else`); otherwise it opens a
    dict literal, inside which newlines are insignificant.  Shared by lark's
    post-lexer (`_Newlines`) and the lean driver (`_Driver`).
    """

    __slots__ = ("stack", "prev", "last", "limit")

    def __init__(self, limit: int):
        self.stack: list[str] = []
        self.prev = self.last = ""  # the types of the two tokens before this one
        self.limit = limit

    def keep(self, t: str, tok: Token | None = None) -> bool:
        """Whether a token of type `t` reaches the parser; `_TooDeep` past the nesting limit."""
        stack = self.stack
        if t == "_NL":
            if stack and stack[-1] != "body":
                return False
        elif t == "LPAR" or t == "LSQB":
            stack.append(t)
        elif t == "LBRACE":
            stack.append("body" if _opens_body(self.last, self.prev) else "dict")
        if len(stack) > self.limit:  # refuse before the parser builds a tree this deep
            raise _TooDeep(tok)
        if stack and (t == "RPAR" or t == "RSQB" or t == "RBRACE"):
            stack.pop()
        self.prev, self.last = self.last, t
        return True


class _Newlines:
    """Post-lexer for lark: the tokens `_Brackets` keeps."""

    always_accept = ("_NL",)
    max_depth = 200  # set from Limits.max_nesting by `_Builder.run` for each parse

    def process(self, stream):
        brackets = _Brackets(self.max_depth)
        for tok in stream:
            if brackets.keep(tok.type, tok):
                yield tok


class _TooDeep(Exception):
    """Brackets, bodies or operators nested deeper than Limits.max_nesting."""

    def __init__(self, tok: Token | None, meta=None):
        super().__init__("nesting too deep")
        self.tok, self.meta = tok, meta


# Rules that nest: bodies and every expression form (operators chain
# without brackets, e.g. `- - - 1` or `1 + 1 + ... + 1`).  The builder counts them
# bottom-up and refuses a value nested deeper than Limits.max_nesting.
_NESTING_RULES = frozenset(
    "body list_ dict_ call index attr cond or_ and_ not_ compare add sub mul truediv floordiv mod neg pos pow".split()
)


@functools.lru_cache(maxsize=1)
def _tree_lark() -> Lark:
    """Lark building its parse tree (propagate_positions): for `_first_too_deep` only."""
    return _new_lark(postlex=_Newlines())


def _first_too_deep(text: str, start: str, limit: int) -> _TooDeep:
    """Where a parse-tree walk finds the first value nested past `limit` (the place E040 has always
    named; the builder notices the depth bottom-up, at a node further in).  Error path only."""
    lark = _tree_lark()
    with _builder().lock:  # the post-lexer's limit is shared
        lark.options.postlex.max_depth = limit
        try:
            tree = lark.parse(text, start=start)
        except _TooDeep as e:
            return e
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING_RULES:
            depth += 1
            if depth > limit:
                return _TooDeep(None, node.meta)
        stack.extend((c, depth) for c in node.children if hasattr(c, "data"))  # subtrees, not tokens
    return _TooDeep(None)  # pragma: no cover - the builder found one


def _too_deep(e: _TooDeep, source: Source, limit: int) -> ResdslError:
    file = named(source)
    if e.tok is not None:
        span = Span(file, e.tok.line, e.tok.column, e.tok.end_line, e.tok.end_column,
                    e.tok.start_pos, e.tok.end_pos)
    elif e.meta is not None and not getattr(e.meta, "empty", True):
        span = Span(file, e.meta.line, e.meta.column, e.meta.line, e.meta.column + 1,
                    e.meta.start_pos, e.meta.start_pos + 1)
    else:
        span = Span(file, 1, 1, 1, 2, 0, 1)
    return error("E040", f"brackets, bodies or operators are nested more than {limit} deep here", span,
                 hint="split the expression or the body with names or blocks; " + raise_hint("max_nesting", limit))


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    """lark's parser, its callbacks replaced by `_Builder`'s: for text the lean driver fails on."""
    return _new_lark(postlex=_Newlines())


_LARK_OPTIONS = dict(parser="lalr", lexer="contextual", maybe_placeholders=True, start=["start", "expr"])


def _new_lark(**options) -> Lark:
    """A lark parser for the grammar (with `options`: the post-lexer, lexer callbacks), loaded from
    resdsl/lark_data.py -- lark's own serialized form, plain data -- when it was made from this
    grammar by this version of lark (a few ms), else built from the grammar (about 50 ms).  Never
    with lark's cache=True: that unpickles a file of a fixed name in the shared temp dir, which
    another user of the machine could have written."""
    import lark

    try:
        from . import lark_data
    except ImportError:  # pragma: no cover - the file is shipped
        lark_data = None
    if lark_data is not None and (lark_data.LARK_VERSION, lark_data.GRAMMAR_SHA256) == (lark.__version__,
                                                                                          grammar_digest()):
        return lark.Lark._load_from_dict(lark_data.DATA, lark_data.MEMO, propagate_positions=True, **options)
    return lark.Lark(grammar_path().read_text(), propagate_positions=True, **_LARK_OPTIONS, **options)


_RANGE = r"([^.]+)\.\.([^.]+)"  # the braces of x{1..s}: two expressions without dots
_LABEL_PARTS = r"\{([^{}]*)\}|[^{}]+"  # a label's literal text and its {expressions}
_ESCAPE = r"\\(.)"
_PATTERNS = (_RANGE, _LABEL_PARTS, _ESCAPE)  # shipped compiled, as the lexers are (`_regex`)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def _unescape(tok: Token, span: Span) -> str:
    body = tok[1:-1]
    if "\\" not in body:
        return body

    def sub(m: re.Match) -> str:
        c = m.group(1)
        if c not in _ESCAPES:
            raise error("E004", f"unknown escape `\\{c}` in string", span, hint="use \\\\, \\\", \\', \\n or \\t")
        return _ESCAPES[c]

    return _regex(_ESCAPE).sub(sub, body)


class _SpanDraft:
    """A mutable `Span` under construction: the same slots, so it can become one (`_span_maker`)."""

    __slots__ = Span.__slots__


def _span_maker(file: str, other):
    """meta -> its span in `file`: for the driver's extents (a tuple in `Span`'s order),
    `Span(file, *extent)` in a third of the time -- a frozen dataclass's `__init__` sets each field
    through `object.__setattr__`, while this fills a `_SpanDraft`'s slots and makes it a `Span`
    (the same layout; the parser makes a span per AST node); `other(meta)` for anything else.
    The same value: tests/test_parser_builder.py compares."""
    assert Span.__slots__ == ("file", "line", "col", "end_line", "end_col", "start", "end")
    new = object.__new__

    def make(meta) -> Span:
        if meta.__class__ is not tuple:
            return other(meta)
        span = new(_SpanDraft)
        span.file = file
        span.line, span.col, span.end_line, span.end_col, span.start, span.end = meta
        span.__class__ = Span
        return span
    return make


class _Seq(tuple):
    """A tuple that is never the shared empty `()`: the builder tells values apart by identity."""

    __slots__ = ()


class _ToAst:
    """One method per grammar rule (or alias): (positions, children) -> AST value."""

    def __init__(self, file: str, dline: int = 0, dcol: int = 0, dpos: int = 0, limit: int = DEFAULT.max_nesting):
        self.file, self.dline, self.dcol, self.dpos = file, dline, dcol, dpos
        self.limit = limit  # Limits.max_nesting, for the expressions in a label's braces
        self.shifted = bool(dline or dcol or dpos)  # a label's expression: positions relative to the label
        if not self.shifted:  # the common case, made fast: the driver's extents are the spans' fields
            self._span = _span_maker(file, self._span)

    # -- spans
    def _pos(self, line: int, col: int) -> tuple[int, int]:
        return line + self.dline, col + (self.dcol if line == 1 else 0)

    def _span(self, meta) -> Span:
        """The span of a reduction's positions: the lean driver's extent -- a tuple in `Span`'s order
        (line, col, end_line, end_col, start, end), or None without tokens -- or lark's `meta`."""
        if type(meta) is not tuple:
            if getattr(meta, "empty", True):
                return Span(self.file, 0, 0, 0, 0)
            meta = (meta.line, meta.column, meta.end_line, meta.end_column, meta.start_pos, meta.end_pos)
        if not self.shifted:
            return Span(self.file, *meta)
        line, col, end_line, end_col, start, end = meta
        l1, c1 = self._pos(line, col)
        l2, c2 = self._pos(end_line, end_col)
        return Span(self.file, l1, c1, l2, c2, start + self.dpos, end + self.dpos)

    def tok_span(self, tok: Token) -> Span:
        if tok.__class__ is _Token:
            return self._span(tok.ext)
        return self._span((tok.line, tok.column, tok.end_line, tok.end_column, tok.start_pos, tok.end_pos))

    def _ident(self, tok: Token) -> str:
        if tok in RESERVED:
            raise error("E001", f"`{tok}` is a keyword and cannot be used as a name", self.tok_span(tok),
                        hint=f"rename it, e.g. `{tok}_`")
        return str(tok)

    # -- top level
    def start(self, meta, items):
        return _Seq(i for i in items if i is not None)

    def import_stmt(self, meta, c):
        return ast.Import(_unescape(c[0], self.tok_span(c[0])), self._span(meta))

    def params(self, meta, c):
        return tuple(c)

    def param(self, meta, c):
        return ast.Param(self._ident(c[0]), c[1], self._span(meta))

    def block_def(self, meta, c):
        return ast.BlockDef(self._ident(c[0]), c[1] or (), c[2], self._span(meta))

    def network_def(self, meta, c):
        return ast.NetworkDef(self._ident(c[0]), c[1] or (), c[2], self._span(meta))

    def body(self, meta, c):
        return _Seq(c)

    # -- statements
    def layer(self, meta, c):
        label, name, args, clauses, bind = c
        if str(name) == "else" or (str(name) == "shortcut" and clauses and args is None and label is None):
            # a clause on the line after the `}` it continues: a newline ends the statement before it
            raise error("E001", f"`{name}` must follow the closing `}}` on the same line", self.tok_span(name),
                        hint=f"join the lines: `}} {name} {{`")
        return ast.Layer(  # label, op, op_span, args, clauses, bind, span, has_parens, binds
            self._label(label) if label is not None else None,
            self._ident(name),
            self.tok_span(name),
            args[0] if args is not None else (),
            clauses or (),
            None if bind is None else str(bind[0]),
            self._span(meta),
            args is not None,
            tuple([self._target(t) for t in bind]) if bind else (),
        )

    def call_args(self, meta, c):
        return (c[0] or (),)

    def clauses(self, meta, c):
        return (ast.Clause("", c[0], self._span(meta)),) + tuple(c[1:])

    def clause(self, meta, c):
        return ast.Clause(self._ident(c[0]), c[1], self._span(meta))

    def bind(self, meta, c):
        return list(c)

    def _target(self, tok: Token) -> ast.Label:
        """A bound tensor's name as a label: one literal part, or a template."""
        return self._template(tok) or ast.Label((str(tok),), self.tok_span(tok))

    def _template(self, tok: Token | None) -> ast.Label | None:
        """The parts of an interpolated tensor name (`skip{i}`); None for a plain name (checked here)."""
        if tok is None:
            return None
        if "{" not in tok:
            self._ident(tok)
            return None
        return self._label(tok, colon=False)

    def assign(self, meta, c):
        return ast.Assign(self._ident(c[0]), c[1], self._span(meta))

    def for_stmt(self, meta, c):
        names = tuple(self._ident(t) for t in c[:-2])
        return ast.For(names, c[-2], c[-1], self._span(meta))

    def if_stmt(self, meta, c):
        test, then = c[0], c[1]
        other = c[3] if len(c) > 3 and c[3] is not None else ()
        if isinstance(other, ast.If):
            other = (other,)
        return ast.If(test, then, other, self._span(meta))

    def input_stmt(self, meta, c):
        label = self._label(c[0])
        if len(label.parts) != 1 or not isinstance(label.parts[0], str) or not label.parts[0].isidentifier():
            raise error("E019", "an input needs a plain name", label.span, hint="write `input x: [3, 224, 224]`")
        return ast.Input(label.parts[0], c[1], self._span(meta), c[2] or ())

    def where(self, meta, c):
        return tuple(c)  # the constraints on an input's named sizes

    def output_stmt(self, meta, c):
        return ast.Output(tuple(self._label(t, colon=False) for t in c), self._span(meta))

    def from_stmt(self, meta, c):
        return ast.From(str(c[0]), self._span(meta), self._template(c[0]))

    def bind_stmt(self, meta, c):
        return ast.Bind(str(c[0]), self._span(meta), self._template(c[0]))

    def assert_stmt(self, meta, c):
        return ast.Assert(c[0], c[1], self._span(meta))

    def _label(self, tok: Token, colon: bool = True) -> ast.Label:
        """Split `layer{s + 1}:` (or an output's `heatmap{s}`) into literal text and parsed expressions."""
        span = self.tok_span(tok)
        text = str(tok)[:-1] if colon else str(tok)
        if not colon and text in RESERVED:
            raise error("E001", f"`{text}` is a keyword and cannot be used as a name", span,
                        hint=f"rename it, e.g. `{text}_`")
        if "{" not in text and "}" not in text:  # one literal part (a label is never empty)
            return ast.Label((text,) if text else (), span)
        parts: list = []
        for m in _regex(_LABEL_PARTS).finditer(text):
            if m.group(1) is None:
                parts.append(m.group(0))
                continue
            inner = m.group(1)
            col = span.col + m.start(1)
            try:
                rng = _regex(_RANGE).fullmatch(inner)
                if rng:  # x{1..s}: the names x1 .. xs
                    lo, hi = (_parse_expr(rng.group(k), self.file, span.line - 1, col - 1 + rng.start(k),
                                          span.start + m.start(1) + rng.start(k), self.limit) for k in (1, 2))
                    parts.append(ast.RangePart(lo, hi, span))
                    continue
                parts.append(_parse_expr(inner, self.file, span.line - 1, col - 1, span.start + m.start(1),
                                         self.limit))
            except _TooDeep:  # positions inside the label are relative to it: report the label itself
                raise error("E040", "the label's expression is nested too deeply", span,
                            hint="compute the value into a variable first") from None
            except _SyntaxFailure as failure:  # locate the error inside the braces, not at the file's start
                d = _syntax_error(failure.error, Source(self.file, inner)).first
                rel = len(inner) if "end of file" in d.message else d.span.start  # at the `}` when it ended early
                width = max(1, min(d.span.end - d.span.start, len(inner) + 1 - rel))
                at, col = span.start + m.start(1) + rel, span.col + m.start(1) + rel
                where = Span(self.file, span.line, col, span.line, col + width, at, at + width)
                raise error("E001", d.message.replace("end of file", "`}`"), where,
                            hint="the part in braces is an expression, e.g. {i + 1}") from None
        return ast.Label(tuple(parts), span)

    # -- arguments
    def args(self, meta, c):
        return tuple(c)

    def arg(self, meta, c):
        return ast.Arg(None, c[0], self._span(meta))

    def kwarg(self, meta, c):
        return ast.Arg(self._ident(c[0]), c[1], self._span(meta))

    # -- expressions
    def _bin(op):  # noqa: N805 - helper to build the binary-operator methods
        def method(self, meta, c):
            return ast.BinOp(op, c[0], c[-1], self._span(meta))
        return method

    add, sub, mul, truediv = _bin("+"), _bin("-"), _bin("*"), _bin("/")
    floordiv, mod, pow = _bin("//"), _bin("%"), _bin("**")
    and_, or_ = _bin("and"), _bin("or")

    def compare(self, meta, c):
        return ast.BinOp(str(c[1]), c[0], c[2], self._span(meta))

    def neg(self, meta, c):
        return ast.UnaryOp("-", c[0], self._span(meta))

    def pos(self, meta, c):
        return ast.UnaryOp("+", c[0], self._span(meta))

    def not_(self, meta, c):
        return ast.UnaryOp("not", c[0], self._span(meta))

    def cond(self, meta, c):
        return ast.Cond(c[1], c[0], c[3], self._span(meta))

    def index(self, meta, c):
        return ast.Index(c[0], c[1], self._span(meta))

    def attr(self, meta, c):
        return ast.Attr(c[0], str(c[1]), self._span(meta))

    def call(self, meta, c):
        return ast.Call(self._ident(c[0]), c[1] or (), self._span(meta))

    def int_(self, meta, c):
        text = str(c[0])
        if "_" in text:
            text = text.replace("_", "")
        if len(text) > 30:
            raise error("E040", f"integer literal with {len(text)} digits is too large", self.tok_span(c[0]),
                        hint="integers in .res files must stay below 10**30")
        return ast.Const(int(text), self._span(meta))

    def float_(self, meta, c):
        return ast.Const(float(c[0]), self._span(meta))

    def string(self, meta, c):
        span = self._span(meta)
        return ast.Const(_unescape(c[0], span), span)

    def true(self, meta, c):
        return ast.Const(True, self._span(meta))

    def false(self, meta, c):
        return ast.Const(False, self._span(meta))

    def none(self, meta, c):
        return ast.Const(None, self._span(meta))

    def name(self, meta, c):
        return ast.Name(self._ident(c[0]), self._span(meta))

    def tname(self, meta, c):
        return ast.Interp(self._label(c[0], colon=False).parts, self._span(meta))

    def list_(self, meta, c):
        return ast.ListLit(tuple(x for x in c if x is not None), self._span(meta))

    def dict_(self, meta, c):
        return ast.DictLit(tuple(x for x in c if x is not None), self._span(meta))

    def pair(self, meta, c):
        return (c[0], c[1])


class _Meta:
    """The positions of one reduction: what lark's propagate_positions puts on a tree node."""

    __slots__ = ("line", "column", "start_pos", "end_line", "end_column", "end_pos", "empty")


def _first(children: list) -> object:
    return children[0]


def _meta(extent: tuple | None) -> _Meta:
    meta = _Meta()
    meta.empty = extent is None
    if extent is not None:
        meta.line, meta.column, meta.start_pos, meta.end_line, meta.end_column, meta.end_pos = extent
    return meta


class _Token(str):
    """A token of the lean driver: its text, and its extent in `Span`'s order (`_ToAst.tok_span`)."""

    __slots__ = ("ext",)


class _SyntaxFailure(Exception):
    """Lark's syntax error (an UnexpectedInput), carried past code that does not import lark."""

    def __init__(self, error: "UnexpectedInput"):
        super().__init__(str(error))
        self.error = error


class _Fail(Exception):
    """The lean driver met input it does not handle itself (a syntax error): lark's parser reports it."""


_AT_END = (0, 0, 0, 0, 0, 0)  # the "extent" of the end of the text: never a shifted token's
_BRACKETING = frozenset({"_NL", "LPAR", "LSQB", "LBRACE", "RPAR", "RSQB", "RBRACE"})  # `_Brackets.keep`'s cases


class _Lazy:
    """A regular expression compiled when it is first needed (most parser states never are)."""

    __slots__ = ("pattern", "compiled")

    def __init__(self, pattern: str):
        self.pattern, self.compiled = pattern, None

    def compile(self) -> re.Pattern:
        self.compiled = re.compile(self.pattern)
        return self.compiled


class _StateLexer:
    """One parser state's own lexer: its terminals tried one by one, in lark's order, until it has
    been asked `COMPILE_AFTER` times; then their union, compiled (the same first match either way)."""

    __slots__ = ("own", "terminals", "asked")
    COMPILE_AFTER = 8

    def __init__(self, pattern: str, terminals: tuple):
        self.own, self.terminals, self.asked = _Lazy(pattern), terminals, 0

    def match(self, text: str, pos: int) -> re.Match | None:
        if self.own.compiled is None:
            self.asked += 1
            if self.asked <= self.COMPILE_AFTER:
                for t in self.terminals:
                    m = (t.compiled or t.compile()).match(text, pos)
                    if m is not None:
                        return m
                return None
        return (self.own.compiled or self.own.compile()).match(text, pos)


# What the driver does with a token its lexer matched by pattern (`_handling`): bit flags
_MULTILINE, _IGNORED, _KEYWORDS = 1, 2, 4


def _handling(order: tuple, keywords: dict, ignore: tuple, newlines: tuple) -> dict:
    """For each terminal of one state's lexer, what the driver does with its token: None (nothing
    more), its keyword table (it may be a keyword), or `_MULTILINE` (count its lines) | `_IGNORED`
    | `_KEYWORDS` -- the one test per token that most tokens need."""
    out = {}
    for name in order:
        flags = (_MULTILINE if name in newlines else 0) | (_IGNORED if name in ignore else 0)
        out[name] = (keywords[name] if name in keywords and not flags else
                     flags | (_KEYWORDS if name in keywords else 0) or None)
    return out


def _matcher(pattern: str, compiled: dict[str, re.Pattern]):
    """`re.compile(pattern).match`, from the shipped code, or compiled when first called."""
    if pattern in compiled:
        return compiled[pattern].match
    lazy = _Lazy(pattern)
    return lambda text, pos: (lazy.compiled or lazy.compile()).match(text, pos)


def _match(own: _StateLexer, alts: frozenset, shared: _Lazy | None, extra: tuple):
    """A state's lexer without its own pattern compiled: the shared union where it can tell (see
    `_tables`), else the state's terminals (`_StateLexer`)."""
    def match(text: str, pos: int) -> re.Match | None:
        m = (shared.compiled or shared.compile()).match(text, pos) if shared is not None else None
        if m is None or m.lastgroup not in alts or (extra and text.startswith(extra, pos)):
            return own.match(text, pos)  # the shared pattern cannot tell
        return m
    return match


# How the driver reduces each rule (see `_plans`).
_UNIT = 0      # the value, its start and depth pass up unchanged: only the top state changes (memoised chains)
_VOID = 1      # a `_rule` that never holds anything (`_sep`): its parent ignores its value
_LIST_NEW = 2  # a list helper's first item(s) (`__args_star: "," arg`): a new list
_LIST_ADD = 3  # a list helper's next item(s) (`__args_star: __args_star "," arg`): appended in place
_PASS = 4      # one child passed up as the value (`atom: "(" expr ")"`)
_BUILD = 5     # a `_ToAst` method called on the picked children
_SPLICE = 6    # any other `_rule` or `?rule` (none in this grammar): lark's child filter, as written
_BUILD1 = 7    # `_BUILD` of one child (an atom, `arg: expr`, ...): the commonest reduction, made shorter


def _ops(include: tuple, nones_after: int, expansion: tuple, void: set, item: set) -> list[tuple]:
    """Lark's child filter (ChildFilterLALR) for one rule, with what the driver knows of `_rule`s: a
    `void` child is dropped, an `item` child (a `_rule` that always holds exactly one value) is
    picked like a plain one, any other `_rule` (a list) spliced.  ("pick" | "splice" | "nones", i or k)."""
    ops = []
    for i, splice, nones in include:
        if nones:
            ops.append(("nones", nones))
        if splice and expansion[i] in void:
            continue
        ops.append(("splice" if splice and expansion[i] not in item else "pick", i))
    if nones_after:
        ops.append(("nones", nones_after))
    return ops


def _symbol_kinds(rules: list, includes: list) -> tuple[set, set]:
    """The `_rule` symbols that always hold nothing (`_sep`) and those that always hold exactly one
    value (`_stmt: layer | assign | ...`): the largest sets consistent with every rule of theirs."""
    splicing = {r[1] for r in rules if _splices(r)}
    theirs = [(rule, include) for rule, include in zip(rules, includes) if rule[1] in splicing]
    void, item = set(splicing), set()
    for kind in ("void", "item"):
        changed = True
        while changed:
            changed = False
            for rule, (include, nones_after) in theirs:
                ops = _ops(include, nones_after, rule[6], void, item)
                fits = not ops if kind == "void" else len(ops) == 1 and ops[0][0] == "pick"
                members = void if kind == "void" else item
                if rule[1] in members and not fits:
                    members.discard(rule[1])
                    changed = True
            if kind == "void":
                item = splicing - void
    return void, item


def _splices(rule: tuple) -> bool:
    """Whether a rule entry is a `_rule`'s (no method, not a `?rule`): spliced into its parent."""
    size, goto, unit, name, filt, expand1, expansion = rule
    return not unit and not expand1 and getattr(_ToAst, name, None) is None


def _plans(rules: list) -> list[tuple]:
    """(kind, size, goto symbol, argument, method, nests) for each rule: how `_Driver.run` reduces it.
    The argument: the children's builder (values -> the method's children, or a list's items), or the
    passed child's index from the top of the stack."""
    includes = [filt if filt is not None else (tuple((i, False, 0) for i in range(size)), 0)
                for size, goto, unit, name, filt, expand1, expansion in rules]
    void, item = _symbol_kinds(rules, includes)
    plans = []
    for rule, (include, nones_after) in zip(rules, includes):
        size, goto, unit, name, filt, expand1, expansion = rule
        ops = _ops(include, nones_after, expansion, void, item)
        picks = [i for op, i in ops if op == "pick"]
        method = getattr(_ToAst, name, None)
        splices = _splices(rule)
        if unit or (splices and size == 1 and (goto in void or goto in item)):
            kind, arg = _UNIT, None
        elif splices and goto in void:
            kind, arg = _VOID, None
        elif (splices and goto in item) or (expand1 and len(ops) == 1 and ops[0][0] == "pick"):
            kind, arg = _PASS, ops[0][1] - size
        elif splices and ops[:1] == [("splice", 0)] and len(picks) == len(ops) - 1:
            kind, arg = _LIST_ADD, _builder_of([("pick", i) for i in picks], size, as_list=True)
        elif splices and len(picks) == len(ops):
            kind, arg = _LIST_NEW, _builder_of(ops, size, as_list=True)
        elif not splices and not expand1:
            kind, arg = _BUILD, _builder_of(ops, size, as_list=False)
            if size == 1:  # the child itself when it is all the method is given (None: build nothing)
                kind, arg = _BUILD1, None if ops == [("pick", 0)] else arg
        else:
            kind, arg = _SPLICE, _builder_of(ops, size, as_list=True)
        plans.append((kind, size, goto, arg, method if kind in (_BUILD, _BUILD1, _SPLICE) else None,
                      name in _NESTING_RULES))
    return plans


def _builder_of(ops: list[tuple], size: int, as_list: bool):
    """values -> the children `ops` pick from the top `size` values of the stack (a tuple where the
    method reads them only, a list where it is one of the driver's lists)."""
    if all(op == "pick" for op, _ in ops):
        at = [i - size for _, i in ops]
        if not at:
            return lambda values: []
        if len(at) == 1:
            only = at[0]
            return lambda values: [values[only]]
        get = operator.itemgetter(*at)
        return (lambda values: list(get(values))) if as_list else get

    def build(values: list) -> list:
        out: list = []
        for op, i in ops:
            if op == "pick":
                out.append(values[i - size])
            elif op == "splice":
                out += values[i - size]
            else:
                out += [None] * i
        return out
    return build


def _tables(lark: Lark) -> dict:
    """What `_Driver` needs from lark, as plain data (ints, strings, tuples, dicts): the LALR
    actions, each rule's reduction, and each parser state's lexer.  grammar/make_tables.py writes
    it into resdsl/lalr_tables.py, so a process parses without building lark's parser first.

    Lexing: lark matches, in each state, the union of the terminals the state accepts, the first
    in lark's order that matches.  Compiling 30 such unions costs more than parsing a file, so the
    driver first tries one of three shared unions, in the same order: for states that take labels,
    for those that take names but no labels, for those that take neither (after a value).  Where a
    union holds all of a state's terminals but some keywords (`extra`, folded into NAME there), and
    its first match is one of the state's terminals, and no `extra` keyword starts there, that is
    the state's own first match: every terminal before it in the state's order failed.  Else the
    driver tries the state's terminals one by one, in order, and after a few such tokens compiles
    their union."""
    from lark.parsers.lalr_analysis import Shift

    frontend = lark.parser
    contextual = frontend.lexer.lexer
    table = frontend.parser.parser.parse_table
    rules = list(lark.rules)
    index = {rule: i for i, rule in enumerate(rules)}
    root = contextual.root_lexer.scanner
    assert len(root._mres) == 1, "one pattern per scanner"
    # each union: the terminals of all the states of its kind, in lark's order
    kinds: list[set] = [set(), set(), set()]
    for lexer in contextual.lexers.values():
        kind = _kind(lexer.scanner.terminals)
        if kind is not None:
            kinds[kind] |= {t.name for t in lexer.scanner.terminals}
    unions = [[t for t in contextual.root_lexer.terminals if t.name in kind] for kind in kinds]
    lexers: list = []
    state_lexer: dict[int, int] = {}
    seen: dict[int, int] = {}
    number = _numbering(table)
    # each terminal: (its text if a literal, the ASCII characters it may begin with, its pattern)
    kept = sorted({s.name for r in rules for s in r.expansion if s.is_term and (r.options.keep_all_tokens or not s.filter_out)})
    terms = {t.name: (t.pattern.value if t.pattern.type == "str" and not t.pattern.flags and t.name not in kept else None,
                      _first_chars(t.pattern.to_regexp()) if not t.pattern.flags else _ASCII, _union([t]))
             for t in lark.terminals}
    patterns: dict[str, int] = {}
    for state in sorted(contextual.lexers, key=number.__getitem__):
        lexer = contextual.lexers[state]
        if id(lexer) not in seen:
            seen[id(lexer)] = len(lexers)
            lexers.append(_lexer_entry(lexer, [{t.name for t in u} for u in unions]))
        state_lexer[number[state]] = seen[id(lexer)]
    return {
        "start": {k: number[v] for k, v in sorted(table.start_states.items())},
        "end": {k: number[v] for k, v in sorted(table.end_states.items())},
        "actions": {number[state]: {sym: (number[arg] if action is Shift else ~index[arg])
                                    for sym, (action, arg) in sorted(table.states[state].items())}
                    for state in sorted(table.states, key=number.__getitem__)},
        "rules": [_rule_entry(rule) for rule in rules],
        "kept": kept,
        "one_line": sorted(t.name for t in lark.terminals if not t.pattern.flags and not _may_hold(t.pattern.to_regexp(), "\n")),
        "unions": [_union(u) for u in unions], "lexers": lexers, "state_lexer": state_lexer,
        "dispatch": [_dispatch(entry[1], terms, patterns) for entry in lexers],
        "skip": _skip(lexers, terms, patterns), "patterns": list(patterns),
        "terminals": {t.name: _union([t]) for t in sorted(lark.terminals, key=lambda t: t.name)},
    }


def _numbering(table) -> dict[int, int]:
    """lark's state -> the state's place in a breadth-first walk from the start states, symbols in
    order: lark numbers its states differently from run to run, this file should not change."""
    from lark.parsers.lalr_analysis import Shift

    number: dict[int, int] = {}
    queue = [table.start_states[k] for k in sorted(table.start_states)]
    for state in queue:
        if state not in number:
            number[state] = len(number)
            queue += [arg for _, (action, arg) in sorted(table.states[state].items()) if action is Shift]
    assert len(number) == len(table.states), "every state is reachable"
    return number


def _union(terminals: list) -> str:
    """The pattern lark's Scanner compiles for these terminals, in this order."""
    return "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terminals)


_NAMES = ("TNAME", "LABEL", "OUTNAME", "NAME")  # the terminals that take names: the unions differ in them


def _kind(terminals: list) -> int | None:
    """Which shared union serves a state with these terminals: 0 labels, 1 names but no labels, 2 no
    names (after a value); None for OUTNAME's states, which match names their own way."""
    names = {t.name for t in terminals if t.name in _NAMES}
    return None if "OUTNAME" in names else 2 if not names else 0 if "LABEL" in names else 1


def _lexer_entry(lexer, unions: list[set]) -> tuple:
    """(own pattern, its terminals in order, the shared union that serves or None, extra keywords,
    keyword table, ignored, multi-line) for one of the contextual lexer's scanners."""
    from lark.lexer import UnlessCallback

    scanner = lexer.scanner  # builds lexer.callback too
    assert len(scanner._mres) == 1, "one pattern per scanner"
    assert scanner._mres[0].pattern == _union(scanner.terminals)
    union = _kind(scanner.terminals)
    extra = [t for t in scanner.terminals if union is not None and t.name not in unions[union]]
    if not all(t.pattern.type == "str" and not t.pattern.flags for t in extra):
        union, extra = None, []
    keywords = {}
    for type_, callback in sorted(lexer.callback.items()):
        assert isinstance(callback, UnlessCallback) and type_ not in lexer.ignore_types, type_
        assert all(t.pattern.type == "str" and not t.pattern.flags for t in callback.scanner.terminals)
        keywords[type_] = {t.pattern.value: t.name for t in sorted(callback.scanner.terminals, key=lambda t: t.name)}
    return (scanner._mres[0].pattern, tuple(t.name for t in scanner.terminals), union,
            tuple(t.pattern.value for t in extra), keywords,
            tuple(sorted(lexer.ignore_types)), tuple(sorted(lexer.newline_types)))


_ASCII = frozenset(map(chr, range(128)))


def _first_chars(regexp: str) -> frozenset:
    """The ASCII characters a match of `regexp` may begin with -- all of them where it may be empty
    or uses a construct not looked into: a superset, so that a lexer trying only the terminals that
    may begin with the next character finds the first match of all of them (`_dispatch`)."""
    from re import _constants as sre, _parser

    def seq(items) -> tuple[frozenset, bool]:  # (may begin with, may be empty)
        out = frozenset()
        for op, av in items:
            chars, empty = one(op, av)
            out |= chars
            if not empty:
                return out, False
        return out, True

    def one(op, av) -> tuple[frozenset, bool]:
        if op is sre.LITERAL:
            return frozenset({chr(av)}) & _ASCII, False
        if op is sre.NOT_LITERAL:
            return _ASCII - {chr(av)}, False
        if op is sre.IN:
            return frozenset(ch for ch in _ASCII if _in_class(av, ch)), False
        if op is sre.MAX_REPEAT or op is sre.MIN_REPEAT:
            chars, empty = seq(av[2])
            return chars, empty or av[0] == 0
        if op is sre.SUBPATTERN and not av[1] and not av[2]:  # a group that changes no flags
            return seq(av[3])
        if op is sre.BRANCH:
            alts = [seq(alt) for alt in av[1]]
            return frozenset().union(*(chars for chars, _ in alts)), any(empty for _, empty in alts)
        if op is sre.ASSERT or op is sre.ASSERT_NOT:  # zero-width: looked through
            return frozenset(), True
        return _ASCII, True  # anything else may begin with anything

    chars, empty = seq(_parser.parse(regexp))
    return _ASCII if empty else chars


def _may_hold(regexp: str, ch: str) -> bool:
    """Whether a match of `regexp` may contain the character `ch` (True where unsure)."""
    from re import _constants as sre, _parser

    def seq(items) -> bool:
        return any(one(op, av) for op, av in items)

    def one(op, av) -> bool:
        if op is sre.LITERAL:
            return chr(av) == ch
        if op is sre.NOT_LITERAL:
            return chr(av) != ch
        if op is sre.IN:
            return _in_class(av, ch)
        if op is sre.MAX_REPEAT or op is sre.MIN_REPEAT:
            return seq(av[2])
        if op is sre.SUBPATTERN and not av[1] and not av[2]:
            return seq(av[3])
        if op is sre.BRANCH:
            return any(seq(alt) for alt in av[1])
        if op is sre.ASSERT or op is sre.ASSERT_NOT:  # zero-width: consumes nothing
            return False
        return True

    return seq(_parser.parse(regexp))


def _in_class(items: list, ch: str) -> bool:
    """Whether `ch` is in a parsed character class `[...]` (True where unsure)."""
    from re import _constants as sre

    categories = {sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_NOT_DIGIT: r"\D", sre.CATEGORY_SPACE: r"\s",
                  sre.CATEGORY_NOT_SPACE: r"\S", sre.CATEGORY_WORD: r"\w", sre.CATEGORY_NOT_WORD: r"\W"}
    negate = hit = False
    for op, av in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            hit = hit or ch == chr(av)
        elif op is sre.RANGE:
            hit = hit or av[0] <= ord(ch) <= av[1]
        elif op is sre.CATEGORY and av in categories:
            hit = hit or re.match(categories[av], ch) is not None
        else:
            return True
    return hit != negate


def _skip(lexers: list[tuple], terminals: dict, patterns: dict) -> tuple:
    """((characters, i), ...): where in every state only one ignored terminal without newlines may
    begin (the spaces), `patterns[i]`: the driver skips it before it looks at the state -- a token
    saved per run of spaces, and the same tokens, as every state would ignore it."""
    out: dict = {}
    for ch in sorted(_ASCII):
        able = {tuple(name for name in order if ch in terminals[name][1]) for _, order, *_ in lexers}
        if len(able) != 1 or len(next(iter(able))) != 1:
            continue
        (name,) = next(iter(able))
        if all(name in ignore and name not in newlines for *_, ignore, newlines in lexers):
            out.setdefault(patterns.setdefault(terminals[name][2], len(patterns)), []).append(ch)
    return tuple(("".join(chars), i) for i, chars in out.items())


def _dispatch(order: tuple, terminals: dict, patterns: dict) -> tuple:
    """One state's lexer by the next character (ASCII only; any other goes to the state's own
    pattern): ((characters, terminal name), ...) where only a one-character literal terminal may
    begin there -- the token is that character --, ((characters, i), ...) where the terminals that
    may begin there are tried, in the state's order: `patterns` (pattern -> i) gets their union.
    Any terminal matching at a position begins with its character, so it is among those tried, and
    each one before it in the state's order is too, or cannot match there: the first match is the
    state's own."""
    groups: dict = {}
    for ch in sorted(_ASCII):
        able = [name for name in order if ch in terminals[name][1]]
        if not able:
            continue
        literal = terminals[able[0]][0]
        if len(able) == 1 and literal is not None and len(literal) == 1:
            target = able[0]
        else:
            target = patterns.setdefault("|".join(terminals[name][2] for name in able), len(patterns))
        groups.setdefault(target, []).append(ch)
    return tuple(("".join(chars), target) for target, chars in groups.items())


def _rule_entry(rule) -> tuple:
    """(size, goto symbol, passes its child up, name, child filter, expand1, its symbols) of one rule: the
    name picks the `_ToAst` method (none: a `_rule`, spliced) and says whether the rule nests."""
    name = rule.alias or rule.options.template_source or rule.origin.name
    expand1 = bool(rule.options.expand1 and not rule.alias)
    size = len(rule.expansion)
    only = rule.expansion[0] if size == 1 else None
    unit = expand1 and only is not None and not only.is_term and not only.name.startswith("_")
    from lark.parse_tree_builder import maybe_create_child_filter

    made = maybe_create_child_filter(rule.expansion, rule.options.keep_all_tokens, False, rule.options.empty_indices)
    filt = None
    if made is not None and not unit:
        include, *nones = made.args
        filt = (tuple((i, bool(x), int(rest[0]) if rest else 0) for i, x, *rest in include), int(nones[0]) if nones else 0)
    return (size, str(rule.origin.name), unit, str(name), filt, expand1, tuple(str(s.name) for s in rule.expansion))


def _state_lexers(tables: dict, compiled: dict[str, re.Pattern]) -> tuple[dict, dict]:
    """Each parser state's lexer -- (its own lexer, its own pattern's match, keyword table, ignored,
    multi-line, the table by next character, `_handling`) -- and the matchers of the characters
    every state skips (`_skip`), from the tables and the patterns compiled from shipped code."""
    unions = [_Lazy(pattern) for pattern in tables["unions"]]
    terminals = {name: _Lazy(pattern) for name, pattern in tables["terminals"].items()}
    patterns = [_matcher(pattern, compiled) for pattern in tables["patterns"]]
    made: dict[tuple, dict] = {}  # many states share a table: made once each
    dispatches = [made.get(groups) or made.setdefault(groups, {
        ch: target if type(target) is str else patterns[target] for chars, target in groups for ch in chars})
        for groups in tables["dispatch"]]
    one_line = frozenset(tables["one_line"])  # lark counts the lines of some that cannot have two
    lexers = []
    for (pattern, order, union, extra, keywords, ignore, newlines), dispatch in zip(tables["lexers"], dispatches):
        own = _StateLexer(pattern, tuple(terminals[n] for n in order))
        if pattern in compiled:  # made from shipped code: the state's own pattern decides at once
            own.own.compiled = compiled[pattern]
            match = own.own.compiled.match
        else:
            match = _match(own, frozenset(order), unions[union] if union is not None else None, tuple(extra))
        multiline = tuple(name for name in newlines if name not in one_line)
        lexers.append((own, match, keywords, frozenset(ignore), frozenset(newlines), dispatch,
                       _handling(order, keywords, ignore, multiline)))
    skip = {ch: patterns[i] for chars, i in tables["skip"] for ch in chars}
    return {state: lexers[i] for state, i in tables["state_lexer"].items()}, skip


class _Driver:
    """A lean LALR(1) driver over the tables, lexers and child filters lark built for the grammar.

    It does what `lark.parse` with `_Newlines` and `_Builder` does -- the contextual lexer's
    matches (the same compiled patterns per parser state, the same keyword table), the post-lexer's
    newline rule, the LALR actions, lark's child filters, the `_ToAst` methods with the positions
    propagate_positions gives -- in one loop, with the positions kept on a stack beside the values
    instead of in Token and Meta objects.  It only takes valid input: at any error it raises
    `_Fail` (or the error itself) and `_Builder` parses the text again, so every diagnostic is the
    one lark gives.  tests/test_parser_builder.py checks its ASTs and spans against the parse tree.
    """

    def __init__(self, tables: dict, compiled: dict[str, re.Pattern] | None = None):
        self.start_states, self.end_states = tables["start"], tables["end"]
        self.actions = tables["actions"]  # state -> symbol -> next state (>= 0) or ~rule
        self.plans = _plans(tables["rules"])
        self.kept = frozenset(tables["kept"])
        # per start symbol: (state below, symbol, lookahead) -> the state a chain of unit reductions ends in
        self.units: dict[str, dict[tuple, int]] = {start: {} for start in self.start_states}
        self.lexers, self.skip = _state_lexers(tables, compiled or {})
        # the actions and lexers as lists indexed by state: what the loop reads per token
        states = range(len(self.actions))
        assert not any(self.actions[s].get("$END", -1) >= 0 for s in states), "the end is never shifted"
        self.by_state = [self.actions[s] for s in states]
        self.dispatch_by_state = [self.lexers[s][5] if s in self.lexers else {} for s in states]
        self.match_by_state = [self.lexers[s][1] if s in self.lexers else None for s in states]
        self.handling_by_state = [self.lexers[s][6] if s in self.lexers else {} for s in states]
        self.spaces = self.skip.get(" ", _Fail)  # the one matcher of the characters skipped (else never met)
        assert set(self.skip.values()) <= {self.spaces}

    def _units(self, below: int, symbol: str, lookahead: str, end_state: int) -> int:
        """The state a chain of unit reductions (`expr: or_expr`, `or_expr: and_expr`, ...) ends in: they
        change only the state on top of `below`, so the chain depends on nothing else."""
        state = self.actions[below][symbol]
        while not (lookahead == "$END" and state == end_state):
            act = self.actions[state].get(lookahead)
            if act is None or act >= 0 or self.plans[~act][0] != _UNIT:
                break
            state = self.actions[below][self.plans[~act][2]]
        return state

    def run(self, text: str, start: str, to_ast: "_ToAst", limit: int):
        """The value `start` reduces to for `text`; `_Fail` (or the method's error) when it is not valid.

        One loop, everything inlined: it runs once per token and once per reduction.  Beside the
        states and values, the stack keeps the extent of each value's first token (for a value
        without tokens: of the token after it, the lookahead when it was reduced) and its nesting
        depth.  A reduction's tokens run from its first child's first token to the last token
        shifted, so its extent -- lark's propagate_positions: from the first child's first token to
        the last child's last -- is read off two tokens, and only where a method makes a span."""
        actions, plans, kept = self.by_state, self.plans, self.kept
        dispatches, lexers, handling = self.dispatch_by_state, self.match_by_state, self.handling_by_state
        spaces, bracketing = self.spaces, _BRACKETING
        units = self.units[start]
        token = _Token
        end_state = self.end_states[start]
        state = self.start_states[start]
        states, values, firsts, depths = [state], [], [], []
        last_ext = None  # the extent of the last token shifted
        brackets: list[str] = []  # the post-lexer's open brackets, as in `_Brackets`
        prev_type = last_type = ""  # the types of the two tokens before this one
        pos, line, line_start, n = 0, 1, 0, len(text)
        tok = extent = by_char = None
        while True:
            if pos < n:  # spaces, which every state ignores, are skipped before looking at the state
                dispatch = dispatches[state]
                by_char = dispatch.get(text[pos])  # the terminals that may begin with this character
                if by_char is spaces:
                    pos = spaces(text, pos).end()
                    by_char = dispatch.get(text[pos]) if pos < n else None
            if pos < n:  # the next token, as lark's contextual lexer and the post-lexer give it
                begin, first_line, col = pos, line, pos - line_start + 1
                if by_char.__class__ is str:  # only this one-character token may: it is the token
                    type_ = by_char
                    pos += 1
                else:
                    m = (by_char or lexers[state])(text, pos)
                    if m is None:
                        raise _Fail
                    type_, pos = m.lastgroup, m.end()
                    how = handling[state][type_]
                    if how is not None:  # a keyword, a token of several lines, one to ignore
                        if how.__class__ is dict:
                            type_ = how.get(text[begin:pos], type_)
                        else:
                            if how & _MULTILINE:
                                k = text.count("\n", begin, pos)
                                if k:
                                    line += k
                                    line_start = text.rindex("\n", begin, pos) + 1
                            if how & _IGNORED:
                                continue
                            if how & _KEYWORDS:
                                type_ = self.lexers[state][2][type_].get(text[begin:pos], type_)
                if type_ in bracketing:  # `_Brackets.keep`, inlined
                    if type_ == "_NL":
                        if brackets and brackets[-1] != "body":
                            continue  # a newline inside brackets: dropped
                    elif type_ == "LPAR" or type_ == "LSQB":
                        brackets.append(type_)
                    elif type_ == "LBRACE":
                        brackets.append("body" if _opens_body(last_type, prev_type) else "dict")
                    elif brackets:
                        brackets.pop()
                    if len(brackets) > limit:
                        raise _TooDeep(None)
                prev_type, last_type = last_type, type_
                extent = (first_line, col, line, pos - line_start + 1, begin, pos)  # in Span's order
                if type_ in kept:
                    tok = token(text[begin:pos])
                    tok.ext = extent
                else:
                    tok = None
            else:
                type_, extent = "$END", _AT_END
            while True:  # reduce until the token shifts
                act = actions[state].get(type_)
                if act is None:
                    raise _Fail
                if act >= 0:  # shift (never the end: `__init__` checks)
                    state = act
                    states.append(act)
                    values.append(tok)
                    firsts.append(extent)
                    depths.append(0)
                    last_ext = extent
                    break
                kind, size, goto, arg, method, nesting = plans[~act]
                if kind == _BUILD1:  # as `_BUILD` below, for one child: its tokens are the reduction's
                    first = firsts[-1]
                    if first is last_ext:
                        ext = first
                    elif first is extent:  # pragma: no cover - no child of one that may be empty in this grammar
                        ext = None
                    else:
                        ext = (first[0], first[1], last_ext[2], last_ext[3], first[4], last_ext[5])
                    res = values[-1] = method(to_ast, ext, [values[-1]] if arg is None else arg(values))
                    if nesting:
                        depths[-1] += 1
                        if depths[-1] > limit:
                            raise _TooDeep(None)
                    key = (states[-2], goto, type_)
                    state = units.get(key)
                    if state is None:
                        state = units[key] = self._units(states[-2], goto, type_, end_state)
                    states[-1] = state
                    if type_ == "$END" and state == end_state:
                        return res
                    continue
                if size:
                    first = firsts[-size]
                    depth = depths[-1] if size == 1 else max(depths[-size:])
                    below = states[-size - 1]
                else:
                    first, depth, below = extent, 0, state
                if kind == _BUILD:
                    if first is extent:  # not shifted yet: no tokens
                        ext = None
                    elif first is last_ext:
                        ext = first
                    else:
                        ext = (first[0], first[1], last_ext[2], last_ext[3], first[4], last_ext[5])
                    res = method(to_ast, ext, arg(values))
                    if nesting:
                        depth += 1
                        if depth > limit:
                            raise _TooDeep(None)
                elif kind == _UNIT:
                    res = values[-1]
                elif kind == _LIST_ADD:
                    res = values[-size]
                    res += arg(values)
                elif kind == _PASS:
                    res = values[arg]
                elif kind == _VOID:
                    res = None
                else:
                    res = self._other(kind, arg, method, values, None if first is extent else (first, last_ext), to_ast)
                # the goto, and the chain of unit reductions that may follow it, memoised
                key = (below, goto, type_)
                state = units.get(key)
                if state is None:
                    state = units[key] = self._units(below, goto, type_, end_state)
                if size:
                    if size > 1:
                        del states[1 - size:], values[1 - size:], firsts[1 - size:], depths[1 - size:]
                    states[-1], values[-1], depths[-1] = state, res, depth
                else:
                    states.append(state)
                    values.append(res)
                    firsts.append(first)
                    depths.append(depth)
                if type_ == "$END" and state == end_state:
                    return values[-1]

    @staticmethod
    def _other(kind: int, arg, method, values: list, tokens: tuple | None, to_ast: "_ToAst"):
        """A `_LIST_NEW` reduction's list, or a `_SPLICE` one's value: lark's child filter, then a `?rule`
        with one child passes it up, a `_rule` is a list to splice, another rule calls its method."""
        kids = arg(values)
        if kind == _LIST_NEW or method is None:
            return kids
        if len(kids) == 1:  # pragma: no cover - no such `?rule` in the grammar
            return kids[0]
        first, last = tokens or (None, None)
        ext = None if first is None else (first[0], first[1], last[2], last[3], first[4], last[5])
        return method(to_ast, ext, kids)  # pragma: no cover


class _Builder:
    """Callbacks for lark's LALR parser that build the AST during the parse.

    For every value it builds (AST nodes, and lark Trees for the `_rules` that are spliced into
    their parents) it keeps, by id, the value's *container* extent -- its first and last token,
    brackets and keywords included, widened when a `?rule` passes it up through `( ... )` -- and
    its nesting depth.  A parent's positions are the extent of its raw children, exactly as with
    propagate_positions; so are the spans made from them.
    """

    def __init__(self, lark: Lark):
        from lark import Token, Tree

        self.token_type, self.tree_type = Token, Tree
        self.ast = _ToAst("<string>")
        self.meta = _Meta()  # the positions of the reduction being built
        import threading  # here, not at the top: valid text never gets this far

        self.lock = threading.RLock()
        self.limit = 200
        self.ext: dict[int, tuple] = {}  # id(value) -> (value, container extent or None, nesting depth)
        callbacks = {rule: self._callback(rule) for rule in lark.rules}
        lark.parser.parser.parser.callbacks.update(callbacks)  # the dict the LALR parser calls

    def _callback(self, rule):
        """The function lark calls to reduce `rule`: raw children -> AST value (or a Tree to splice)."""
        from lark.parse_tree_builder import maybe_create_child_filter

        tree = self.tree_type
        name = rule.alias or rule.options.template_source or rule.origin.name
        method = getattr(_ToAst, name, None)
        nesting = name in _NESTING_RULES
        expand1 = rule.options.expand1 and not rule.alias
        (only,) = rule.expansion if len(rule.expansion) == 1 else (None,)
        if expand1 and only is not None and not only.is_term and not only.name.startswith("_"):
            # `expr: or_expr` and the rest of the precedence chain: the child passes up unchanged
            # (same extent, same depth) -- most reductions of an expression are these.
            return _first

        def build(children):
            if expand1 and len(children) == 1:  # `?rule` with one child: pass it up
                return children[0]
            if method is None:  # `_rule`: spliced into its parent by the parent's child filter
                return tree(name, children)
            return method(self.ast, self.meta, children)

        child_filter = maybe_create_child_filter(rule.expansion, rule.options.keep_all_tokens, False,
                                                 rule.options.empty_indices)
        wrapped = child_filter(build) if child_filter is not None else build

        def callback(children):
            extent, depth = self._extent(children)
            self.meta = meta = _meta(extent)
            res = wrapped(children)
            if res is None:
                return res
            old = self.ext.get(id(res))
            if old is not None and old[0] is res:  # passed up (`?rule`, or `( expr )`): widen its container
                depth = old[2]
            elif nesting:
                depth += 1
                if depth > self.limit:
                    raise _TooDeep(None, meta)
            self.ext[id(res)] = (res, extent if extent is not None or old is None else old[1], depth)
            return res

        return callback

    def _extent(self, children: list) -> tuple[tuple | None, int]:
        """From the first token of the first child to the last of the last (None: no tokens), and
        the deepest child's nesting depth."""
        table, token = self.ext, self.token_type
        first = last = None
        depth = 0
        for c in children:
            if type(c) is token:
                e = (c.line, c.column, c.start_pos, c.end_line, c.end_column, c.end_pos)
            else:
                entry = table.get(id(c))
                if entry is None:
                    continue
                if entry[2] > depth:
                    depth = entry[2]
                e = entry[1]
                if e is None:  # a value without tokens
                    continue
            if first is None:
                first = e
            last = e
        if first is None:
            return None, depth
        return (first[0], first[1], first[2], last[3], last[4], last[5]), depth

    def run(self, lark: Lark, text: str, start: str, to_ast: "_ToAst", limit: int):
        """Parse `text` from `start` into AST values; re-entrant (labels parse their {expressions})."""
        with self.lock:  # one parse at a time per process (the state above is shared); re-entrant
            postlex = lark.options.postlex
            saved = self.ast, self.ext, self.limit, postlex.max_depth
            self.ast, self.ext, self.limit, postlex.max_depth = to_ast, {}, limit, limit
            collecting = gc.isenabled()
            gc.disable()  # an AST is acyclic: the cyclic collector's passes over a large one only cost time
            try:
                return lark.parse(text, start=start)
            finally:
                self.ast, self.ext, self.limit, postlex.max_depth = saved
                if collecting:
                    gc.enable()


@functools.lru_cache(maxsize=1)
def _builder() -> _Builder:
    return _Builder(_lark())


def _shipped_tables() -> dict | None:
    """resdsl/lalr_tables.py when it was made from this grammar (grammar/make_tables.py writes it)."""
    try:
        from . import lalr_tables
    except ImportError:  # pragma: no cover - the file is shipped
        return None
    # the grammar's own text, compared: a digest would import hashlib (OpenSSL), some ms of a cold start
    return lalr_tables.TABLES if getattr(lalr_tables, "GRAMMAR", None) == grammar_path().read_text() else None


def grammar_digest() -> str:
    """The SHA-256 of the grammar's text: which grammar resdsl/lalr_tables.py was made from."""
    import hashlib

    return hashlib.sha256(grammar_path().read_text().encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def _driver() -> _Driver:
    return _Driver(_shipped_tables() or _tables(_lark()), _precompiled())


@functools.lru_cache(maxsize=None)
def _regex(pattern: str) -> re.Pattern:
    """`re.compile(pattern)`, from the shipped code where there is some (see `_precompiled`)."""
    return _precompiled().get(pattern) or re.compile(pattern)


def _sre_key() -> tuple:
    """What compiled regular-expression code depends on: the interpreter and its `_sre` engine."""
    import _sre

    return (sys.implementation.name, sys.version_info[:2], _sre.MAGIC, _sre.CODESIZE)


def _sre_code(patterns: list[str]) -> dict:
    """The compiled form of each state's own lexer pattern, as `re.compile` hands it to `_sre.compile`
    (grammar/make_tables.py ships it in resdsl/lalr_tables.py): a process then makes the ~40
    per-state patterns in microseconds instead of running Python's regex compiler (milliseconds)."""
    from re import _compiler, _parser

    out = {}
    for pattern in patterns:
        parsed = _parser.parse(pattern, 0)
        names = [None] * parsed.state.groups
        for name, i in parsed.state.groupdict.items():
            names[i] = name
        out[pattern] = (parsed.state.flags, tuple(map(int, _compiler._code(parsed, 0))), parsed.state.groups - 1,
                        dict(parsed.state.groupdict), tuple(names))
    return {"key": _sre_key(), "code": out}


@functools.lru_cache(maxsize=1)
def _precompiled() -> dict[str, re.Pattern]:
    """Each state's own lexer pattern (and `_PATTERNS`), made from the shipped code when it was made
    by this interpreter's regex engine (else {}: the driver compiles what it needs, lazily).  The
    same `re.Pattern` as `re.compile` gives (tests/test_parser_builder.py compares them)."""
    import _sre

    from . import lalr_tables

    shipped = getattr(lalr_tables, "SRE", None)
    if shipped is None or shipped["key"] != _sre_key():
        return {}
    try:
        return {pattern: _sre.compile(pattern, flags, list(code), groups, groupindex, names)
                for pattern, (flags, code, groups, groupindex, names) in shipped["code"].items()}
    except (TypeError, RuntimeError, ValueError):  # pragma: no cover - an engine that takes other arguments
        return {}


def _run(text: str, start: str, to_ast: "_ToAst", limit: int):
    """Parse `text` from `start` into AST values: the lean driver, or lark's parser where the driver
    fails -- then lark reports the first error, exactly as it always did.  Re-entrant (labels parse
    the expressions in their braces)."""
    collecting = gc.isenabled()
    gc.disable()  # an AST is acyclic: the cyclic collector's passes over a large one only cost time
    try:
        try:
            return _driver().run(text, start, to_ast, limit)
        except (_Fail, _TooDeep, ResdslError):
            pass
        from lark.exceptions import UnexpectedInput

        try:
            return _builder().run(_lark(), text, start, to_ast, limit)
        except UnexpectedInput as e:
            raise _SyntaxFailure(e) from None
    finally:
        if collecting:
            gc.enable()


_DESCRIBE = {
    "_NL": "end of line", "LBRACE": "`{`", "RBRACE": "`}`", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`",
    "RSQB": "`]`", "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`", "NAME": "a name", "LABEL": "a label",
    "INT": "an integer", "FLOAT": "a number", "STRING": "a string", "$END": "end of file", "SEMICOLON": "`;`",
    "COMP": "a comparison", "DOT": "`.`", "MINUS": "`-`", "PLUS": "`+`", "STAR": "`*`", "SLASH": "`/`",
    "DOUBLESTAR": "`**`", "DOUBLESLASH": "`//`", "PERCENT": "`%`", "ELSE": "`else`", "__ANON_0": "`->`",
    "ASSERT": "`assert`",
}


def _describe(tok_type: str) -> str:
    return _DESCRIBE.get(tok_type, f"`{tok_type.lower()}`" if tok_type.isalpha() else tok_type)


def _syntax_error(e: UnexpectedInput, source: Source) -> ResdslError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    line, col = getattr(e, "line", 0) or 0, getattr(e, "column", 0) or 0
    if isinstance(e, UnexpectedEOF) or line <= 0:
        line, col = source.position(len(source.text.rstrip()))
    width = 1
    found = "this character"
    hint = None
    expected = sorted(getattr(e, "expected", None) or getattr(e, "allowed", None) or [])
    if isinstance(e, UnexpectedToken):
        tok = e.token
        width = max(1, len(str(tok))) if tok.type != "_NL" else 1
        found = "end of file" if tok.type == "$END" else ("end of line" if tok.type == "_NL" else f"`{tok}`")
        if tok.type == "$END":
            hint = "check that every `{`, `(` and `[` is closed"
    elif isinstance(e, UnexpectedCharacters):
        found = f"`{source.text[e.pos_in_stream]}`" if e.pos_in_stream < len(source.text) else "end of file"
        digit = _foreign_digits(source.text, e.pos_in_stream)
        if digit:  # Python's int() would take them; resdsl, like Python source, takes 0-9 only
            hint = f"write the number with the digits 0-9: `{digit}`"
    offset_here = len("\n".join(source.text.split("\n")[: line - 1])) + (1 if line > 1 else 0) + col - 1
    text_before = source.line(line)[: col - 1]
    if text_before.strip() == "else":  # `else if ...` on the line after the `}`: the newline ended the `if`
        at = offset_here - len(text_before) + text_before.index("else")
        return error("E001", "`else` must follow the closing `}` on the same line", Span.of(source, at, at + 4),
                     hint="join the lines: `} else if ...`")
    opener = _unclosed(source.text, offset_here)
    if opener is not None:  # LALR states are shared: only the closer of the open bracket can really come
        closer = {"(": "RPAR", "[": "RSQB", "{": "RBRACE"}[source.text[opener]]
        expected = [t for t in expected if t not in ("RPAR", "RSQB", "RBRACE") or t == closer]
    # Closing brackets first: a missing `)` is by far the likeliest mistake when one is expected.
    expected.sort(key=lambda t: (t not in ("RPAR", "RSQB", "RBRACE"), t))
    names = [_describe(t) for t in expected if not t.startswith("__")][:8]
    msg = f"unexpected {found}" + (f"; expected {', '.join(names)}" if names else "")
    notes = []
    # Point at the open bracket when the file ended inside it, or a ( or [ runs on past its line.
    if opener is not None and (found == "end of file" or (
            source.text[opener] in "([" and source.position(opener)[0] < line)):
        notes.append(Note(Span.of(source, opener, opener + 1), f"this `{source.text[opener]}` is not closed"))
        hint = hint or f"close the `{source.text[opener]}`"
    if hint is None and "LABEL" in expected and found.startswith("`"):
        hint = "a statement is a layer call `name(args)`, a label `name: layer(...)`, `x = expr`, `for`, `if`, `input`, `output`, `from`, `-> name` or `assert`"
    offset = len("\n".join(source.text.split("\n")[: line - 1])) + (1 if line > 1 else 0) + col - 1
    span = Span(named(source), line, col, line, col + width, offset, offset + width)
    return error("E001", msg, span, hint=hint, notes=notes)


def _foreign_digits(text: str, at: int) -> str | None:
    """The number at `at` in ASCII digits when it is written with other Unicode digits, else None."""
    end = at
    while end < len(text) and (text[end].isdecimal() or text[end] == "_"):
        end += 1
    run = text[at:end].replace("_", "")
    return str(int(run)) if run and not run.isascii() else None


def _unclosed(text: str, end: int) -> int | None:
    """Offset of the innermost bracket still open at `end` (strings and comments skipped), or None."""
    stack: list[int] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    i = 0
    while i < min(end, len(text)):
        c = text[i]
        if c == "#":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        if c in "\"'":
            j = i + 1
            while j < len(text) and text[j] not in (c, "\n"):
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([{":
            stack.append(i)
        elif c in pairs and stack and text[stack[-1]] == pairs[c]:
            stack.pop()
        i += 1
    return stack[-1] if stack else None


def _parse_expr(text: str, file: str, dline: int, dcol: int, dpos: int, limit: int) -> ast.Expr:
    """An expression inside a label's or name's braces; positions shifted to where it stands."""
    return _run(text, "expr", _ToAst(file, dline, dcol, dpos, limit), limit)


# Parsed modules by (file name, text, nesting limit), least recently used first.  Values are
# immutable, so one parse serves every load in the process.  The bound is on memory, through the
# characters of source kept: a file of the examples holds ~40 bytes of AST (and key) per character,
# but a hostile valid text up to ~285 (tracemalloc, h14: `f(a < a, a < a, ...)` in a body 280-283,
# `f;` 253-256, `[-a, ...]` 200), so 250,000 characters are at most ~71 MB (88 MB at 350 bytes per
# character) -- still ~60 files the size of the examples.  A text longer than that alone is not
# kept (a 500 kB file would be ~140 MB), and at most _CACHE_ENTRIES entries are (an empty text
# under a new name still holds ~1.2 kB: ~5 MB more at most).
_CACHE: "OrderedDict[tuple[str, str, int], ast.Module]" = OrderedDict()
_CACHE_CHARS = 250_000
_CACHE_ENTRIES = 4096
_CACHE_BYTES_PER_CHAR = 350  # the worst measured above, with room (tests/test_cache_memory.py checks it)
# Threads loading at once: lookups, inserts and evictions under one lock (q14: summing the keys while
# another thread inserted raised "OrderedDict mutated during iteration").  The characters held are
# counted as entries come and go (summing them at every insert made 20,000 small texts quadratic).
_CACHE_LOCK = _thread.allocate_lock()
_cached_chars = 0


def _remember(key: tuple[str, str, int], module: ast.Module) -> None:
    global _cached_chars
    if len(key[1]) > _CACHE_CHARS:
        return  # alone over the bound: parsed again when it is asked for again
    with _CACHE_LOCK:
        if not _CACHE:
            _cached_chars = 0  # (emptied from outside: tests and the bench clear it)
        if _CACHE.pop(key, None) is not None:
            _cached_chars -= len(key[1])
        _CACHE[key] = module
        _cached_chars += len(key[1])
        while (_cached_chars > _CACHE_CHARS or len(_CACHE) > _CACHE_ENTRIES) and len(_CACHE) > 1:
            old, _ = _CACHE.popitem(last=False)
            _cached_chars -= len(old[1])


def _recall(key: tuple[str, str, int]) -> ast.Module | None:
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
        return hit


def parse(text: str, file: str = "<string>", limits: Limits = DEFAULT) -> ast.Module:
    """Parse one .res source into a `syntax.Module` (cached by content); raises `ResdslError`."""
    source = register(Source(file, text))
    key = (file, text, limits.max_nesting)
    hit = _recall(key)
    if hit is not None:
        return hit
    limit = limits.max_nesting
    file = named(source)  # the same name, holding its source: every span quotes this text (span._Name)
    try:
        items = _run(text + "\n", "start", _ToAst(file, limit=limit), limit)
    except _SyntaxFailure as failure:
        raise _syntax_error(failure.error, source) from None
    except _TooDeep as e:
        if e.tok is None:  # found by the builder: report it where the tree walk always did
            e = _first_too_deep(text + "\n", "start", limit)
        raise _too_deep(e, source, limit) from None
    module = ast.Module(file, tuple(items))
    _remember(key, module)
    return module


def parse_expression(text: str) -> ast.Expr:
    """Parse a lone expression (used for `--set NAME=VALUE`)."""
    source = register(Source("<command line>", text))
    try:
        return _run(text, "expr", _ToAst("<command line>"), DEFAULT.max_nesting)
    except _SyntaxFailure as failure:
        raise _syntax_error(failure.error, source) from None
    except _TooDeep as e:
        if e.tok is None:
            e = _first_too_deep(text, "expr", DEFAULT.max_nesting)
        raise _too_deep(e, source, DEFAULT.max_nesting) from None


class _Recorder(_Newlines):
    """The newline post-lexer, also keeping every token it sees (before dropping any newline)."""

    def __init__(self, sink: list):
        self.sink = sink

    def process(self, stream):
        def record(stream):
            for tok in stream:
                self.sink.append(tok)
                yield tok
        return super().process(record(stream))


_TOKENS_LOCK = _thread.allocate_lock()


@functools.lru_cache(maxsize=1)
def _token_lark() -> tuple[Lark, list]:
    """A second parser that records every token, comments and newlines included."""
    sink: list = []
    return _new_lark(postlex=_Recorder(sink), lexer_callbacks={"COMMENT": sink.append}), sink


def tokens(text: str, file: str = "<string>", limits: Limits = DEFAULT) -> list[Token]:
    """Every token of a valid source in order, with COMMENT and _NL tokens kept (for the formatter).

    The text is first parsed normally (so errors are the usual diagnostics);
    the contextual lexer then decides labels, names and keywords exactly as
    the parser sees them."""
    parse(text, file, limits)
    lark, sink = _token_lark()
    with _TOKENS_LOCK:  # one parser and one sink for the process: two threads interleaved their tokens (q14)
        sink.clear()
        lark.options.postlex.max_depth = limits.max_nesting
        try:
            lark.parse(text + "\n", start="start")
            return sorted(sink, key=lambda t: t.start_pos)
        finally:
            sink.clear()

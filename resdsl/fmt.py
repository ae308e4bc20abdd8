"""The canonical formatter: .res text -> .res text with the same meaning, comments kept.

Reads the token stream of a valid file (`parser.tokens`, comments and
newlines included); writes text with 4-space indentation, one statement per
line, single spaces around binary operators, `->` and assignment `=`, no
spaces around `=` in keyword arguments and parameter defaults
(`kernel_size=3`), `, ` between items, and brackets laid out one of two ways:
on one line without a trailing comma, or -- when the source already broke
the line inside them or a comment sits inside -- one item per line, each
followed by a comma.  Runs of blank lines shrink to one.  Formatting is
idempotent and never changes the parse (tests compare the ASTs and the IR).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lark import Token

from .limits import DEFAULT, Limits
from .parser import tokens

INDENT = "    "
OPEN = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
BODY_AFTER = {"NAME", "TNAME", "RPAR", "RSQB", "INT", "FLOAT", "STRING", "TRUE", "FALSE", "NONE"}
BINARY = {"PLUS", "MINUS", "STAR", "SLASH", "__ANON_1", "PERCENT", "__ANON_2", "COMP", "AND", "OR", "IN", "__ANON_0"}
# After these a `-`/`+` is a sign, not an operator.
SIGN_AFTER = BINARY | {"EQUAL", "COMMA", "COLON", "LPAR", "LSQB", "LBRACE", "NOT", "IF", "ELSE", "LABEL", None}


@dataclass
class Group:
    """A bracket pair inside a statement: items split at its top-level commas."""

    open: Token
    items: list[list] = field(default_factory=list)  # each item: a list of Token | Group
    comments: dict[int, list[str]] = field(default_factory=dict)  # item index -> comments after it
    lead: list[str] = field(default_factory=list)  # comments before the first item
    broken: bool = False  # the source had a line break inside


@dataclass
class Body:
    items: list = field(default_factory=list)  # Stmt | ("comment", text) | ("blank",)
    head_comment: str | None = None  # a comment right after the opening `{`, kept on that line


@dataclass
class Stmt:
    parts: list = field(default_factory=list)  # Token | Group | Body
    comment: str | None = None


class FormatterBug(RuntimeError):
    """The token stream is not one the formatter knows how to lay out.

    `parser.tokens` only returns the tokens of a text that parsed, so this is a
    bug in resdsl (the CLI reports it as an internal error, exit 70).  We raise
    rather than return the text unchanged: `fmt --check` would then call a file
    formatted that was never looked at, and the bug would stay hidden."""


class _Reader:
    """Reads tokens into Body/Stmt/Group.  Every loop iteration either takes a
    token or leaves its loop, so a read ends after at most len(toks) steps."""

    def __init__(self, toks: list[Token]):
        self.toks = toks
        self.i = 0
        self.prev: list[str | None] = [None, None]  # previous two significant token types (for body braces)

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> Token:
        tok = self.peek()
        if tok is None or (expected is not None and tok.type != expected):
            raise FormatterBug(f"fmt: expected {expected or 'a token'}, found {tok and tok.type} at token {self.i}")
        self.i += 1
        if tok.type not in ("COMMENT", "_NL"):
            self.prev = [self.prev[-1], tok.type]
        return tok

    def is_body_brace(self) -> bool:
        p1, p2 = self.prev[-1], self.prev[-2]
        return p1 in BODY_AFTER or (p1 == "ELSE" and p2 == "RBRACE")

    # ---------------------------------------------------------------- structure

    def body(self, top: bool) -> Body:
        b = Body()
        if not top and (tok := self.peek()) is not None and tok.type == "COMMENT":
            b.head_comment = str(self.take()).rstrip()
        while (tok := self.peek()) is not None:
            if tok.type == "_NL":
                self.take()
                if tok.count("\n") >= 2 and b.items and b.items[-1] != ("blank",):
                    b.items.append(("blank",))
            elif tok.type == "SEMICOLON":
                self.take()
            elif tok.type == "COMMENT":
                self.take()
                b.items.append(("comment", str(tok).rstrip()))
            elif tok.type == "RBRACE" and not top:
                break
            else:
                start = self.i
                b.items.append(self.stmt())
                if self.i == start:  # e.g. a `}` at the top level: stmt stops before it, and so would we, forever
                    raise FormatterBug(f"fmt: unexpected {tok.type} at token {start}")
        while b.items and b.items[-1] == ("blank",):
            b.items.pop()
        if b.items and b.items[0] == ("blank",):
            b.items.pop(0)
        return b

    def stmt(self) -> Stmt:
        s = Stmt()
        while (tok := self.peek()) is not None:
            if tok.type in ("_NL", "SEMICOLON") or (tok.type == "RBRACE"):
                break
            if tok.type == "COMMENT":
                s.comment = str(self.take()).rstrip()
                break
            if tok.type == "LBRACE" and self.is_body_brace():
                self.take()
                s.parts.append(self.body(top=False))
                self.take("RBRACE")
                s.parts.append("}")
            elif tok.type in OPEN:
                s.parts.append(self.group())
            else:
                s.parts.append(self.take())
        return s

    def group(self) -> Group:
        g = Group(self.take())
        close = OPEN[g.open.type]
        item: list = []
        while (tok := self.peek()) is not None:
            if tok.type == close:
                self.take()
                break
            if tok.type == "_NL":
                self.take()
                g.broken = True
            elif tok.type == "COMMENT":
                self.take()
                g.broken = True
                text = str(tok).rstrip()
                if item or g.items:  # after an item (or its comma): a trailing comment of that item
                    g.comments.setdefault(len(g.items) - (0 if item else 1), []).append(text)
                else:
                    g.lead.append(text)
            elif tok.type == "COMMA":
                self.take()
                g.items.append(item)
                item = []
            elif tok.type in OPEN:
                item.append(self.group())
            else:
                item.append(self.take())
        if item:
            g.items.append(item)
        return g


# -------------------------------------------------------------------- printing

def _type(x) -> str | None:
    if isinstance(x, Token):
        return x.type
    if isinstance(x, Group):
        return x.open.type
    return None


def _space(prev, cur, prev_prev, in_group: bool) -> str:
    """The spacing between two neighbouring parts of a statement."""
    p, c = _type(prev), _type(cur)
    if prev is None:
        return ""
    if c in ("COMMA", "DOT", "COLON") or p == "DOT":
        return ""
    if c in ("LPAR", "LSQB") and p in ("NAME", "RPAR", "RSQB", "STRING") and isinstance(cur, Group):
        # a call `conv(` or an index `x[0]`; `relu (x)` is not valid anyway
        return ""
    if isinstance(prev, Group) and isinstance(cur, Group) and c == "LSQB":
        return ""  # indexing a literal or a call: {...}[depth], [1, 2][i]
    if c == "EQUAL" or p == "EQUAL":
        return "" if in_group else " "
    if p in ("MINUS", "PLUS") and not isinstance(prev_prev, Group) and _type(prev_prev) in SIGN_AFTER:
        return ""  # a sign: -1, -x
    return " "


def _tok(x) -> str:
    return str(x)


class _Printer:
    def __init__(self):
        self.lines: list[str] = []

    def parts(self, parts: list, depth: int, in_group: bool) -> str:
        """Render the parts of one statement or item; may contain newlines (broken groups)."""
        out = ""
        prev = prev_prev = None
        for x in parts:
            if isinstance(x, Body):
                continue  # bodies are printed by `stmt`
            out += _space(prev, x, prev_prev, in_group)
            out += self.group(x, depth) if isinstance(x, Group) else _tok(x)
            prev_prev, prev = prev, x
        return out

    def group(self, g: Group, depth: int) -> str:
        close = {"LPAR": ")", "LSQB": "]", "LBRACE": "}"}[g.open.type]
        items = [it for it in g.items if it]
        if not g.broken or not items:
            if g.lead or g.comments:  # comments but no items: keep them on their own lines
                pad = INDENT * (depth + 1)
                body = "".join(f"\n{pad}{c}" for c in g.lead + [c for cs in g.comments.values() for c in cs])
                return str(g.open) + body + "\n" + INDENT * depth + close
            return str(g.open) + ", ".join(self.parts(it, depth, True) for it in items) + close
        pad = INDENT * (depth + 1)
        out = str(g.open)
        for c in g.lead:
            out += f"\n{pad}{c}"
        for i, it in enumerate(g.items):
            if not it:
                continue
            out += f"\n{pad}{self.parts(it, depth + 1, True)},"
            cs = g.comments.get(i, [])
            if cs:
                out += "  " + cs[0]
                out += "".join(f"\n{pad}{c}" for c in cs[1:])
        return out + "\n" + INDENT * depth + close

    def body(self, b: Body, depth: int) -> None:
        for item in b.items:
            if item == ("blank",):
                self.lines.append("")
            elif isinstance(item, tuple):
                self.lines.append(INDENT * depth + item[1])
            else:
                self.stmt(item, depth)

    def stmt(self, s: Stmt, depth: int) -> None:
        # Split the statement at its bodies: head { body } tail { body } ...
        segment: list = []
        pending = INDENT * depth
        for x in s.parts:
            if isinstance(x, Body):
                text = self.parts(segment, depth, False)
                head = pending + (" " if pending.strip() and text else "") + text
                self.lines.append(head + " {" + (f"  {x.head_comment}" if x.head_comment else ""))
                self.body(x, depth + 1)
                segment = []
                pending = INDENT * depth
            elif x == "}":
                pending = INDENT * depth + "}"
                segment = []
            else:
                segment.append(x)
        tail = self.parts(segment, depth, False)
        line = pending + ((" " if pending.strip() and tail else "") + tail)
        if s.comment:
            line = (line + "  " + s.comment) if line.strip() else INDENT * depth + s.comment
        self.lines.append(line.rstrip())


def format_source(text: str, file: str = "<string>", limits: Limits = DEFAULT) -> str:
    """Format a .res source; raises ResdslError (E001...) when it does not parse."""
    toks = tokens(text, file, limits)
    body = _Reader(toks).body(top=True)
    p = _Printer()
    p.body(body, 0)
    return "\n".join(p.lines).rstrip("\n") + "\n" if p.lines else ""

"""Source text and spans: where every AST node, IR node and diagnostic points.

A `Span` is a half-open character range in one `Source`, with 1-based line and
column numbers for people.  Spans are values (frozen), cheap to copy and to
compare; the text they point into lives in the `Source` registry so errors can
show an excerpt long after parsing.

Lines are what the lexer counts: a line ends at "\\n" (a "\\r" before it is
part of the ending), nothing else.  Python's `str.splitlines` also breaks at
form feeds, U+2028 and eight other characters a comment may contain, so it is
never used here: line numbers, columns and excerpts all come from the one
table of line starts below.
"""
from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One file's text. `name` is what users see (a path, or '<string>').

    `quotable` is False for a file that is not a .res source (its content is
    never shown in an excerpt)."""

    name: str
    text: str
    quotable: bool = True

    @functools.cached_property
    def line_starts(self) -> tuple[int, ...]:
        """Offset of the first character of every line (computed once per source)."""
        starts = [0]
        find, text = self.text.find, self.text
        i = find("\n")
        while i >= 0:
            starts.append(i + 1)
            i = find("\n", i + 1)
        return tuple(starts)

    def line(self, n: int) -> str:
        """Line `n` (1-based) without its line ending; '' when there is no such line."""
        starts = self.line_starts
        if not 0 < n <= len(starts):
            return ""
        end = starts[n] - 1 if n < len(starts) else len(self.text)
        text = self.text[starts[n - 1]:end]
        return text[:-1] if text.endswith("\r") else text

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        i = bisect.bisect_right(self.line_starts, offset) - 1
        return i + 1, offset - self.line_starts[i] + 1

    def offset(self, line: int, col: int) -> int:
        """Character offset of a 1-based (line, column); clamped to the text."""
        starts = self.line_starts
        line = max(1, min(line, len(starts)))
        return max(0, min(starts[line - 1] + col - 1, len(self.text)))


@dataclass(frozen=True, slots=True)
class Span:
    file: str
    line: int
    col: int
    end_line: int
    end_col: int
    start: int = 0  # character offsets into the source
    end: int = 0

    def __str__(self) -> str:
        # line 0: the whole file (e.g. a command-line option that names nothing in it)
        return f"{self.file}:{self.line}:{self.col}" if self.line > 0 else self.file

    @staticmethod
    def of(source: Source, start: int, end: int) -> "Span":
        l1, c1 = source.position(start)
        l2, c2 = source.position(end)
        return Span(named(source), l1, c1, l2, c2, start, end)


class _Name(str):
    """A span's file name that also holds the source the span points into (`.source`).

    The same string (equal, same hash, printed the same), so a span costs nothing
    more, yet `lookup` finds the very text the span was made from: two `loads()`
    both named '<string>' no longer quote each other's lines.  The source does not
    hold its `_Name` back: no reference cycle (loads run with the cyclic collector off)."""

    source: Source


def named(source: Source) -> str:
    """`source.name`, holding `source`: what the parser puts in every span's `file`."""
    name = _Name(source.name)
    name.source = source
    return name


# The last source registered under each name, for spans made from a plain name (and the LSP).
_SOURCES: dict[str, Source] = {}
# Names whose content must never be quoted (set by the loader for files that are not .res sources).
_UNQUOTABLE: set[str] = set()


def register(source: Source) -> Source:
    if source.name in _UNQUOTABLE and source.quotable:
        source = Source(source.name, source.text, quotable=False)
    _SOURCES[source.name] = source
    return source


def forbid_quotes(name: str) -> None:
    """Never show an excerpt of `name` (a file that is not a .res source)."""
    _UNQUOTABLE.add(name)
    if name in _SOURCES:
        src = _SOURCES[name]
        _SOURCES[name] = Source(src.name, src.text, quotable=False)


def lookup(name: str) -> Source | None:
    """The source a span's `file` names: the one it was made from when it holds it (`named`),
    else the last registered under that name; never a quotable one for a name in `_UNQUOTABLE`."""
    own = getattr(name, "source", None)
    return own if own is not None and name not in _UNQUOTABLE else _SOURCES.get(name)


UNKNOWN = Span("<unknown>", 0, 0, 0, 0)

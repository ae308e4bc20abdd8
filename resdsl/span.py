"""Source text and spans: where every AST node, IR node and diagnostic points.

A `Span` is a half-open character range in one `Source`, with 1-based line and
column numbers for people.  Spans are values (frozen), cheap to copy and to
compare; the text they point into lives in the `Source` registry so errors can
show an excerpt long after parsing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One file's text. `name` is what users see (a path, or '<string>')."""

    name: str
    text: str

    def line(self, n: int) -> str:
        lines = self.text.splitlines()
        return lines[n - 1] if 0 < n <= len(lines) else ""

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = self.text.count("\n", 0, offset) + 1
        col = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return line, col


@dataclass(frozen=True)
class Span:
    file: str
    line: int
    col: int
    end_line: int
    end_col: int
    start: int = 0  # character offsets into the source
    end: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    @staticmethod
    def of(source: Source, start: int, end: int) -> "Span":
        l1, c1 = source.position(start)
        l2, c2 = source.position(end)
        return Span(source.name, l1, c1, l2, c2, start, end)


# Every source seen in this process, so diagnostics can quote any span.
_SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    _SOURCES[source.name] = source
    return source


def lookup(name: str) -> Source | None:
    return _SOURCES.get(name)


UNKNOWN = Span("<unknown>", 0, 0, 0, 0)

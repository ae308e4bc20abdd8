"""Diagnostics are data: a code, a message, a primary span, notes, a hint.

They are raised together inside one `ResdslError` and rendered separately
(`render`), so the CLI, the Python API and the tests all see the same facts.
Every code is listed in `CODES` with a one-line title; docs/errors.md is
written from it.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

from .span import UNKNOWN, Span, lookup

# Stable error codes. Never renumber: users search for them.
CODES: dict[str, str] = {
    "E001": "syntax error",
    "E002": "unreadable file",
    "E003": "import cycle",
    "E004": "invalid string literal",
    "E010": "undefined name",
    "E011": "duplicate definition",
    "E012": "unknown operation or block",
    "E013": "wrong arguments",
    "E014": "bad argument value",
    "E015": "type error in expression",
    "E016": "recursion without end",
    "E017": "network not found",
    "E018": "unknown network parameter",
    "E019": "invalid label",
    "E020": "duplicate layer name",
    "E021": "misplaced statement",
    "E030": "shape mismatch in residual add",
    "E031": "shape mismatch in concatenation",
    "E032": "shape mismatch in addition",
    "E033": "invalid input shape for operation",
    "E034": "kernel larger than input",
    "E035": "channels not divisible by groups",
    "E036": "non-positive size",
    "E037": "network has no input or output",
    "E040": "resource limit exceeded",
    "E041": "arithmetic error",
    "E042": "assertion failed",
    "E050": "too many residual blocks to unravel",
}


@dataclass(frozen=True)
class Note:
    span: Span
    message: str


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span = UNKNOWN
    notes: tuple[Note, ...] = ()
    hint: str | None = None

    def __post_init__(self) -> None:
        assert self.code in CODES, f"internal error: unregistered code {self.code}"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.col,
            "end_line": self.span.end_line,
            "end_column": self.span.end_col,
            "hint": self.hint,
            "notes": [
                {"message": n.message, "file": n.span.file, "line": n.span.line, "column": n.span.col}
                for n in self.notes
            ],
        }


class ResdslError(Exception):
    """Raised for anything wrong with a .res file; carries >= 1 diagnostics."""

    def __init__(self, diagnostics: Diagnostic | Iterable[Diagnostic]):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        assert self.diagnostics
        super().__init__(self.render())

    @property
    def first(self) -> Diagnostic:
        return self.diagnostics[0]

    def render(self, color: bool = False) -> str:
        return "\n".join(render(d, color) for d in self.diagnostics)


def error(code: str, message: str, span: Span = UNKNOWN, *, hint: str | None = None,
          notes: Iterable[Note] = ()) -> ResdslError:
    return ResdslError(Diagnostic(code, message, span, tuple(notes), hint))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


MAX_EXCERPT = 100  # characters of a source line shown around a caret


def _excerpt(span: Span, color: bool) -> list[str]:
    src = lookup(span.file)
    if src is None or span.line <= 0:
        return []
    text = src.line(span.line)
    width = len(str(span.line))
    end = span.end_col if span.end_line == span.line and span.end_col > span.col else len(text) + 1
    start = span.col - 1
    # Tabs are shown as 4 spaces so the caret stays under the span; control characters as `?`.
    shown = "".join("    " if c == "\t" else ("?" if ord(c) < 32 or c == "\x7f" else c) for c in text)
    lead = start + 3 * text[:start].count("\t")
    span_w = max(1, (end - 1 - start) + 3 * text[start:end - 1].count("\t"))
    if len(shown) > MAX_EXCERPT:  # a generated one-line file: show a window around the caret
        left = max(0, min(lead - MAX_EXCERPT // 3, len(shown) - MAX_EXCERPT))
        shown = ("..." if left else "") + shown[left:left + MAX_EXCERPT] + ("..." if left + MAX_EXCERPT < len(shown) else "")
        lead = lead - left + (3 if left else 0)
        span_w = max(1, min(span_w, MAX_EXCERPT - (lead - (3 if left else 0))))
    red, reset = ("\x1b[31;1m", "\x1b[0m") if color else ("", "")
    return [
        f"{' ' * width} |",
        f"{span.line} | {shown}",
        f"{' ' * width} | {' ' * lead}{red}{'^' * span_w}{reset}",
    ]


def render(d: Diagnostic, color: bool = False) -> str:
    """Render like rustc/gdtoolkit: location, message, excerpt with caret, notes, hint."""
    bold, reset = ("\x1b[1m", "\x1b[0m") if color else ("", "")
    lines = [f"{bold}{d.span}: error[{d.code}]: {d.message}{reset}"]
    lines += _excerpt(d.span, color)
    for note in d.notes:
        lines.append(f"  note: {note.span}: {note.message}")
        lines += ["  " + s for s in _excerpt(note.span, False)]
    if d.hint:
        lines.append(f"  hint: {d.hint}")
    return "\n".join(lines)

"""Diagnostics are data: a code, a message, a primary span, notes, a hint.

They are raised together inside one `ResdslError` and rendered separately
(`render`), so the CLI, the Python API and the tests all see the same facts.
Every code is listed in `CODES` with a one-line title; docs/errors.md is
written from it.
"""
from __future__ import annotations

import unicodedata
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


MAX_SHOWN = 50  # diagnostics rendered for one error; the rest are counted


class ResdslError(Exception):
    """Raised for anything wrong with a .res file; carries >= 1 diagnostics."""

    def __init__(self, diagnostics: Diagnostic | Iterable[Diagnostic]):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        assert self.diagnostics
        # Rendering reads source lines: do it only when the text is asked for, never when the
        # error is raised (an error inside a long loop is raised, and deduplicated, many times).
        super().__init__(self.diagnostics[0].message)

    def __str__(self) -> str:
        return self.render()

    @property
    def first(self) -> Diagnostic:
        return self.diagnostics[0]

    def render(self, color: bool = False, limit: int = MAX_SHOWN) -> str:
        """The first `limit` diagnostics, rendered, and a line counting the rest."""
        shown = [render(d, color) for d in self.diagnostics[:limit]]
        if len(self.diagnostics) > limit:
            shown.append(f"... and {len(self.diagnostics) - limit} more errors not shown")
        return "\n".join(shown)


def error(code: str, message: str, span: Span = UNKNOWN, *, hint: str | None = None,
          notes: Iterable[Note] = ()) -> ResdslError:
    return ResdslError(Diagnostic(code, message, span, tuple(notes), hint))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the candidate `name` was most likely meant to be, or None.

    First a match ignoring case and underscores (`Relu`, `LeakyReLU`); then the
    closest by edit distance (a transposition counts one), within 1 edit for
    names of up to 6 characters and 2 beyond; then a candidate that `name`
    abbreviates (`kernel` for `kernel_size`).  A candidate that `name`
    merely contains (`relu` in `relu6`, `elu` in `selu`) is never suggested:
    the extra characters usually name a different op, so the hint would
    check but mean something else.  Only a doubled letter is forgiven (`maxx`).
    """
    cands = sorted(set(candidates))
    key = name.lower().replace("_", "")
    for c in cands:
        if c.lower().replace("_", "") == key:
            return f"did you mean `{c}`?" if c != name else None
    low = name.lower()
    budget = 1 if len(name) <= 6 else 2
    best: tuple[tuple[float, int, int], str] | None = None
    for c in cands:
        cl = c.lower()
        if cl in low and not _doubled(low, cl):
            continue
        # An abbreviation (`kernel` for `kernel_size`) ranks after every near-miss.
        d = _distance(low, cl, budget) if not (len(low) >= 3 and cl.startswith(low)) else budget + 0.5
        if _doubled(low, cl):
            d = 0.5  # a letter typed twice (`reluu`) beats a different op one edit away (`relu6`)
        score = (d, abs(len(c) - len(name)), len(c))  # ties: a same-length candidate (a swap) first
        if d <= budget + 0.5 and d < len(c) and (best is None or score < best[0]):
            best = (score, c)
    return f"did you mean `{best[1]}`?" if best else None


def _doubled(name: str, cand: str) -> bool:
    """`name` is `cand` with one letter typed twice (`maxx`, `sigmoidd`)."""
    return len(name) == len(cand) + 1 and any(
        name[:i] + name[i + 1:] == cand and name[i] == name[i - 1] for i in range(1, len(name)))


def _distance(a: str, b: str, budget: int) -> int:
    """Optimal-string-alignment edit distance, or budget + 1 once it is certainly larger."""
    if abs(len(a) - len(b)) > budget:
        return budget + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


MAX_EXCERPT = 100  # characters of a source line shown around a caret


def _excerpt(span: Span, color: bool) -> list[str]:
    src = lookup(span.file)
    if src is None or not src.quotable or span.line <= 0:
        return []
    text = src.line(span.line)
    width = len(str(span.line))
    end = span.end_col if span.end_line == span.line and span.end_col > span.col else len(text) + 1
    start = span.col - 1
    # Tabs are shown as 4 spaces so the caret stays under the span; control and format characters
    # (form feeds, U+2028, bidi overrides) as `?`, so the terminal shows exactly one line.
    shown = "".join("    " if c == "\t" else ("?" if _invisible(c) else c) for c in text)
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


def _invisible(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")


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

"""Progress lines for long runs (size scans, lesion studies, variance seeds).

A line redrawn in place with '\\r' is only readable on a terminal; written to a log or a pipe it is
noise, so nothing is drawn unless the stream is a terminal.  Any stage may use this (it imports nothing).
"""
from __future__ import annotations

import sys


def draw(text: str, stream=None) -> None:
    """Redraw the progress line in place -- only when the stream (default stderr) is a terminal."""
    stream = stream if stream is not None else sys.stderr
    if _isatty(stream):
        print(f"\r{text}", end="", file=stream, flush=True)


def end(stream=None) -> None:
    """Finish a progress line drawn with `draw` (a newline, on a terminal only)."""
    stream = stream if stream is not None else sys.stderr
    if _isatty(stream):
        print(file=stream, flush=True)


class Progress:
    """Progress of a long run on `stream` (default stderr): redrawn in place with '\\r' on a terminal;
    in a log, one plain line per step, at most `max_lines` of them evenly spread, so logs carry no
    carriage returns.  `step()` after each unit of work, `close()` (or `with`) at the end."""

    def __init__(self, what: str, total: int, stream=None, max_lines: int = 20):
        self.what, self.total = what, total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream)
        self.every = max(1, -(-total // max_lines))
        self.done = 0

    def step(self, detail: str = "") -> None:
        self.done += 1
        text = f"{self.what} {self.done}/{self.total}" + (f" ({detail})" if detail else "")
        if self.tty:
            print(f"\r{text}\x1b[K", end="", file=self.stream, flush=True)
        elif self.done % self.every == 0 or self.done == self.total:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self.done:
            print(file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False

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
    """A progress line redrawn in place with '\\r' -- only on a terminal; in a log nothing is written.

    Use as `with Progress("lesion:") as p: ... p(k, n)`; leaving ends the line (terminal only)."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.on = _isatty(self.stream)
        self.drawn = False

    def __call__(self, i: int, n: int, detail: str = "") -> None:
        if self.on:
            draw(f"{self.label} {i}/{n}{' ' + detail if detail else ''}", self.stream)
            self.drawn = True

    def close(self) -> None:
        """End the line (only if one was drawn)."""
        if self.drawn:
            end(self.stream)
            self.drawn = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False

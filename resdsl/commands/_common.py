"""What every subcommand shares: exit codes, usage errors, the common arguments, loading the network they
name, strict number arguments, progress lines and output.

The commands import this module and resdsl/cli.py imports the commands -- never the reverse, so a
command can be imported (and tested) without the command line around it.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_TOOL, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 70, 130

# Numbers on the command line are ASCII: int() and str.isdigit() also accept '３', '٣' and (isdigit) '²',
# which then either mean something the user cannot see or crash int().  One rule for every option.
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
MAX_INT = 2**63 - 1  # what torch (seeds, sizes) and every C library underneath accepts


class UsageError(Exception):
    """A mistake on the command line: the CLI prints `resdsl CMD: error: MESSAGE` and exits 2."""


class ToolMissing(Exception):
    """An optional tool or package is not installed: the CLI prints the message (say how to install it), exits 3."""


def usage(msg: str) -> int:
    """Print a usage error now and return EXIT_USAGE (for `raise SystemExit(usage(...))`; prefer UsageError)."""
    print(f"resdsl: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


_usage = usage  # the name the commands used before this module existed


def ascii_int(text: str) -> int:
    """argparse type for integer options: ASCII digits only, within 64 bits."""
    t = text.strip()
    if not _INT.fullmatch(t) or len(t) > 20:
        raise argparse.ArgumentTypeError(f"expected an integer in ASCII digits, got {text!r}")
    n = int(t)
    if abs(n) > MAX_INT:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (at most {MAX_INT})")
    return n


def _whole(text: str, bound: str) -> int:
    try:
        return ascii_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a whole number {bound} in ASCII digits, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 in ASCII digits (counts: --batch, --samples, --seeds)."""
    n = _whole(text, ">= 1")
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def seed_int(text: str) -> int:
    """argparse type: a random seed, a whole number >= 0 in ASCII digits."""
    n = _whole(text, ">= 0")
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def ascii_float(text: str) -> float:
    """argparse type for real-valued options: an ASCII decimal number, finite."""
    t = text.strip()
    if not _FLOAT.fullmatch(t) or len(t) > 40:
        raise argparse.ArgumentTypeError(f"expected a number in ASCII digits, got {text!r}")
    x = float(t)
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"{text!r} is out of range")
    return x


def nonnegative(what: str, value: int | None) -> None:
    """Refuse a negative count with a usage error that names the option."""
    if value is not None and value < 0:
        raise UsageError(f"{what} must be 0 or more, got {value}")


def add_common(p: argparse.ArgumentParser, file: bool = True) -> None:
    """Arguments every command that reads a network shares."""
    if file:
        p.add_argument("file", help="the .res file")
    p.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                   help="override a network parameter (repeatable), e.g. --set depth=50")
    p.add_argument("--network", metavar="NAME", help="which network of the file (when it has several)")
    p.add_argument("--input", metavar="NAME=SHAPE", action="append", default=[], dest="input_shapes",
                   help="replace an input's declared shape (no batch dim), e.g. --input x=3,450,600")
    add_limit(p)


def add_limit(p: argparse.ArgumentParser) -> None:
    """--limit NAME=N (commands that read files without building a network take only this one)."""
    p.add_argument("--limit", metavar="NAME=N", action="append", default=[],
                   help="raise a resource limit, e.g. --limit max_nodes=5000000")


class _NoNames(Exception):
    """A --set value referred to a name: only literals are allowed."""


def parse_set(items: list[str] | None) -> dict[str, object]:
    """--set NAME=VALUE: VALUE is a resdsl literal (50, 0.5, true, "b", [1, 2]); a bare word is a string."""
    from ..diagnostics import ResdslError
    from ..evaluate import Evaluator
    from ..parser import parse_expression

    def no_names(n, span):
        raise _NoNames(n)

    out: dict[str, object] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--set expects NAME=VALUE, got {item!r}")
        name, _, text = item.partition("=")
        name = name.strip()
        if not name.isidentifier() or not name.isascii():
            raise UsageError(f"--set: {name!r} is not a parameter name")
        text = text.strip()
        if _foreign_digits(text):
            raise UsageError(f"--set {name}: write numbers in ASCII digits, got {text!r}")
        if text.isidentifier() and text.isascii() and text not in ("true", "false", "none"):
            out[name] = text
            continue
        try:
            out[name] = Evaluator(no_names, lambda: [])(parse_expression(text))
        except (ResdslError, _NoNames):
            raise UsageError(f"--set {name}: cannot read {text!r} as a value (use 50, 0.5, true, \"b\" or [1, 2])")
    return out


def _foreign_digits(text: str) -> bool:
    """Digits other than 0-9 outside string literals (the grammar's \\d would read '٥٠' as 50)."""
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    return any(c.isdigit() and not c.isascii() for c in outside)


def parse_inputs(items: list[str] | None) -> dict[str, tuple]:
    """--input NAME=SHAPE with SHAPE like 3,450,600 or [3, 450, 600] or 3x450x600, or with size
    names: 3,H,W or 3,H%32,W%32 (analysis/sizes.py: the dims become symbolic)."""
    out: dict[str, tuple[int, ...]] = {}
    for item in items or []:
        from ..analysis.sizes import parse_symbol

        name, sep, text = item.partition("=")
        dims = [d.strip() for d in text.strip().strip("[]").split(",")]
        if len(dims) == 1:
            dims = [d.strip() for d in dims[0].split("x")]  # 3x450x600
        if (not sep or not name.strip().isidentifier() or not name.isascii()
                or not all(re.fullmatch(r"[0-9]{1,18}", d) or (d.isascii() and parse_symbol(d)) for d in dims)):
            raise UsageError(f"--input expects NAME=SHAPE like x=3,450,600, or with size names x=3,H,W "
                             f"(H%32: a multiple of 32), got {item!r}")
        out[name.strip()] = tuple(int(d) if d.isdigit() else d for d in dims)
    return out


def parse_limits(items: list[str] | None):
    """--limit NAME=N, N in ASCII digits."""
    from ..limits import Limits

    limits = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if name not in Limits.names() or not re.fullmatch(r"[0-9]{1,18}", value):
            raise UsageError(f"--limit expects NAME=N with NAME one of {', '.join(Limits.names())} "
                             f"and N a whole number of at most 18 digits, got {item!r}")
        limits[name] = int(value)
    try:
        return Limits(**limits)
    except ValueError as e:  # above a ceiling (limits.CEILINGS)
        raise UsageError(f"--limit: {e}") from None


def load_from_args(args: argparse.Namespace):
    """Load the network a command's arguments name; raises ResdslError (the file) or UsageError (the options)."""
    from ..network import load_with

    limits = parse_limits(args.limit)
    return load_with(args.file, parse_set(args.set), network=args.network, limits=limits,
                     input_shapes=parse_inputs(args.input_shapes))


def print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def status(msg: str) -> None:
    """A status line ("wrote FILE", "building the module"): always on stderr, so stdout stays the result."""
    print(msg, file=sys.stderr, flush=True)


def wrote(path: str, detail: str = "") -> None:
    """The one place that says a file was written (stderr, like every status line)."""
    status(f"wrote {path}{f' ({detail})' if detail else ''}")


def check_output(path: str | None, what: str = "output") -> None:
    """Refuse, before any work, an output path that cannot be written: a missing directory or a directory."""
    if not path or path == "-":
        return
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"cannot write {what} {path}: it is a directory")
    if not p.parent.is_dir():
        raise UsageError(f"cannot write {what} {path}: no directory {str(p.parent)!r}")


PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def check_plot(path: str | None) -> None:
    """--plot needs matplotlib and a file type it writes: refuse before computing anything."""
    if not path:
        return
    check_output(path, "plot")
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise UsageError(f"--plot {path}: the file type comes from the suffix, one of "
                         f"{', '.join('.' + f for f in PLOT_FORMATS)}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ToolMissing("--plot needs matplotlib: pip install matplotlib (or pip install 'resdsl[plot]')")

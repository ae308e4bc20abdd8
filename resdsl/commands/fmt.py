"""resdsl fmt FILE...: print, check or rewrite .res files in the canonical layout (comments kept)."""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from ._common import add_limit, parse_limits
from ..diagnostics import ResdslError

EPILOG = """examples:
  resdsl fmt examples/resnet.res              print the formatted file
  resdsl fmt --check examples/*.res           exit 1 and show a diff if any file would change
  resdsl fmt --write examples/*.res           rewrite the files in place

layout: 4-space indent, one statement per line, spaces around operators, `kernel_size=3` in calls,
brackets on one line, or one item per line with trailing commas when the source broke the line."""


def register(subs) -> None:
    p = subs.add_parser("fmt", help="format .res files canonically (comments kept)",
                        description="Format .res files: the same meaning, one canonical layout.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help=".res files")
    add_limit(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="do not write; exit 1 and print a diff if a file would change")
    mode.add_argument("--write", action="store_true", help="rewrite the files in place")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..fmt import format_source
    from ..loader import read_source

    changed = 0
    errors: list = []
    limits = parse_limits(args.limit)
    for name in args.files:
        path = Path(name)
        try:
            text = read_source(name, limits=limits)  # the loader's bounded reader: regular files, size-limited, UTF-8
            new = format_source(text, name, limits)
        except ResdslError as e:
            errors.extend(e.diagnostics)
            continue
        if args.check:
            if new != text:
                changed += 1
                sys.stdout.writelines(difflib.unified_diff(
                    text.splitlines(keepends=True), new.splitlines(keepends=True), f"{name}", f"{name} (formatted)"))
        elif args.write:
            if new != text:
                changed += 1
                path.write_text(new)
        else:
            sys.stdout.write(new)
    if errors:
        raise ResdslError(errors)
    if args.check and changed:
        print(f"{changed} file{'s' if changed != 1 else ''} would be reformatted", file=sys.stderr)
        return 1
    if args.write:
        print(f"{changed} file{'s' if changed != 1 else ''} reformatted", file=sys.stderr)
    return 0

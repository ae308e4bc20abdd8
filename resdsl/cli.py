"""The `resdsl` command line: a thin layer over the Python API.

Each subcommand lives in `resdsl/commands/<name>.py` and defines
`register(subparsers)` (adds its parser, sets `func`) -- so commands can be
added without touching this file.  Exit codes: 0 success, 1 the .res file
has errors (diagnostics printed), 2 bad command-line usage, 3 a missing
external tool (e.g. Graphviz's dot), 70 an internal error (a bug in resdsl).
"""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys

from . import __version__
from .diagnostics import ResdslError

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_TOOL, EXIT_INTERNAL = 0, 1, 2, 3, 70

ORDER = ["check", "summary", "expand", "compile", "paths", "variance", "lesion", "render", "fmt", "ops",
         "import_", "diff", "lsp"]

EPILOG = """examples:
  resdsl check examples/resnet.res --set depth=50
  resdsl summary examples/resnet.res --set depth=50 --depth 2
  resdsl summary examples/densenet.res --json > densenet.json
  resdsl expand examples/unet.res

exit codes: 0 ok, 1 errors in the .res file, 2 usage error, 3 missing tool, 70 internal error"""


def parse_set(items: list[str] | None) -> dict[str, object]:
    """--set NAME=VALUE: VALUE is a resdsl literal (50, 0.5, true, "b", [1, 2]); a bare word is a string."""
    from .evaluate import Evaluator
    from .parser import parse_expression

    out: dict[str, object] = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(_usage(f"--set expects NAME=VALUE, got {item!r}"))
        name, _, text = item.partition("=")
        name = name.strip()
        if not name.isidentifier():
            raise SystemExit(_usage(f"--set: {name!r} is not a parameter name"))
        text = text.strip()
        if text.isidentifier() and text not in ("true", "false", "none"):
            out[name] = text
            continue
        try:
            expr = parse_expression(text)

            def no_names(n, span):
                raise ResdslError_(n)

            out[name] = Evaluator(no_names, lambda: [])(expr)
        except (ResdslError, ResdslError_):
            raise SystemExit(_usage(f"--set {name}: cannot read {text!r} as a value (use 50, 0.5, true, \"b\" or [1, 2])"))
    return out


class ResdslError_(Exception):
    pass


def _usage(msg: str) -> int:
    print(f"resdsl: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def add_common(p: argparse.ArgumentParser, file: bool = True) -> None:
    """Arguments every command that reads a network shares."""
    if file:
        p.add_argument("file", help="the .res file")
    p.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                   help="override a network parameter (repeatable), e.g. --set depth=50")
    p.add_argument("--network", metavar="NAME", help="which network of the file (when it has several)")
    p.add_argument("--input", metavar="NAME=SHAPE", action="append", default=[], dest="input_shapes",
                   help="replace an input's declared shape (no batch dim), e.g. --input x=3,450,600")
    p.add_argument("--limit", metavar="NAME=N", action="append", default=[],
                   help="raise a resource limit, e.g. --limit max_nodes=5000000")


def load_from_args(args: argparse.Namespace):
    """Load the network a command's arguments name; raises ResdslError."""
    from .limits import Limits
    from .network import load

    limits = {}
    for item in args.limit:
        name, _, value = item.partition("=")
        if name not in Limits.names() or not value.isdigit():
            raise SystemExit(_usage(f"--limit expects NAME=N with NAME one of {', '.join(Limits.names())}"))
        limits[name] = int(value)
    return load(args.file, network=args.network, limits=Limits(**limits), input_shapes=parse_inputs(args.input_shapes),
                **parse_set(args.set))


def parse_inputs(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    """--input NAME=SHAPE with SHAPE like 3,450,600 or [3, 450, 600] or 3x450x600."""
    out: dict[str, tuple[int, ...]] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        dims = text.strip().strip("[]").replace("x", ",").split(",")
        if not sep or not name.strip().isidentifier() or not all(d.strip().isdigit() for d in dims):
            raise SystemExit(_usage(f"--input expects NAME=SHAPE like x=3,450,600, got {item!r}"))
        out[name.strip()] = tuple(int(d) for d in dims)
    return out


def print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resdsl", description="A language and compiler for residual network architectures.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"resdsl {__version__}")
    parser.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="color diagnostics")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import commands

    found = {m.name for m in pkgutil.iter_modules(commands.__path__)}
    for name in ORDER + sorted(found - set(ORDER)):
        if name in found:
            importlib.import_module(f"{commands.__name__}.{name}").register(subs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    color = args.color == "always" or (args.color == "auto" and sys.stderr.isatty())
    try:
        return int(args.func(args) or 0)
    except ResdslError as e:
        if getattr(args, "json", False):
            print_json({"ok": False, "errors": [d.to_dict() for d in e.diagnostics]})
        print(e.render(color), file=sys.stderr)
        n = len(e.diagnostics)
        print(f"{n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return EXIT_ERRORS
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_USAGE
    except Exception:  # a bug in resdsl, not in the user's file
        import traceback
        print("resdsl: internal error (this is a bug in resdsl, please report it):", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

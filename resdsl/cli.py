"""The `resdsl` command line: a thin layer over the Python API.

Each subcommand lives in `resdsl/commands/<name>.py` and defines
`register(subparsers)` (adds its parser, sets `func`) -- so commands can be
added without touching this file.  What they share is resdsl/commands/_common.py;
this module imports the commands, never the reverse.

Exit codes: 0 success, 1 the .res file has errors (diagnostics printed), 2 bad
command-line usage (including an output file that cannot be written), 3 a missing
external tool (Graphviz's dot, matplotlib), 130 interrupted (Ctrl-C), 70 an internal
error (a bug in resdsl) -- and only then a traceback.  Every other failure is one
line on stderr; with --json it is a JSON object on stdout instead and stderr stays empty.
Status lines ("wrote FILE") go to stderr, results to stdout.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import __version__
from .commands._common import (  # noqa: F401  (re-exported for code written against resdsl.cli)
    EXIT_ERRORS, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_TOOL, EXIT_USAGE, ToolMissing, UsageError,
    add_common, ascii_float, ascii_int, check_output, check_plot, load_from_args, parse_inputs, parse_set, print_json)
from .diagnostics import ResdslError

ORDER = ["check", "summary", "expand", "compile", "paths", "variance", "lesion", "render", "fmt", "ops",
         "import_", "diff", "lsp"]
OUTPUT_OPTIONS = ("output", "onnx", "export")  # argument names that are files a command writes

EPILOG = """examples:
  resdsl check examples/resnet.res --set depth=50
  resdsl summary examples/resnet.res --set depth=50 --depth 2
  resdsl summary examples/densenet.res --json > densenet.json
  resdsl expand examples/unet.res

exit codes: 0 ok, 1 errors in the .res file, 2 usage error, 3 missing tool, 130 interrupted,
70 internal error (a bug: please report it)"""


class _ArgumentError(Exception):
    """argparse found a mistake; carries the one-line message."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and a pointer to --help), raised rather than exiting."""

    def error(self, message: str):
        raise _ArgumentError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="resdsl", description="A language and compiler for residual network architectures.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"resdsl {__version__}")
    parser.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="color diagnostics")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import commands

    found = {m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")}
    for name in ORDER + sorted(found - set(ORDER)):
        if name in found:
            importlib.import_module(f"{commands.__name__}.{name}").register(subs)
    for sub in subs.choices.values():
        _strict_numbers(sub)
    return parser


def _strict_numbers(p: argparse.ArgumentParser) -> None:
    """Every int/float option of every command reads ASCII digits only (see _common.ascii_int)."""
    for action in p._actions:
        if action.type is int:
            action.type = ascii_int
        elif action.type is float:
            action.type = ascii_float


def main(argv: list[str] | None = None) -> int:
    """Run one command line; return its exit code.  Only --help and --version raise (SystemExit(0), as in
    argparse); a traceback is printed for bugs only (exit 70)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        code = _main(argv)
        if not getattr(sys.stdout, "closed", False):  # the language server closes stdout when it exits
            sys.stdout.flush()  # what an error report printed (--json) must reach stdout too
        return code
    except KeyboardInterrupt:  # Ctrl-C while parsing or reporting
        return _interrupted()
    except BrokenPipeError:
        _detach_stdout()
        return EXIT_OK
    except (_StdoutError, OSError) as e:  # stdout failed while an error was being reported
        _detach_stdout()
        print(f"resdsl: error: cannot write standard output: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return EXIT_USAGE


def _main(argv: list[str]) -> int:
    if any("\0" in a for a in argv):  # only possible in-process: a real command line cannot carry NUL
        print("resdsl: error: an argument contains a NUL byte", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    # (--help and --version print and raise SystemExit(0), as argparse does)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Call the command; map every kind of failure to its exit code and one message."""
    as_json = bool(getattr(args, "json", False))
    prog = f"resdsl {args.command}"
    color = args.color == "always" or (args.color == "auto" and not as_json and _isatty(sys.stderr))
    real_stdout, sys.stdout = sys.stdout, _Stdout(sys.stdout)
    try:
        for name in OUTPUT_OPTIONS:  # before any work: a typo in -o must not cost a whole computation
            check_output(getattr(args, name, None))
        check_plot(getattr(args, "plot", None))
        code = int(args.func(args) or 0)
        if not getattr(sys.stdout, "closed", False):  # the language server closes stdout when it exits
            sys.stdout.flush()  # a full disk or a closed pipe shows here, while we can still report it
        return code
    except ResdslError as e:
        if as_json:
            print_json({"ok": False, "errors": [d.to_dict() for d in e.diagnostics]})
        else:
            print(_printable(e.render(color)), file=sys.stderr)
            n = len(e.diagnostics)
            print(f"{n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return EXIT_ERRORS
    except UsageError as e:
        return _fail(prog, str(e), EXIT_USAGE, as_json)
    except ToolMissing as e:
        return _fail(prog, str(e), EXIT_TOOL, as_json)
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:  # `resdsl ... | head`: the reader has all it wants
        _detach_stdout()
        return EXIT_OK
    except _StdoutError as e:
        _detach_stdout()
        return _fail(prog, f"cannot write standard output: {e.args[0]}", EXIT_USAGE, False)
    except OSError as e:  # a file named on the command line cannot be read or written
        if e.filename is None:
            _detach_stdout()  # it may have been stdout: do not fail again at exit
            return _fail(prog, f"cannot write the output: {e.strerror or e}", EXIT_USAGE, as_json)
        return _fail(prog, f"{e.filename}: {e.strerror or e}", EXIT_USAGE, as_json)
    except SystemExit as e:  # a command that printed its own usage error
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except Exception:  # a bug in resdsl, not in the user's file or command line
        import traceback
        print("resdsl: internal error (this is a bug in resdsl, please report it):", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL
    finally:
        sys.stdout = real_stdout


def _fail(prog: str, message: str, code: int, as_json: bool) -> int:
    """One line on stderr, or with --json one object on stdout (stderr stays empty)."""
    if as_json:
        print_json({"ok": False, "error": {"exit": code, "message": message}})
    else:
        print(_printable(f"{prog}: error: {message}"), file=sys.stderr)
    return code


def _printable(text: str) -> str:
    """File names from the command line may hold undecodable bytes (as surrogates): show them escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _StdoutError(Exception):
    """Writing the result to stdout failed (a full disk, a closed terminal)."""


class _Stdout:
    """sys.stdout while a command runs: an OSError from print() carries no file name, so a failing write
    is tagged here as stdout's (a closed pipe stays a BrokenPipeError: the reader had enough)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    @staticmethod
    def _guard(fn, *args):
        try:
            return fn(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _StdoutError(e.strerror or str(e)) from e


def _interrupted() -> int:
    print("resdsl: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _detach_stdout() -> None:
    """Point stdout at /dev/null so that Python's exit-time flush does not fail (and print) a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured by a test)
        pass


if __name__ == "__main__":
    sys.exit(main())

"""Files -> one `Program`: parse the main file and its imports.

`import "lib.res"` is resolved relative to the importing file;
`import "std:NAME"` reads `resdsl/stdlib/NAME.res` from the package, and
`import "zoo:NAME"` the model zoo's `NAME.res` (examples/ in a checkout,
`resdsl/zoo/` in an installed wheel; see `resdsl.models`).  Only
.res files are ever read, each at most once, and only inside the main file's
folder (symbolic links followed) or resdsl's own library and zoo; cycles are reported
with the chain of imports.  Every file is read by `read_source`: regular
files only, never more than `Limits.max_source_bytes`, UTF-8.  Blocks and constants from every file share one namespace;
networks are taken from the main file only.
"""
from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import syntax as ast
from .diagnostics import Diagnostic, Note, ResdslError, error
from .limits import DEFAULT, Limits, raise_hint
from .parser import parse
from .span import UNKNOWN, Source, Span, forbid_quotes, register

PACKAGE = Path(__file__).resolve().parent
STDLIB = PACKAGE / "stdlib"
# The zoo: the wheel ships examples/*.res as resdsl/zoo/ (pyproject.toml); a checkout reads examples/ itself.
ZOO = PACKAGE / "zoo" if (PACKAGE / "zoo").is_dir() else PACKAGE.parent / "examples"
LIBRARIES = {"std:": STDLIB, "zoo:": ZOO}


@dataclass
class Program:
    main: str
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    networks: dict[str, ast.NetworkDef] = field(default_factory=dict)
    constants: list[ast.Assign] = field(default_factory=list)


BOM = "\ufeff"
_ROOTS = tuple(p for p in (STDLIB, PACKAGE / "zoo", PACKAGE.parent / "examples") if p.is_dir())


def read_source(path: str | Path, span: Span = UNKNOWN, limits: Limits = DEFAULT) -> str:
    """The one way resdsl reads a user's file (the loader, `fmt`, everything else).

    Only a regular file is read: it is checked with `os.stat` (links followed)
    before it is opened, opened non-blocking and checked again on the open
    descriptor, so a FIFO or device swapped in between can neither block nor
    stream forever; at most `limits.max_source_bytes` bytes are read.  The text
    must be UTF-8 (a leading byte-order mark is dropped).  Every failure is an
    E002/E040 diagnostic at `span` (the import), or at the file itself."""
    name = str(path)
    here = span if span is not UNKNOWN else Span(name, 1, 1, 1, 2, 0, 1)
    try:
        _small(check_regular(name, here).st_size, name, here, limits)
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            _regular(os.fstat(fd), name, here)  # it may have been swapped since the stat
            data = _read_at_most(fd, limits.max_source_bytes + 1)
        finally:
            os.close(fd)
    except OSError as e:
        raise _cannot(e, name, here) from None
    _small(len(data), name, here, limits)  # st_size can lie (files in /proc report 0)
    return _decode(data, name, span)


def check_regular(path: str | Path, span: Span = UNKNOWN) -> os.stat_result:
    """Refuse (E002) anything but an existing regular file, before anyone opens it.

    For files read by other means than `read_source` (torch.load of weights and inputs): a FIFO
    would block them and a device never end."""
    name = str(path)
    here = span if span is not UNKNOWN else Span(name, 0, 0, 0, 0)
    if "\0" in name:
        raise error("E002", f"cannot read {name!r}: the path contains a NUL character", here)
    try:
        info = os.stat(name)
    except OSError as e:
        raise _cannot(e, name, here) from None
    _regular(info, name, here)
    return info


def _cannot(e: OSError, name: str, span: Span) -> ResdslError:
    reason = "a symbolic link loops" if e.errno == errno.ELOOP else (e.strerror or str(e))
    imported = span.file != name  # reported at an import statement
    return error("E002", f"cannot read {name}: {reason}", span,
                 hint="check the path" + ("; imports are relative to the importing file" if imported else ""))


def _regular(info: os.stat_result, name: str, span: Span) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise error("E002", f"cannot read {name}: it is a directory", span)
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block, a device never end
        raise error("E002", f"cannot read {name}: not a regular file", span)


def _small(size: int, name: str, span: Span, limits: Limits) -> None:
    if size > limits.max_source_bytes:
        raise error("E040", f"{name} is larger than the limit of {limits.max_source_bytes} bytes", span,
                    hint="raise it with --limit max_source_bytes=N")


def _read_at_most(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(1 << 16, n - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _decode(data: bytes, name: str, span: Span) -> str:
    """UTF-8 text without a byte-order mark; a bad byte is reported where it is, in that file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        whole = data.decode("utf-8", "replace")
        src = register(Source(name, whole, quotable=name.endswith(".res")))
        at = len(data[: e.start].decode("utf-8", "replace"))
        line, col = src.position(at)
        here = Span.of(src, at, at + 1)
        notes = [Note(span, "imported here")] if span is not UNKNOWN else []
        raise error("E002", f"cannot read {name}: not UTF-8 text ({e.reason} at line {line}, column {col}, "
                    f"byte {e.start})", here, notes=notes, hint="save the file as UTF-8") from None
    return text[1:] if text.startswith(BOM) else text


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _resolve(spec: str, importer: Path | None, root: Path, span: Span) -> Path:
    """The file an import names, links followed; refused unless it is a .res file under `root` or the stdlib.

    Policy: imports may not leave the main file's folder (after following
    symbolic links), except into resdsl's own library, so a .res file cannot
    make resdsl read -- and quote in an error -- any other file on the machine."""
    for prefix, library in LIBRARIES.items():
        if spec.startswith(prefix):
            name = spec[len(prefix):]
            target = library / f"{name}.res"
            if not re.fullmatch(r"[A-Za-z0-9_]+", name) or not target.is_file():
                have = ", ".join(sorted(prefix + p.stem for p in library.glob("*.res")))
                what = "standard library module" if prefix == "std:" else "zoo file"
                raise error("E002", f"no {what} `{spec}`", span, hint=f"available: {have}")
            return target
    if "\0" in spec:
        raise error("E002", "an import path cannot contain a NUL character", span)
    if not spec.endswith(".res"):
        raise error("E002", f"can only import .res files, not `{spec}`", span, hint='write import "blocks.res"')
    base = importer.parent if importer is not None else Path.cwd()
    target = Path(os.path.realpath(base / spec))  # never raises: a link loop stays unresolved, and stat reports it
    if not target.name.endswith(".res"):
        raise error("E002", f"`{spec}` links to {target}, which is not a .res file", span,
                    hint="import the .res file itself")
    if not (_inside(target, root) or any(_inside(target, r) for r in _ROOTS)):
        raise error("E002", f"`{spec}` is outside {root}, the main file's folder (it resolves to {target})", span,
                    hint=f"imports may not leave the main file's folder; copy the file into {root}")
    return target


@contextlib.contextmanager
def _no_cyclic_gc():
    """Pause Python's cyclic garbage collector while files are parsed.

    Parsing allocates a million short-lived objects (tokens, trees, AST nodes) and holds them until
    the module is built; each full collection walks all of them, which made a 480 kB parse spend
    about 40% of its time in the collector (bench/bench_hostile.py).  The parse trees hold no
    cycles, so nothing accumulates; the collector is restored, and run by Python as usual, after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_program(text: str, file: str, limits: Limits = DEFAULT) -> Program:
    """Parse the main file's text and everything it imports into one `Program`."""
    with _no_cyclic_gc():
        return _load_program(text, file, limits)


def _load_program(text: str, file: str, limits: Limits) -> Program:
    prog = Program(main=file)
    text = text[1:] if text.startswith(BOM) else text  # (read_source strips it too; this is for `loads`)
    origin: dict[str, Span] = {}
    active: list[tuple[Path, Span]] = []
    done: set[Path] = set()
    main_path = Path(os.path.realpath(file)) if not file.startswith("<") and "\0" not in file else None
    root = main_path.parent if main_path is not None else Path.cwd().resolve()

    def visit(module: ast.Module, path: Path | None, is_main: bool) -> None:
        for item in module.items:
            if isinstance(item, ast.Import):
                target = _resolve(item.path, path, root, item.span)
                if any(target == p for p, _ in active) or target == path:
                    chain = [Note(s, f"imports {p.name}") for p, s in active[1:]] + [Note(item.span, f"imports {target.name} again")]
                    raise ResdslError(Diagnostic("E003", f"import cycle through {target.name}", item.span, tuple(chain),
                                                 "move the shared blocks into a third file that both import"))
                if target in done:
                    continue
                if len(active) > limits.max_nesting:  # a chain of imports, each importing the next
                    raise error("E040", f"imports are nested more than {limits.max_nesting} files deep", item.span,
                                hint="import fewer files in a chain; " + raise_hint("max_nesting", limits.max_nesting))
                done.add(target)
                active.append((target, item.span))
                sub = parse(read_source(target, item.span, limits), str(target), limits)
                visit(sub, target, False)
                active.pop()
            elif isinstance(item, ast.BlockDef):
                _define(prog.blocks, item.name, item, origin, "block")
            elif isinstance(item, ast.NetworkDef):
                if is_main:
                    _define(prog.networks, item.name, item, origin, "network")
            elif isinstance(item, ast.Assign):
                prog.constants.append(item)

    if len(text) > limits.max_source_bytes:
        raise error("E040", f"{file} has {len(text)} characters; the limit is {limits.max_source_bytes}",
                    Span(file, 1, 1, 1, 2, 0, 1),
                    hint="raise it with --limit max_source_bytes=N")
    module = parse(text, file, limits)
    prog.main = module.file  # the same name, holding the parsed text: file-wide errors quote it (span._Name)
    active.append((main_path or Path(file), UNKNOWN))
    visit(module, main_path, True)
    return prog


def _define(table: dict, name: str, item, origin: dict[str, Span], kind: str) -> None:
    if name in table:
        raise error("E011", f"{kind} `{name}` is defined twice", item.span,
                    notes=[Note(table[name].span, "first defined here")], hint="rename one of them")
    table[name] = item


def load_file(path: str | Path, limits: Limits = DEFAULT) -> Program:
    """Read and load the main file.  A main file that is not a .res source (after following links)
    is still read -- the user named it -- but its content is never quoted in an excerpt.
    `zoo:resnet` / `std:blocks` name a file of the package (`resdsl summary zoo:resnet`)."""
    name = str(path)
    if name.startswith(tuple(LIBRARIES)):
        path = name = str(_resolve(name, None, PACKAGE, Span(name, 1, 1, 1, 2, 0, 1)))
    text = read_source(path, UNKNOWN, limits)
    if not os.path.realpath(path).endswith(".res"):
        forbid_quotes(name)
    return load_program(text, name, limits)

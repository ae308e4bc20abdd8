"""Files -> one `Program`: parse the main file and its imports.

`import "lib.res"` is resolved relative to the importing file;
`import "std:NAME"` reads `resdsl/stdlib/NAME.res` from the package, and
`import "zoo:NAME"` the model zoo's `NAME.res` (examples/ in a checkout,
`resdsl/zoo/` in an installed wheel; see `resdsl.models`).  Only
.res files are ever read, each at most once; cycles are reported with the
chain of imports.  Blocks and constants from every file share one namespace;
networks are taken from the main file only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import syntax as ast
from .diagnostics import Diagnostic, Note, ResdslError, error
from .limits import DEFAULT, Limits
from .parser import parse
from .span import UNKNOWN, Span

STDLIB = Path(__file__).resolve().parent / "stdlib"
# The zoo: the wheel ships examples/*.res as resdsl/zoo/ (pyproject.toml); a checkout reads examples/ itself.
_HERE = Path(__file__).resolve().parent
ZOO = _HERE / "zoo" if (_HERE / "zoo").is_dir() else _HERE.parent / "examples"
LIBRARIES = {"std:": STDLIB, "zoo:": ZOO}


@dataclass
class Program:
    main: str
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    networks: dict[str, ast.NetworkDef] = field(default_factory=dict)
    constants: list[ast.Assign] = field(default_factory=list)


def _read(path: Path, span: Span, limits: Limits) -> str:
    if span is UNKNOWN:  # the main file: point at the file itself
        span = Span(str(path), 1, 1, 1, 2, 0, 1)
    data = b""
    try:
        if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO or device would block or never end
            raise error("E002", f"cannot read {path}: not a regular file", span)
        with open(path, "rb") as f:
            data = f.read(limits.max_source_bytes + 1)  # never trust st_size (/proc files report 0)
        if len(data) > limits.max_source_bytes:
            raise error("E040", f"{path} is larger than the limit of {limits.max_source_bytes} bytes", span,
                        hint="raise it with --limit max_source_bytes=N")
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        prefix = data[: e.start].decode("utf-8", "replace")
        line, col = prefix.count("\n") + 1, len(prefix) - (prefix.rfind("\n") + 1) + 1
        raise error("E002", f"cannot read {path}: not UTF-8 text ({e.reason} at line {line}, column {col}, "
                    f"byte {e.start})", span, hint="save the file as UTF-8") from None
    except IsADirectoryError:
        raise error("E002", f"cannot read {path}: it is a directory", span) from None
    except OSError as e:
        raise error("E002", f"cannot read {path}: {e.strerror or e}", span,
                    hint="check the path; imports are relative to the importing file") from None


def _resolve(spec: str, importer: Path | None, span: Span) -> Path:
    for prefix, library in LIBRARIES.items():
        if spec.startswith(prefix):
            name = spec[len(prefix):]
            target = library / f"{name}.res"
            if not name.replace("_", "").isalnum() or not target.is_file():
                have = ", ".join(sorted(prefix + p.stem for p in library.glob("*.res")))
                what = "standard library module" if prefix == "std:" else "zoo file"
                raise error("E002", f"no {what} `{spec}`", span, hint=f"available: {have}")
            return target
    if not spec.endswith(".res"):
        raise error("E002", f"can only import .res files, not `{spec}`", span, hint='write import "blocks.res"')
    base = importer.parent if importer is not None else Path.cwd()
    return (base / spec).resolve()


def load_program(text: str, file: str, limits: Limits = DEFAULT) -> Program:
    prog = Program(main=file)
    origin: dict[str, Span] = {}
    active: list[tuple[Path, Span]] = []
    done: set[Path] = set()
    main_path = Path(file).resolve() if not file.startswith("<") else None

    def visit(module: ast.Module, path: Path | None, is_main: bool) -> None:
        for item in module.items:
            if isinstance(item, ast.Import):
                target = _resolve(item.path, path, item.span)
                if any(target == p for p, _ in active) or target == path:
                    chain = [Note(s, f"imports {p.name}") for p, s in active[1:]] + [Note(item.span, f"imports {target.name} again")]
                    raise ResdslError(Diagnostic("E003", f"import cycle through {target.name}", item.span, tuple(chain),
                                                 "move the shared blocks into a third file that both import"))
                if target in done:
                    continue
                if len(active) > limits.max_nesting:  # a chain of imports, each importing the next
                    raise error("E040", f"imports are nested more than {limits.max_nesting} files deep", item.span,
                                hint="raise the limit with --limit max_nesting=N")
                done.add(target)
                active.append((target, item.span))
                sub = parse(_read(target, item.span, limits), str(target), limits)
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
    active.append((main_path or Path(file), UNKNOWN))
    visit(module, main_path, True)
    return prog


def _define(table: dict, name: str, item, origin: dict[str, Span], kind: str) -> None:
    if name in table:
        raise error("E011", f"{kind} `{name}` is defined twice", item.span,
                    notes=[Note(table[name].span, "first defined here")], hint="rename one of them")
    table[name] = item


def load_file(path: str | Path, limits: Limits = DEFAULT) -> Program:
    name = str(path)  # `zoo:resnet` / `std:blocks` name a file of the package (`resdsl summary zoo:resnet`)
    p = _resolve(name, None, Span(name, 1, 1, 1, 2, 0, 1)) if name.startswith(tuple(LIBRARIES)) else Path(path)
    text = _read(p, UNKNOWN, limits)
    return load_program(text, str(p) if name.startswith(tuple(LIBRARIES)) else name, limits)

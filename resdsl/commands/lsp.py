"""resdsl lsp: the language server for editors (stdio; needs the `lsp` extra, pygls)."""
from __future__ import annotations

import sys

from ._common import EXIT_TOOL


def register(subs) -> None:
    p = subs.add_parser("lsp", help="language server for editors (diagnostics, hover, go to definition)",
                        description="Run the resdsl language server on stdin/stdout (Language Server Protocol). "
                                    "Editors start it; editors/vscode has a VS Code extension that does.")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import pygls  # noqa: F401
    except ImportError:
        print("resdsl lsp: the language server needs pygls: install pygls "
              "(pip install 'resdsl[lsp]' or pip install pygls)", file=sys.stderr)
        return EXIT_TOOL
    from ..lsp import main
    main()
    return 0

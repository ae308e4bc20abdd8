"""The resdsl language server (pygls): diagnostics as you type, hover, go to a block's definition.

Reads LSP requests on stdin and writes responses on stdout (`resdsl lsp`);
the answers come from `resdsl/editor.py`.  Documents are synced in full on
every change; each change re-analyses the buffer and publishes its
diagnostics (an empty list clears them).  Positions: LSP counts lines from 0
and characters in UTF-16 units; resdsl from 1 and in code points.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from . import __version__
from .editor import Analysis, analyze, definition, hover
from .span import Span, lookup

server = LanguageServer("resdsl", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full)
_analyses: dict[str, Analysis] = {}


def _path(uri: str) -> str:
    u = urlparse(uri)
    return unquote(u.path) if u.scheme == "file" else uri


def _uri(path: str) -> str:
    return Path(path).resolve().as_uri() if not path.startswith("<") else path


def _utf16(line_text: str, col: int) -> int:
    """1-based code-point column -> 0-based UTF-16 offset."""
    return len(line_text[: max(col - 1, 0)].encode("utf-16-le")) // 2


def _from_utf16(line_text: str, character: int) -> int:
    """0-based UTF-16 offset -> 1-based code-point column."""
    units = 0
    for i, ch in enumerate(line_text):
        if units >= character:
            return i + 1
        units += 2 if ord(ch) > 0xFFFF else 1
    return len(line_text) + 1


def _line(text: str, n: int) -> str:
    lines = text.splitlines()
    return lines[n - 1] if 0 < n <= len(lines) else ""


def _range(span: Span, text: str) -> types.Range:
    if span.line <= 0:  # a diagnostic without a place: the first character
        return types.Range(types.Position(0, 0), types.Position(0, 1))
    start = types.Position(span.line - 1, _utf16(_line(text, span.line), span.col))
    end = types.Position(span.end_line - 1, _utf16(_line(text, span.end_line), span.end_col))
    return types.Range(start, end)


def _text_of(path: str, current: Analysis) -> str:
    if path == current.path:
        return current.text
    src = lookup(path)
    return src.text if src is not None else ""


def diagnostics(a: Analysis) -> list[types.Diagnostic]:
    out = []
    for d in a.diagnostics:
        here = d.span.file == a.path
        message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
        if not here:  # the error is in an imported file: show it at the top, saying where
            message = f"{d.span}: {message}"
        related = [types.DiagnosticRelatedInformation(
            types.Location(_uri(n.span.file), _range(n.span, _text_of(n.span.file, a))), n.message) for n in d.notes]
        out.append(types.Diagnostic(range=_range(d.span if here else Span(a.path, 0, 0, 0, 0), a.text),
                                    message=message, severity=types.DiagnosticSeverity.Error, code=d.code,
                                    source="resdsl", related_information=related or None))
    return out


def _refresh(ls: LanguageServer, uri: str, text: str) -> None:
    a = analyze(text, _path(uri))
    _analyses[uri] = a
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics(a)))


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    _refresh(ls, params.text_document.uri, params.text_document.text)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    _refresh(ls, doc.uri, doc.source)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: LanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    _analyses.pop(params.text_document.uri, None)
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


def _at(params) -> tuple[Analysis, int, int] | None:
    a = _analyses.get(params.text_document.uri)
    if a is None:
        return None
    line = params.position.line + 1
    return a, line, _from_utf16(_line(a.text, line), params.position.character)


@server.feature(types.TEXT_DOCUMENT_HOVER)
def on_hover(ls: LanguageServer, params: types.HoverParams) -> types.Hover | None:
    at = _at(params)
    text = hover(*at) if at else None
    if text is None:
        return None
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
def on_definition(ls: LanguageServer, params: types.DefinitionParams) -> types.Location | None:
    at = _at(params)
    span = definition(*at) if at else None
    if span is None:
        return None
    return types.Location(_uri(span.file), _range(span, _text_of(span.file, at[0])))


def main() -> None:
    server.start_io()

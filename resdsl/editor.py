"""What an editor asks about a .res buffer: diagnostics, hover text, a block's definition.

Reads the buffer's text (unsaved edits included) and its path (imports are
relative to it); writes plain data with 1-based line/column spans, which
`resdsl/lsp.py` turns into the Language Server Protocol's types.  No pygls here,
so this is testable and usable without it.  Every network of the file is
elaborated with its defaults (one with a parameter lacking a default is
skipped: it cannot be built without a value); work is bounded by the usual
`Limits`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .diagnostics import Diagnostic, ResdslError
from .elaborate import elaborate
from .ir import Graph, Node
from .limits import DEFAULT, Limits
from .loader import Program, load_program
from .span import Span


@dataclass
class Analysis:
    path: str
    text: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    program: Program | None = None
    graphs: list[Graph] = field(default_factory=list)  # every network that elaborated
    _named: dict = field(default_factory=dict, repr=False)  # id(graph) -> its shapes over the named sizes

    @property
    def nodes(self) -> list[Node]:
        return [n for g in self.graphs for n in g.nodes]

    def named_shape(self, n: Node) -> tuple | None:
        """Node n's shape over the file's named sizes (`[8, H/2, W/2]`), or None when its network has none:
        the graph itself is built at an example size (`input x: [3, H, W] where ...`)."""
        g = next((g for g in self.graphs if n.id < len(g.nodes) and g.nodes[n.id] is n), None)
        if g is None or g.sizes is None or not g.sizes.symbolic_roots():
            return None
        if id(g) not in self._named:
            from .analysis.sizes import combined_formulas, from_declared
            from .network import Network

            size_vars, named = from_declared(g)
            net = Network(g, self.path, DEFAULT, named, size_vars)
            self._named[id(g)] = combined_formulas(g, net.valid_sizes())
        return self._named[id(g)][n.id]


def analyze(text: str, path: str, limits: Limits = DEFAULT) -> Analysis:
    """Parse, load and elaborate every network of the buffer; collect all diagnostics."""
    a = Analysis(path, text)
    try:
        a.program = load_program(text, path, limits)
    except ResdslError as e:
        a.diagnostics += e.diagnostics
        return a
    for name, net in a.program.networks.items():
        if any(p.default is None for p in net.params):
            continue
        try:
            a.graphs.append(elaborate(a.program, name, {}, limits))
        except ResdslError as e:
            a.diagnostics += [d for d in e.diagnostics if d not in a.diagnostics]
    return a


def _inside(span: Span, line: int, col: int) -> bool:
    return (span.line, span.col) <= (line, col) < (span.end_line, span.end_col) or \
        (span.line == line and span.end_line == line and span.col <= col <= span.end_col)


def _size(span: Span) -> int:
    return span.end - span.start


def hover(a: Analysis, line: int, col: int) -> str | None:
    """Markdown for the layer or block call under (line, col): output shape, parameters, qualified names."""
    here = [n for n in a.nodes if n.span.file == a.path and _inside(n.span, line, col)]
    if here:
        best = min(_size(n.span) for n in here)
        layers = [n for n in here if _size(n.span) == best]
        return _describe(layers, layers[0].op, a)
    return _block_call(a, line, col)


def _block_call(a: Analysis, line: int, col: int) -> str | None:
    """Each call of the block under the cursor (a loop makes several): its scope, output, parameters."""
    found = [(g, s) for g in a.graphs for s in g.scopes
             if s.kind == "block" and s.span.file == a.path and _inside(s.span, line, col)]
    if not found:
        return None
    best = min(_size(s.span) for _, s in found)
    found = [(g, s) for g, s in found if _size(s.span) == best]
    lines = [f"**{found[0][1].hint}** (block call" + (f", {len(found)} calls)" if len(found) > 1 else ")")]
    for g, s in found[:5]:
        ns = _under(g, s.id)
        if ns:
            lines.append(f"- `{s.name}`: output {_output(a, ns[-1])}, {sum(n.params for n in ns):,} params, "
                         f"{len(ns)} ops")
    if len(found) > 5:
        lines.append(f"- ... and {len(found) - 5} more calls")
    return "\n".join(lines)


def _under(g: Graph, scope: int) -> list[Node]:
    parent = {s.id: s.parent for s in g.scopes}

    def within(sid: int | None) -> bool:
        while sid is not None:
            if sid == scope:
                return True
            sid = parent[sid]
        return False
    return [n for n in g.nodes if within(n.scope)]


def _output(a: Analysis, n: Node) -> str:
    """A node's output shape; over the named sizes, with the example's, when its network has them."""
    named = a.named_shape(n)
    if named is None:
        return f"`{list(n.shape)}`"
    return f"`[{', '.join(map(str, named))}]` (`{list(n.shape)}` at the example size)"


def _describe(layers: list[Node], op: str, a: Analysis) -> str:
    lines = [f"**{op}**" + (f" (used {len(layers)} times)" if len(layers) > 1 else "")]
    for n in layers[:5]:
        lines.append(f"- `{n.name}`: output {_output(a, n)}, {n.params:,} params")
    if len(layers) > 5:
        lines.append(f"- ... and {len(layers) - 5} more")
    return "\n".join(lines)


def word_at(text: str, line: int, col: int) -> str | None:
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return None
    s = lines[line - 1]
    for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", s):
        if m.start() + 1 <= col <= m.end() + 1:  # on the word or just after it
            return m.group(0)
    return None


def definition(a: Analysis, line: int, col: int) -> Span | None:
    """Where the block named under (line, col) is defined (this file or an imported one)."""
    word = word_at(a.text, line, col)
    if a.program is None or word is None:
        return None
    block = a.program.blocks.get(word)
    return block.span if block is not None else None

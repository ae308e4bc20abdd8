"""Diagrams of a network with Graphviz: `render`, `to_svg`, `to_dot`.

Reads a `Network` (its IR); writes dot text, or an SVG/PNG/PDF made by
Graphviz's `dot` program through the `graphviz` Python package.  The
pipeline is IR -> `Diagram` (diagram.py / unravel.py: what to draw) ->
dot text (dot.py: how to draw it) -> `dot` (layout).  `.dot` output needs
no Graphviz installation; the other formats raise `GraphvizNotFound`
(exit code 3 on the command line) with installation instructions when
`dot` is missing.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .diagram import LEVELS, Diagram, block_diagram, layer_diagram, network_diagram
from .dot import to_dot_text
from .unravel import MAX_BLOCKS, unraveled_diagram

if TYPE_CHECKING:
    from ..ir import Graph
    from ..network import Network

__all__ = ["render", "to_svg", "to_dot", "diagram", "layout", "GraphvizNotFound", "FORMATS", "LEVELS", "MAX_BLOCKS"]

FORMATS = ("svg", "png", "pdf", "dot")
RANKDIRS = ("TB", "LR")

INSTALL_HINT = ("Graphviz's `dot` program was not found on PATH; it is needed for {fmt} output.\n"
                "Install Graphviz:  apt-get install graphviz  (Debian/Ubuntu)  |  brew install graphviz  (macOS)  |  "
                "conda install -c conda-forge graphviz\n"
                "Writing a .dot file still works without it (e.g. -o net.dot).")


class GraphvizNotFound(RuntimeError):
    """Graphviz's `dot` executable is missing (the CLI exits with code 3)."""


def _graph(net) -> "Graph":
    return getattr(net, "graph", net)


def diagram(net: "Network | Graph", level: str = "block") -> Diagram:
    """The drawing-independent model of the picture (what the tests inspect)."""
    g = _graph(net)
    builders = {"network": network_diagram, "block": block_diagram, "layer": layer_diagram,
                "unraveled": unraveled_diagram}
    if level not in builders:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    d = builders[level](g)
    if getattr(net, "symbols", None):
        _symbolic_edge_labels(net, d)
    return d


def _symbolic_edge_labels(net, d: Diagram) -> None:
    """Label data edges with symbolic shapes ([64, ⌈H/4⌉, ⌈W/4⌉]) for networks loaded with size names.

    Edges carry concrete shapes; each is mapped to its node's formula when that shape has only one
    formula in the network (two formulas can agree at the representative size: those keep numbers).
    """
    from .labels import fmt_shape

    formulas: dict[tuple, set] = {}
    for n, f in zip(net.graph.nodes, net.symbolic_shapes()):
        formulas.setdefault(tuple(n.shape), set()).add(tuple(f))
    for e in d.edges:
        fs = formulas.get(tuple(e.shape)) if e.shape is not None else None
        if fs and len(fs) == 1 and e.label == fmt_shape(e.shape):
            e.label = fmt_shape(next(iter(fs)))


def to_dot(net: "Network | Graph", level: str = "block", rankdir: str | None = None, shapes: bool = True,
           params: bool = True) -> str:
    """The Graphviz source for the diagram (deterministic: same network, same bytes).

    rankdir None: top to bottom ("TB"), except the unraveled view, whose lanes read left to right ("LR").
    """
    if rankdir is None:
        rankdir = "LR" if level == "unraveled" else "TB"
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be TB or LR, not {rankdir!r}")
    return to_dot_text(diagram(net, level), rankdir, shapes, params)


def layout(dot_source: str, fmt: str) -> bytes:
    """Run Graphviz's dot on `dot_source`; raises GraphvizNotFound when dot is missing."""
    import graphviz

    try:
        return graphviz.Source(dot_source).pipe(format=fmt, engine="dot")
    except graphviz.ExecutableNotFound as e:
        raise GraphvizNotFound(INSTALL_HINT.format(fmt=fmt.upper())) from e


def to_svg(net: "Network | Graph", **opts) -> str:
    """An SVG picture as text (what `Network._repr_svg_` shows in a notebook)."""
    return layout(to_dot(net, **opts), "svg").decode("utf-8")


def format_of(path: str | Path) -> str:
    """The output format an output file name asks for (its suffix; .gv counts as .dot)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    suffix = "dot" if suffix == "gv" else suffix
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the format from {str(path)!r}: use a .svg, .png, .pdf or .dot file name")
    return suffix


def render(net: "Network | Graph", path: str | Path | None = None, level: str = "block", rankdir: str | None = None,
           shapes: bool = True, params: bool = True) -> str | None:
    """Return the dot source (path None), or write `path` in the format its suffix names."""
    source = to_dot(net, level, rankdir, shapes, params)
    if path is None:
        return source
    fmt = format_of(path)
    data = source.encode("utf-8") if fmt == "dot" else layout(source, fmt)
    Path(path).write_bytes(data)
    return None

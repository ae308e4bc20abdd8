"""Diagrams of a network with Graphviz: `render`, `to_svg`, `to_dot`.

Reads a `Network` (its IR); writes dot text, or an SVG/PNG/PDF made by
Graphviz's `dot` program through the `graphviz` Python package.  The
pipeline is IR -> `Diagram` (diagram.py / unravel.py: what to draw) ->
dot text (dot.py: how to draw it) -> `dot` (layout).  `.dot` output needs
no Graphviz installation; the other formats raise `GraphvizNotFound`
(exit code 3 on the command line) with installation instructions when
`dot` is missing.  Graphviz's layout time grows faster than linearly, so a
diagram with more than `Limits.max_diagram_size` nodes and edges is refused
before `dot` runs (E040, naming a level or the .dot output that does fit), and
`dot` is stopped after `Limits.max_layout_seconds`.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ..diagnostics import error
from ..limits import DEFAULT, Limits
from ..span import UNKNOWN
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
    return _dot_text(diagram(net, level), level, rankdir, shapes, params)


def _dot_text(d: Diagram, level: str, rankdir: str | None, shapes: bool, params: bool) -> str:
    if rankdir is None:
        rankdir = "LR" if level == "unraveled" else "TB"
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be TB or LR, not {rankdir!r}")
    return to_dot_text(d, rankdir, shapes, params)


def check_size(net: "Network | Graph", d: Diagram, limits: Limits = DEFAULT) -> None:
    """Refuse (E040) a diagram too big for Graphviz to lay out in reasonable time, before `dot` runs.

    The hint names only what does fit: a coarser level when its diagram is within
    the budget, and always the .dot output (no layout)."""
    size = len(d.nodes) + len(d.edges)
    if size <= limits.max_diagram_size:
        return
    g = _graph(net)
    coarser = [lv for lv in ("block", "network") if LEVELS.index(lv) < LEVELS.index(d.level)]
    fits = [lv for lv in coarser if _size(diagram(g, lv)) <= limits.max_diagram_size]
    ways = [f"--level {fits[0]}"] if fits else []
    ways.append("a .dot output (-o net.dot, no layout)")
    raise error("E040", f"the {d.level}-level diagram has {len(d.nodes)} nodes and {len(d.edges)} edges; "
                f"Graphviz's layout is limited to {limits.max_diagram_size} of them (its time grows faster "
                "than linearly)", g.scopes[0].span if g.scopes else UNKNOWN,
                hint=f"draw it with {' or '.join(ways)}, or raise the budget with --limit max_diagram_size=N")


def _size(d: Diagram) -> int:
    return len(d.nodes) + len(d.edges)


def layout(dot_source: str, fmt: str, timeout: float | None = DEFAULT.max_layout_seconds, span=UNKNOWN) -> bytes:
    """Run Graphviz's dot on `dot_source`, stopped after `timeout` seconds (E040 at `span`).

    Raises GraphvizNotFound when dot is missing."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFound(INSTALL_HINT.format(fmt=fmt.upper()))
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=dot_source.encode("utf-8"), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise error("E040", f"Graphviz's dot did not finish its layout within {timeout:g} s and was stopped", span,
                    hint="write the dot text instead (-o net.dot) and lay it out without a time limit, "
                         "or allow more time with --limit max_layout_seconds=N") from None
    if done.returncode != 0:  # our dot text is always valid: this is a bug or Graphviz running out of memory
        raise RuntimeError(f"Graphviz's dot failed (exit {done.returncode}): "
                           f"{done.stderr.decode('utf-8', 'replace').strip()[:500]}")
    return done.stdout


def to_svg(net: "Network | Graph", **opts) -> str:
    """An SVG picture as text (what `Network._repr_svg_` shows in a notebook)."""
    return _laid_out(net, "svg", **opts).decode("utf-8")


def _laid_out(net: "Network | Graph", fmt: str, level: str = "block", rankdir: str | None = None,
              shapes: bool = True, params: bool = True) -> bytes:
    limits = getattr(net, "limits", DEFAULT)
    d = diagram(net, level)
    check_size(net, d, limits)
    g = _graph(net)
    return layout(_dot_text(d, level, rankdir, shapes, params), fmt, limits.max_layout_seconds,
                  g.scopes[0].span if g.scopes else UNKNOWN)


def format_of(path: str | Path) -> str:
    """The output format an output file name asks for (its suffix; .gv counts as .dot)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    suffix = "dot" if suffix == "gv" else suffix
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the format from {str(path)!r}: use a .svg, .png, .pdf or .dot file name")
    return suffix


def render(net: "Network | Graph", path: str | Path | None = None, level: str = "block", rankdir: str | None = None,
           shapes: bool = True, params: bool = True) -> str | None:
    """Return the dot source (path None), or write `path` in the format its suffix names.

    Only a layout (svg, png, pdf) is size-checked and timed: dot text costs linear time."""
    if path is None:
        return to_dot(net, level, rankdir, shapes, params)
    fmt = format_of(path)
    if fmt == "dot":
        data = to_dot(net, level, rankdir, shapes, params).encode("utf-8")
    else:
        data = _laid_out(net, fmt, level, rankdir, shapes, params)
    Path(path).write_bytes(data)
    return None

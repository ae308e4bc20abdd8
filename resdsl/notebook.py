"""A network in a notebook: an HTML summary table next to its Graphviz diagram.

Reads a `Network` (summary rows of `summary.py`, the SVG of `render/`);
writes HTML.  When Graphviz's `dot` is missing the table still shows, with one
line saying what to install -- a notebook never gets an error cell for it.
Every string from the network is HTML-escaped.
"""
from __future__ import annotations

from html import escape

MISSING_DOT = ("No diagram: Graphviz's <code>dot</code> was not found on PATH. Install Graphviz "
               "(<code>apt-get install graphviz</code>, <code>brew install graphviz</code> or "
               "<code>conda install -c conda-forge graphviz</code>) to see it here.")


def svg_or_none(net, level: str = "block") -> str | None:
    """The diagram as inline SVG, or None when Graphviz's dot is missing."""
    from .render import GraphvizNotFound, to_svg
    try:
        svg = to_svg(net, level=level)
    except GraphvizNotFound:
        return None
    return svg


def table_html(net, depth: int | None = 2, convention: str = "torchvision") -> str:
    from .summary import summary_rows
    rows, cost = summary_rows(net, depth, convention)
    cell = 'style="text-align:{};padding:0 0.6em;font-family:monospace;white-space:pre"'
    left, right = cell.format("left"), cell.format("right")
    head = "".join(f"<th {left if i < 3 else right}>{h}</th>"
                   for i, h in enumerate(("layer", "op", "output shape", cost.unit, "params")))
    body = "".join(f"<tr><td {left}>{escape(name)}</td><td {left}>{escape(op)}</td><td {left}>{escape(shape)}</td>"
                   f"<td {right}>{m:,}</td><td {right}>{p:,}</td></tr>" for name, op, shape, p, m in rows)
    settings = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in net.params.items())
    ins = ", ".join(f"{k}: {list(v)}" for k, v in net.inputs.items())
    outs = ", ".join(f"{k}: {list(v)}" for k, v in net.outputs.items())
    return (f"<div><b>{escape(net.name)}</b>({escape(settings)}) <small>from {escape(net.source)}</small>"
            f"<table>{head}{body}</table>"
            f"<p>{escape(ins)} &rarr; {escape(outs)}<br>params: {net.param_count:,} &middot; "
            f"buffers: {net.buffer_count:,} &middot; {cost.unit} ({escape(convention)}): {cost.total:,} &middot; "
            f"ops: {len(net.nodes)}</p></div>")


def network_html(net, level: str = "block", depth: int | None = 2, convention: str = "torchvision") -> str:
    svg = svg_or_none(net, level)
    # inline: without the XML prolog and doctype
    picture = svg[svg.find("<svg"):] if svg is not None else f'<p class="resdsl-no-dot">{MISSING_DOT}</p>'
    return (f'<div class="resdsl-network" style="display:flex;gap:1.5em;align-items:flex-start">'
            f"{table_html(net, depth, convention)}<div>{picture}</div></div>")


class View:
    """What `Network.show()` returns: displays as the HTML view in a notebook, as the text summary elsewhere."""

    def __init__(self, net, level: str, depth: int | None, convention: str):
        self.net, self.level, self.depth, self.convention = net, level, depth, convention

    def _repr_html_(self) -> str:
        return network_html(self.net, self.level, self.depth, self.convention)

    def __repr__(self) -> str:
        return self.net.summary(self.depth)

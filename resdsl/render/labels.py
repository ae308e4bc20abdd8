"""Text and colour for diagram nodes: "3×3 conv, 64, /2", "36.9k params", "64×56×56".

Reads IR `Node`s (op, attrs, shape, params) and each op's `label` and
`family.display` facets (resdsl/ops/); writes nothing.  An op without them is
an internal error naming this pass, so a new op cannot silently render as
something else.
"""
from __future__ import annotations

from .. import ops
from ..ir import Node
from ..ops.base import fmt_shape  # noqa: F401  (re-exported: the renderers format shapes with it)

# One colour per diagram family (fill colours, readable in print and for most colour-blind readers:
# blue / orange / green / purple / red differ in lightness as well as hue).
FAMILIES: dict[str, str] = {  # ops.Display -> fill colour
    ops.Display.CONV.value: "#9ecae1",
    ops.Display.NORM.value: "#fdd49e",
    ops.Display.ACTIVATION.value: "#c7e9c0",
    ops.Display.POOL.value: "#dadaeb",
    ops.Display.LINEAR.value: "#fcae91",
    ops.Display.MERGE.value: "#ffffff",
    ops.Display.OTHER.value: "#e5e5e5",
    ops.Display.IO.value: "#f7f7f7",
}


def family(op: str) -> str:
    """The display family (legend entry) of an op."""
    fam = ops.OPS[op].family.display.value
    if fam not in FAMILIES:
        raise ops.MissingFacet(op, "display colour", "render")
    return fam


def fmt_count(n: int) -> str:
    """36864 -> '36.9k', 2359296 -> '2.36M', 512 -> '512'."""
    if n < 1000:
        return str(n)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            text = f"{v:.3g}" if v < 1000 else f"{v:.0f}"
            return text + suffix
    return str(n)  # unreachable


def fmt_params(n: int) -> str:
    return f"{fmt_count(n)} params" if n else ""


def describe(n: Node) -> str:
    """Short paper-style text for one op, e.g. '3×3 conv, 128, /2' (the op's `label` facet)."""
    op = ops.OPS.get(n.op)
    if op is None or op.label is None:
        raise ops.MissingFacet(n.op, "label", "render")
    return op.label(n.attrs, n.shape)


# label rule per op, for tests and tools that list them
RULES = {name: op.label for name, op in ops.OPS.items()}


def html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")

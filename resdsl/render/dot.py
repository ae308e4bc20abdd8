"""Diagram -> Graphviz dot text.

Reads a `Diagram` (diagram.py) and the display options (rankdir, shapes,
params); returns the dot source as a string.  Everything is emitted in the
diagram's own (program) order and no hash-ordered container is iterated, so
the text is byte-identical across runs and PYTHONHASHSEEDs.  User-written
names only ever appear inside quoted/escaped strings.
"""
from __future__ import annotations

from .diagram import DEdge, Diagram, DNode
from ..ops import MERGES
from .labels import FAMILIES, fmt_count, html_escape

MERGE_KINDS = frozenset(MERGES)  # diagram nodes of merge ops are drawn as small circles

FONT = "Helvetica"
EDGE_STYLE = {  # kind -> dot edge attributes
    "data": 'color="#404040"',
    "identity": 'style=dashed, color="#404040", penwidth=1.2',
    "shortcut": 'color="#2b6cb0", penwidth=1.4, fontcolor="#2b6cb0"',
    "skip": 'style=dashed, color="#b05a2b", fontcolor="#b05a2b", constraint=false',
    "lane": 'color="#404040", arrowsize=0.5',
}
CLUSTER_STYLE = {  # cluster kind -> attributes
    "group": 'style="rounded"; color="#808080"; fontsize=11',
    "unit": 'style="rounded,filled"; fillcolor="#fafafa"; color="#b0b0b0"; fontsize=9',
    "lanes": 'style="rounded"; color="#808080"; fontsize=11',
}
DEFAULT_CLUSTER = 'style="rounded,dashed"; color="#a0a0a0"; fontsize=9'


def q(text: str) -> str:
    """A dot double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot_text(d: Diagram, rankdir: str = "TB", shapes: bool = True, params: bool = True) -> str:
    out: list[str] = []
    w = out.append
    title = f"{d.name} — {d.level} level"
    w(f"digraph {q(d.name)} {{")
    w(f'  graph [rankdir={rankdir}, fontname="{FONT}", fontsize=12, labelloc=t, label={_graph_label(title, d.note)}, '
      f'nodesep=0.25, ranksep=0.3, newrank=true, forcelabels=true, compound=true];')
    w(f'  node [fontname="{FONT}", fontsize=10, shape=box, style="rounded,filled", color="#606060", '
      f'margin="0.08,0.03", height=0.3];')
    w(f'  edge [fontname="{FONT}", fontsize=8, arrowsize=0.6];')
    children: dict[str | None, list[str]] = {}
    for c in d.clusters:
        children.setdefault(c.parent, []).append(c.id)
    members: dict[str | None, list[DNode]] = {}
    for n in d.nodes:
        members.setdefault(n.cluster, []).append(n)
    by_id = {c.id: c for c in d.clusters}

    def emit(cid: str | None, indent: str) -> None:
        for n in members.get(cid, []):
            w(indent + _node(n, shapes, params))
        for sub in children.get(cid, []):
            c = by_id[sub]
            w(f"{indent}subgraph {c.id} {{")
            w(f"{indent}  label={q(c.label)}; {CLUSTER_STYLE.get(c.kind, DEFAULT_CLUSTER)};")
            emit(sub, indent + "  ")
            w(f"{indent}}}")

    emit(None, "  ")
    back, pairs = _u_shape(d)
    for k, e in enumerate(d.edges):
        w("  " + _edge(e, shapes, k in back))
    for a, b in pairs:
        w(f"  {{ rank=same; {a}; {b}; }}")
    for ids in d.same_rank:
        w("  { rank=same; " + " ".join(f"{i};" for i in ids) + " }")

    for i in d.ordered:
        w(f"  {i} [ordering=out];")
    fams = [f for f in FAMILIES if f in d.families and f != "io"]
    if fams:
        rows = "".join(f'<tr><td bgcolor="{FAMILIES[f]}" width="14"> </td><td align="left">{f}</td></tr>' for f in fams)
        w(f'  legend [shape=plain, style="", label=<<table border="0" cellborder="1" cellspacing="2" cellpadding="2">'
          f'<tr><td colspan="2"><b>op family</b></td></tr>{rows}</table>>];')
        w("  { rank=sink; legend; }")
    w("}")
    return "\n".join(out) + "\n"


def _graph_label(title: str, note: str) -> str:
    text = f"<b>{html_escape(title)}</b>"
    if note:
        text += f'<br/><font point-size="9">{html_escape(note)}</font>'
    return f"<{text}>"


def _small(text: str) -> str:
    return f'<font point-size="8" color="#505050">{html_escape(text)}</font>'


def _node(n: DNode, shapes: bool, params: bool) -> str:
    fill = {"io": "#f7f7f7"}.get(n.family, None) or _fill(n.family)
    ptext = f"{fmt_count(n.params)} params" if params and n.params else ""
    if n.kind in MERGE_KINDS:
        attrs = [f"shape=circle, fixedsize=true, width=0.32, fontsize=13, style=filled, fillcolor=\"#ffffff\", "
                 f"label={q(n.title)}"]
        xl = " ".join(x for x in (n.xlabel, ptext) if x)
        if xl:
            attrs.append(f"xlabel={q(xl)}")
        attrs.append(f"tooltip={q(n.tooltip or n.detail or n.title)}")
        return f"{n.id} [{', '.join(attrs)}];"
    if n.kind == "skip":
        return f'{n.id} [shape=point, width=0.07, style=filled, color="#808080", tooltip={q(n.title)}];'
    if n.kind in ("input", "output"):
        lines = [f"<b>{html_escape(n.title)}</b>"] + ([_small(n.detail)] if shapes and n.detail else [])
        shape = "invhouse" if n.kind == "input" else "house"
        return f'{n.id} [shape={shape}, style=filled, fillcolor="{fill}", label=<{"<br/>".join(lines)}>];'
    if n.kind == "box":
        return f"{n.id} [shape=plain, style=\"\", label=<{_table(n, params)}>];"
    lines = [f"<b>{html_escape(n.title)}</b>" if n.kind == "item" else html_escape(n.title)]
    sub = " · ".join(x for x in (n.detail, ptext) if x)
    if sub:
        lines.append(_small(sub))
    tip = f", tooltip={q(n.tooltip)}" if n.tooltip else ""
    return f'{n.id} [fillcolor="{fill}"{tip}, label=<{"<br/>".join(lines)}>];'


def _table(n: DNode, params: bool) -> str:
    rows = "".join(f'<tr><td bgcolor="{_fill(f)}">{html_escape(t)}</td></tr>' for t, f in n.rows)
    foot = []
    if n.repeat > 1:
        foot.append(f"×{n.repeat}")
    if params and n.params:
        foot.append(f"{fmt_count(n.params)} params" + (" in all" if n.repeat > 1 else ""))
    if foot:
        rows += f"<tr><td border=\"0\">{_small(', '.join(foot))}</td></tr>"
    return f'<table border="0" cellborder="1" cellspacing="0" cellpadding="3" style="rounded">{rows}</table>'


def _fill(fam: str) -> str:
    return FAMILIES.get(fam, FAMILIES["other"])


def _edge(e: DEdge, shapes: bool, back: bool = False) -> str:
    attrs = [EDGE_STYLE[e.kind]]
    label = e.label
    if e.shape is not None and not shapes:
        label = ""
    if label:
        attrs.append(f"label={q(' ' + label + ' ')}")
    if back:  # written head -> tail so the layout runs this part upwards; the arrow still points at e.dst
        attrs.append("dir=back")
        return f"{e.dst} -> {e.src} [{', '.join(attrs)}];"
    return f"{e.src} -> {e.dst} [{', '.join(attrs)}];"


def _u_shape(d: Diagram) -> tuple[set[int], list[tuple[str, str]]]:
    """An encoder-decoder with nested long skips (U-Net) is drawn as a U.

    When the skip edges nest like parentheses (s1 < s2 < ... < t2 < t1 in program
    order), the decoder (everything from the first skip target on) is laid out
    upwards, by writing its edges reversed with dir=back, and each skip's two ends
    share a rank, so encoder and decoder stand side by side with the skips across.
    Returns the indices of the edges to reverse and the node pairs to rank together.
    """
    if d.level not in ("network", "block", "layer"):
        return set(), []
    first: dict[str, int] = {}
    for n in d.nodes:
        first[n.id] = min(n.ir) if n.ir else 1 << 60  # output nodes come last
    skips = [e for e in d.edges if e.kind == "skip"]
    if len(skips) < 2:
        return set(), []
    skips.sort(key=lambda e: first[e.src])
    srcs = [first[e.src] for e in skips]
    dsts = [first[e.dst] for e in skips]
    nested = all(a < b for a, b in zip(srcs, srcs[1:])) and all(a > b for a, b in zip(dsts, dsts[1:]))
    if not nested or max(srcs) >= min(dsts):
        return set(), []
    turn = min(dsts)  # the decoder starts at the innermost skip's target
    back = {k for k, e in enumerate(d.edges)
            if e.kind != "skip" and first[e.dst] >= turn}
    return back, [(e.src, e.dst) for e in skips]

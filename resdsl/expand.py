"""IR -> flat .res text: the network with every parameter, loop and block call applied.

Reads an `ir.Graph` (nodes, regions, scopes and `Graph.structure`); writes
.res source that elaborates to the same graph (same qualified names, ops,
attributes and shapes).  Block calls become labeled `group`s, projection
shortcuts become explicit `shortcut { }` clauses, and every line carries a
comment with the place in the source it came from.
"""
from __future__ import annotations

from . import ops
from .evaluate import show
from .ir import Graph, Node

def _value(v: object) -> str:
    if isinstance(v, tuple) and v and all(x == v[0] for x in v) and not isinstance(v[0], float):
        return show(v[0])
    return show(v)


def _same(v: object, default: object) -> bool:
    if isinstance(v, tuple) and not isinstance(default, tuple):
        return all(x == default for x in v)
    return v == default and type(v) is type(default) or (isinstance(v, float) and v == default)


def _args(n: Node, operands: list[str]) -> str:
    spec = ops.OPS[n.op]
    params = [p for p in spec.params if p.kind != "tensors"]
    parts = list(operands)
    for idx, p in enumerate(params):
        v = n.attrs.get(p.name, p.default)
        if p.default is not ops.REQUIRED and _same(v, p.default):
            continue
        if idx == 0 and p.default is ops.REQUIRED and p.positional and not operands:
            parts.append(_value(v))
        else:
            parts.append(f"{p.name}={_value(v)}")
    return "(" + ", ".join(parts) + ")" if parts or params else ""


def _origin(n: Node) -> str:
    where = f"{n.span.file}:{n.span.line}"
    for c in reversed(n.calls):
        where += f" in {c.block} ({c.span.file}:{c.span.line})"
    return where


class _Writer:
    def __init__(self, g: Graph, need: set[int]):
        self.g, self.need = g, need
        self.lines: list[str] = []
        self.depth = 1
        self.current: int | None = None
        self.saved: list = []  # (kind, ref, current before) per open frame
        self.parts: list[int] = []  # the region part (branch index, -1: shortcut) being written, innermost last
        self.skip_close: set[tuple[str, int]] = set()
        self.label_for_region: dict[int, str] = {}
        self.merges = {r.merge for r in g.regions}
        self.input_names = {i: k for k, i in g.inputs.items()}
        # Names bound inside a `parallel` are local to it, so an output made there is declared on the spot;
        # every other output is declared at the end, in the original order.
        local = {i for r in g.regions if r.kind == "parallel" for b in r.branches for i in b}
        self.inline_outputs: dict[int, list[str]] = {}
        for name, i in g.outputs.items():
            if i in local:
                self.inline_outputs.setdefault(i, []).append(name)

    def local(self, qualified: str, scope: int | None) -> str:
        """The name within its enclosing scope; a dotted label stays whole (`conv.0.0`)."""
        base = self.g.scopes[scope].name if scope is not None else ""
        return qualified[len(base) + 1:] if base else qualified

    def tname(self, i: int) -> str:
        if i in self.input_names:
            return self.input_names[i]
        return "t_" + self.g.nodes[i].name.replace(".", "__")

    def put(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def use(self, i: int) -> None:
        """Make node i the current tensor, emitting `from` when it is not."""
        if self.current != i:
            self.need.add(i)
            self.put(f"from {self.tname(i)}")
            self.current = i

    def event(self, action: str, kind: str, ref: int) -> None:
        g = self.g
        if kind == "scope":
            s = g.scopes[ref]
            if s.kind in ("residual", "dense", "parallel"):  # printed as the region's label
                if action == "open":
                    self.label_for_region[ref] = self.local(s.name, s.parent)
                return
            if action == "open":
                word = "branch" if s.kind == "branch" else "group"
                self.put(f"{self.local(s.name, s.parent)}: {word} {{")
                self.depth += 1
            else:
                if s.kind == "branch":  # a parallel branch may end on `from NAME`: make its result current
                    self.use(self.result(g.regions[self.saved[-1][1]], self.parts[-1]))
                self.depth -= 1
                self.put("}")
        elif kind == "region":
            r = g.regions[ref]
            if action == "open":
                self.use(r.input)
                label = self.label_for_region.get(r.scope, "")
                args = ""
                if r.kind == "dense" and r.attrs.get("crop"):
                    args = "(crop=true)"
                if r.kind == "parallel":
                    merge = g.nodes[r.merge]
                    args = f'(merge="{r.attrs["merge"]}"' + (", crop=true" if merge.attrs.get("crop") else "") + ")"
                self.saved.append(("region", ref))
                self.put(f"{label + ': ' if label else ''}{r.kind}{args} {{")
                self.depth += 1
            else:
                self.saved.pop()
                self.depth -= 1
                if not self.custom_shortcut(r):  # otherwise the shortcut clause closed it
                    self.put("}")
                self.current = r.merge
                if r.merge in self.need:
                    self.put(f"-> {self.tname(r.merge)}")
                self.outputs_of(r.merge)
        elif kind == "part":
            r = g.regions[self.saved[-1][1]]
            if action == "open":
                self.parts.append(ref)
                self.current = r.input
                if ref == -1 and self.custom_shortcut(r):
                    self.depth -= 1
                    self.put("} shortcut {")
                    self.depth += 1
            else:
                self.parts.pop()
                if r.kind != "parallel" and (ref >= 0 or self.custom_shortcut(r)):
                    self.use(self.result(r, ref))  # a part may end on `from NAME`: make its result current
                if ref == -1 and self.custom_shortcut(r):
                    self.depth -= 1
                    self.put("}")
                    self.depth += 1

    def result(self, r, part: int) -> int:
        """The tensor a region's branch `part` (-1: the shortcut) hands to the merge."""
        merge = self.g.nodes[r.merge]
        if part >= 0:
            return merge.inputs[r.branch_slots[part]]
        return next(i for slot, i in enumerate(merge.inputs) if slot not in r.branch_slots)

    def custom_shortcut(self, r) -> bool:
        """The residual needs a `shortcut { }` clause: it has shortcut nodes, or its shortcut is another tensor."""
        return r.kind == "residual" and (bool(r.shortcut) or self.result(r, -1) != r.input)

    def node(self, n: Node) -> None:
        if n.id in self.merges:
            return
        if n.op == "input":
            shape = ", ".join(str(d) for d in n.shape)
            ids = "int" if n.attrs.get("dtype") == "int" else ""  # token ids: int[N]
            named = self.g.sizes.text.get(self.input_names[n.id]) if self.g.sizes is not None else None
            if named and self.g.sizes.symbolic_roots() and not self.g.sizes.uses:  # named sizes stay named
                # (sizevars.py); a body that reads them was expanded at the example: that one stays concrete
                dims, where = named
                shape = ", ".join(str(d) if t is None else t for d, t in zip(n.shape, dims))
                shape += "]" + (f" where {where}" if where else "")
                self.put(f"input {self.input_names[n.id]}: {ids}[{shape}")
            else:
                self.put(f"input {self.input_names[n.id]}: {ids}[{shape}]")
            if self.current is None:
                self.current = n.id
            return
        self.use(n.inputs[0])
        operands = []
        for i in n.inputs[1:]:
            self.need.add(i)
            operands.append(self.tname(i))
        line = "    " * self.depth + f"{self.local(n.name, n.scope)}: {n.op}{_args(n, operands)}"
        self.lines.append(f"{line:<72}  # {_origin(n)}")
        self.current = n.id
        if n.id in self.need:
            self.put(f"-> {self.tname(n.id)}")
        self.outputs_of(n.id)

    def outputs_of(self, i: int) -> None:
        """Declare the outputs of node i that must be declared where it is made (inside a parallel)."""
        for name in self.inline_outputs.get(i, ()):
            self.put(f"output {name}")


def _run(g: Graph, need: set[int]) -> list[str]:
    w = _Writer(g, need)
    events = g.structure
    k = 0
    for n in g.nodes:
        while k < len(events) and events[k][0] <= n.id:
            w.event(*events[k][1:])
            k += 1
        w.node(n)
    while k < len(events):
        w.event(*events[k][1:])
        k += 1
    for name, i in g.outputs.items():
        if i in w.inline_outputs:
            continue
        if i in w.input_names:
            w.put(f"output {w.input_names[i]}" if w.input_names[i] == name else f"from {w.input_names[i]}")
            if w.input_names[i] != name:
                w.put(f"output {name}")
            continue
        w.need.add(i)
        w.put(f"from {w.tname(i)}")
        w.put(f"output {name}")
    return w.lines


def expand(g: Graph) -> str:
    """The flat .res text of an elaborated graph."""
    need: set[int] = set()
    _run(g, need)  # first pass: find which tensors later statements refer to by name
    body = _run(g, need)
    settings = ", ".join(f"{k}={show(v)}" for k, v in g.params.items())
    files = sorted({n.span.file for n in g.nodes})
    head = [f"# {g.name}({settings}) expanded by resdsl from {', '.join(files)}",
            f"# {len(g.nodes)} operations, {g.param_count:,} parameters",
            f"network {g.name}() {{"]
    return "\n".join(head + body + ["}"]) + "\n"

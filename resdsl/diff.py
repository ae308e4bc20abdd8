"""Two networks side by side: per-layer differences in shape, parameters and MACs, and totals.

Reads two `Network`s (their IR nodes by name and the static costs of
`analysis/cost.py`); writes a `NetworkDiff`, rendered as a table or JSON.
Layers are matched by name -- the names the PyTorch module and its state_dict
use -- so a reviewer sees exactly which weights change shape, appear or go.
A scope that exists on one side only (a block added by a deeper setting) is
one row with its totals, not one row per layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .network import Network


@dataclass(frozen=True)
class Side:
    op: str
    shape: tuple[int, ...]
    params: int
    macs: int
    layers: int = 1  # > 1 for a collapsed scope


@dataclass(frozen=True)
class Row:
    name: str
    status: str  # changed | added | removed
    a: Side | None
    b: Side | None


@dataclass
class NetworkDiff:
    a: Network
    b: Network
    convention: str
    rows: list[Row] = field(default_factory=list)
    totals: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (a, b)
    same: int = 0  # layers equal on both sides

    def to_json(self) -> dict:
        side = lambda s: None if s is None else {"op": s.op, "shape": list(s.shape), "params": s.params,
                                                  "macs": s.macs, "layers": s.layers}
        net = lambda n: {"network": n.name, "source": n.source, "params_set": _plain(n.params),
                         "named_sizes": _named(n), "inputs": {k: list(v) for k, v in n.inputs.items()}}
        return {"a": net(self.a), "b": net(self.b),
                "macs_convention": self.convention,
                "totals": {k: {"a": x, "b": y, "delta": y - x} for k, (x, y) in self.totals.items()},
                "unchanged_layers": self.same,
                "layers": [{"name": r.name, "status": r.status, "a": side(r.a), "b": side(r.b)} for r in self.rows]}

    def table(self) -> str:
        head = ("layer", "", "a: shape", "b: shape", "params a", "params b", "Δ params", "Δ MACs")
        body = []
        for r in self.rows:
            a, b = r.a, r.b
            mark = {"changed": "~", "added": "+", "removed": "-"}[r.status]
            name = r.name + (f" ({(a or b).layers} layers)" if (a or b).layers > 1 else "")
            body.append((name, mark, _shape(a), _shape(b), _num(a and a.params), _num(b and b.params),
                         _signed((b.params if b else 0) - (a.params if a else 0)),
                         _signed((b.macs if b else 0) - (a.macs if a else 0))))
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(head)]
        fmt = lambda r: "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        line = "-" * len(fmt(head))
        out = [f"a: {_title(self.a)}", f"b: {_title(self.b)}", line, fmt(head), line] + [fmt(r) for r in body]
        if not body:
            out.append("(no layer differs)")
        out += [line, f"{self.same} layers unchanged, {len(self.rows)} rows differ "
                      f"(~ changed, + only in b, - only in a)"]
        for k, (x, y) in self.totals.items():
            pct = f" ({(y - x) / x:+.2%})" if x else ""
            out.append(f"{k + ':':<9} {x:>16,} -> {y:>16,}  {_signed(y - x):>16}{pct}")
        for side, n in (("a", self.a), ("b", self.b)):
            named = _named(n)
            if named:
                ins = ", ".join(f"{k}: {list(v)}" for k, v in n.inputs.items())
                out.append(f"note: {side} has named sizes ({named}): its shapes, params and MACs are those of "
                           f"the example {ins}")
        return "\n".join(out)


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _title(n: Network) -> str:
    settings = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in n.params.items())
    return f"{n.name}({settings})  from {n.source}"


def _named(n: Network) -> str | None:
    """The input shapes as the file names them (`x: [3, H, W] where H % 8 == 4`), or None without named
    sizes: the network itself is built at an example size then."""
    sz = n.graph.sizes
    if sz is None or not sz.symbolic_roots():
        return None
    parts = []
    for name, shape in n.inputs.items():
        texts, where = sz.text.get(name, ([], ""))
        dims = [t if i < len(texts) and (t := texts[i]) is not None else str(v) for i, v in enumerate(shape)]
        parts.append(f"{name}: [{', '.join(dims)}]" + (f" where {where}" if where else ""))
    return "; ".join(parts)


def _shape(s: Side | None) -> str:
    return "" if s is None else "[" + ", ".join(map(str, s.shape)) + "]"


def _num(v) -> str:
    return "" if v is None else f"{v:,}"


def _signed(v: int) -> str:
    return "0" if v == 0 else f"{v:+,}"


def _layers(net: Network, convention: str) -> dict[str, Side]:
    cost = net.costs(convention)
    return {n.name: Side(n.op, tuple(n.shape), n.params, c.macs) for n, c in zip(net.nodes, cost.layers)}


def _collapse(names: list[str], only: set[str], union: list[str], side: dict[str, Side]) -> list[tuple[str, Side]]:
    """Names present on one side only, merged into the widest scope whose every layer is one-sided."""
    mixed: set[str] = set()  # scopes holding a layer of both sides
    for u in union:
        if u not in only:
            parts = u.split(".")
            mixed.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))

    def scope(name: str) -> str:
        parts = name.split(".")
        for k in range(1, len(parts)):
            prefix = ".".join(parts[:k])
            if prefix not in mixed:
                return prefix
        return name
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(scope(n), []).append(n)
    result = []
    for s, members in out.items():
        sides = [side[m] for m in members]
        last = sides[-1]
        op = last.op if len(members) == 1 else "scope"
        result.append((s, Side(op, last.shape, sum(x.params for x in sides), sum(x.macs for x in sides),
                               len(members))))
    return result


def diff(a: Network, b: Network, convention: str = "torchvision") -> NetworkDiff:
    """Layers matched by name: those whose op, shape, parameters or MACs differ, and those on one side only."""
    la, lb = _layers(a, convention), _layers(b, convention)
    union = list(la) + [n for n in lb if n not in la]
    d = NetworkDiff(a, b, convention)
    only_a = {n for n in la if n not in lb}
    only_b = {n for n in lb if n not in la}
    removed = dict(_collapse([n for n in la if n in only_a], only_a, union, la))
    added = dict(_collapse([n for n in lb if n in only_b], only_b, union, lb))
    emitted: set[str] = set()
    for n in union:
        if n in la and n in lb:
            if la[n] == lb[n]:
                d.same += 1
            else:
                d.rows.append(Row(n, "changed", la[n], lb[n]))
            continue
        table, status = (removed, "removed") if n in only_a else (added, "added")
        key = next(k for k in table if n == k or n.startswith(k + "."))
        if key not in emitted:
            emitted.add(key)
            d.rows.append(Row(key, status, table[key] if status == "removed" else None,
                              table[key] if status == "added" else None))
    ca, cb = a.costs(convention), b.costs(convention)
    d.totals = {"params": (a.param_count, b.param_count), "buffers": (a.buffer_count, b.buffer_count),
                cb.unit: (ca.total, cb.total), "ops": (len(a.nodes), len(b.nodes))}
    return d

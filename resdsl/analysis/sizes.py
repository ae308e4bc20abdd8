"""Valid input sizes: for which spatial sizes is every op defined without rounding surprises?

Reads a `Network` (re-elaborating its program at other values of its size
parameter); writes a `SizeReport`.  The IR needs concrete sizes, so the
method is empirical and bounded: find the network parameters that set the
input's spatial dims (an int parameter whose value appears in an input shape
and whose change changes that shape), elaborate at every candidate size in
a range, and check each op of each elaborated graph:

  conv / pool with stride s > 1   the input length must be divisible by s, and
                                  no input pixel may be left out by the last window
  any conv / pool                 no input pixel left out at the end (when the kernel spans at least
                                  the stride; a 1x1 stride-2 conv skips pixels by design)
  crop, concat(crop=true)         the size difference must be even (a centered crop)
  adaptive pooling                the input length must be divisible by the output length
  upsample(size=...)              the output length must be a multiple of the input length
  zeropad shortcut                the input length must be divisible by the stride
  add / concat                    shapes must match (elaboration reports these as errors)

Valid sizes are then summarised as an arithmetic rule (a + m*k) when they form one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ..diagnostics import ResdslError
from ..ir import Graph, Node
from ..ops import Spatial


@dataclass
class Rounding:
    node: str
    op: str
    dim: int  # spatial dim index (0 = first spatial dim)
    message: str
    source: str  # file:line


def _dropped(L: int, k: int, s: int, p: int, d: int) -> int:
    """Input pixels at the far end that no window reads (padding excluded)."""
    eff = d * (k - 1) + 1
    if L + 2 * p < eff:
        return 0
    return max(0, (L + 2 * p - eff) % s - p)


def d_eff(k: int, d: int) -> int:
    return d * (k - 1) + 1


def node_problems(g: Graph, n: Node) -> list[Rounding]:
    out: list[Rounding] = []
    xs = [g.nodes[i].shape for i in n.inputs]
    src = f"{n.span.file}:{n.span.line}"
    a = n.attrs

    def add(dim: int, msg: str) -> None:
        out.append(Rounding(n.name, n.op, dim, msg, src))

    kind = n.spec.spatial
    if kind is Spatial.WINDOW:
        if a.get("padding") == "same":
            return out
        x = xs[0]
        d = a.get("dilation") or (1,) * len(a["kernel_size"])
        for i, (L, k, s, p, di) in enumerate(zip(x[1:], a["kernel_size"], a["stride"], a["padding"], d)):
            lost = _dropped(L, k, s, p, di)
            if s > 1 and L % s:
                add(i, f"input length {L} is not divisible by the stride {s} (output {n.shape[1 + i]} = "
                       f"{'ceil' if n.shape[1 + i] * s > L else 'floor'}({L}/{s}))")
            elif lost and d_eff(k, di) >= s:  # with kernel < stride pixels are skipped by design anyway
                add(i, f"the last {lost} input pixel(s) of {L} are never read (kernel {k}, stride {s}, padding {p})")
    elif kind is Spatial.CROP or (kind is Spatial.MERGE and a.get("crop")):
        target = n.shape[1:]
        for x in xs:
            for i, (L, M) in enumerate(zip(x[1:], target)):
                if (L - M) % 2:
                    add(i, f"cropping {L} to {M} cannot be centered (odd difference {L - M})")
    elif kind is Spatial.ADAPTIVE:
        for i, (L, M) in enumerate(zip(xs[0][1:], n.shape[1:])):
            if L % M:
                add(i, f"adaptive pooling from {L} to {M}: windows of unequal size ({L} is not a multiple of {M})")
    elif kind is Spatial.RESAMPLE and a.get("size") is not None:
        for i, (L, M) in enumerate(zip(xs[0][1:], n.shape[1:])):
            if M % L:
                add(i, f"upsampling {L} to {M} is not an integer scale")
    elif kind is Spatial.SUBSAMPLE:
        for i, (L, s) in enumerate(zip(xs[0][1:], a["stride"])):
            if L % s:
                add(i, f"input length {L} is not divisible by the shortcut's stride {s}")
    return out


def problems(g: Graph) -> list[Rounding]:
    """Every rounding surprise in program order."""
    return [p for n in g.nodes for p in node_problems(g, n)]


def size_parameters(net) -> list[str]:
    """Network parameters that set spatial input dims (their value appears there and changing it changes it)."""
    found = []
    spatial = {d for shape in net.inputs.values() for d in shape[1:]}
    for name, value in net.params.items():
        if type(value) is not int or value not in spatial:
            continue
        try:
            other = _reload(net, {name: value + 1})
        except ResdslError:
            other = None
        if other is None or other.inputs != net.inputs:
            found.append(name)
    return found


def _reload(net, overrides: dict):
    from ..network import load

    params = {**net.params, **overrides}
    return load(net.source, network=net.name, **params)


@dataclass
class SizeReport:
    parameters: list[str]
    default: int | None
    checked: list[int]
    valid: list[int]
    rule: str
    failures: dict[int, str] = field(default_factory=dict)  # size -> first problem (or error)
    current: list[Rounding] = field(default_factory=list)  # problems at the network's own size
    truncated: bool = False
    dims: list["DimReport"] = field(default_factory=list)  # per spatial dim (no size parameter, or --input)

    def to_json(self) -> dict:
        return {"parameters": self.parameters, "default": self.default,
                "checked": [min(self.checked), max(self.checked)] if self.checked else None,
                "valid": self.valid, "rule": self.rule, "truncated": self.truncated,
                "current_size_problems": [{"node": p.node, "op": p.op, "dim": p.dim, "message": p.message,
                                           "source": p.source} for p in self.current],
                "dims": [{"input": d.input, "dim": d.dim, "rule": d.rule, "valid": d.valid[:32]} for d in self.dims]}


@dataclass
class DimReport:
    """Valid sizes of one spatial dim of one input, the others held at their declared sizes."""

    input: str
    dim: int  # index into the input's shape (1 = first spatial dim)
    rule: str
    valid: list[int]
    failures: dict[int, str] = field(default_factory=dict)


def _scan(net, shape_of, sizes, deadline: float, progress, done: int, total: int, spatial_dim: int):
    """Elaborate at each size (shape_of(size) -> input_shapes) and sort sizes into valid / failing,
    counting only the roundings in the varied spatial dim (the others may be invalid on their own)."""
    from ..network import load

    checked, valid, failures = [], [], {}
    for s in sizes:
        if time.perf_counter() > deadline:
            return checked, valid, failures, True
        checked.append(s)
        try:
            other = load(net.source, network=net.name, input_shapes=shape_of(s), **net.params)
            probs = [p for p in problems(other.graph) if p.dim == spatial_dim]
            if probs:
                failures[s] = f"{probs[0].node} ({probs[0].op}): {probs[0].message}"
            else:
                valid.append(s)
        except ResdslError as e:
            failures[s] = e.diagnostics[0].message if e.diagnostics else "error"
        done += 1
        if progress:
            progress(done, total)
    return checked, valid, failures, False


def valid_sizes_by_dim(net, lo: int = 1, hi: int | None = None, budget_s: float = 30.0, progress=None) -> list[DimReport]:
    """Vary each spatial dim of each input on its own (through input-shape overrides), others fixed."""
    dims = [(name, d) for name, shape in net.inputs.items() for d in range(1, len(shape))]
    ranges = {(name, d): range(lo, (hi if hi is not None else max(2 * net.inputs[name][d], 64)) + 1) for name, d in dims}
    total = sum(len(r) for r in ranges.values())
    deadline, done, out = time.perf_counter() + budget_s, 0, []
    for name, d in dims:
        base = list(net.inputs[name])

        def shape_of(s, name=name, d=d, base=base):
            return {name: tuple(base[:d] + [s] + base[d + 1:])}

        checked, valid, failures, stopped = _scan(net, shape_of, ranges[(name, d)], deadline, progress, done, total,
                                                  d - 1)
        done += len(checked)
        out.append(DimReport(name, d, summarise(valid, checked) if checked else "not checked (time budget)",
                             valid, failures))
        if stopped:
            break
    return out


def summarise(valid: list[int], checked: list[int]) -> str:
    if not valid:
        return "no valid size in the checked range"
    if len(valid) == 1:
        return f"only {valid[0]} in the checked range"
    a = valid[0]
    m = 0
    for v in valid[1:]:
        m = math.gcd(m, v - a)
    expected = [c for c in checked if c >= a and (c - a) % m == 0]
    if expected == valid:
        if a % m == 0:
            rule = f"divisible by {m}" if m > 1 else "any size"
            # "at least a" only when a smaller size of the same form was checked and failed
            return f"{rule}, at least {a}" if a - m >= checked[0] else rule
        return f"{a} + {m}k (k >= 0)"
    return "valid sizes: " + ", ".join(map(str, valid[:20])) + (" ..." if len(valid) > 20 else "")


def valid_sizes(net, lo: int = 1, hi: int | None = None, budget_s: float = 30.0, progress=None,
                by_dim: bool = False) -> SizeReport:
    """Elaborate `net` at every size in [lo, hi] (all its size parameters set together) and check each."""
    from ..network import load

    params = size_parameters(net)
    current = problems(net.graph)
    if by_dim or not params:  # vary each input dim directly (through input-shape overrides)
        dims = valid_sizes_by_dim(net, lo, hi, budget_s, progress)
        rule = "; ".join(f"{d.input} dim {d.dim}: {d.rule}" for d in dims) or "the network has no spatial input"
        return SizeReport([], None, [], [], rule, current=current, dims=dims)
    default = int(net.params[params[0]])
    hi = hi if hi is not None else max(2 * default, 64)
    checked, valid, failures = [], [], {}
    start = time.perf_counter()
    truncated = False
    sizes = list(range(lo, hi + 1))
    for i, s in enumerate(sizes):
        if time.perf_counter() - start > budget_s:
            truncated = True
            break
        checked.append(s)
        try:
            other = load(net.source, network=net.name, **{**net.params, **{p: s for p in params}})
        except ResdslError as e:
            failures[s] = e.diagnostics[0].message if e.diagnostics else "error"
            continue
        probs = problems(other.graph)
        if probs:
            failures[s] = f"{probs[0].node} ({probs[0].op}): {probs[0].message}"
        else:
            valid.append(s)
        if progress:
            progress(i + 1, len(sizes))
    return SizeReport(params, default, checked, valid, summarise(valid, checked), failures, current, truncated)

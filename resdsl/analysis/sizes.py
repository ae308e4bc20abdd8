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
from dataclasses import dataclass, field

from ..diagnostics import ResdslError
from ..ir import Graph, Node


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

    if (n.family == "conv" and not n.op.startswith("conv_transpose")) or n.op in ("maxpool", "avgpool"):
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
    elif n.op == "crop" or (n.op == "concat" and a.get("crop")):
        target = n.shape[1:]
        for x in xs:
            for i, (L, M) in enumerate(zip(x[1:], target)):
                if (L - M) % 2:
                    add(i, f"cropping {L} to {M} cannot be centered (odd difference {L - M})")
    elif n.op in ("adaptive_avgpool", "adaptive_maxpool"):
        for i, (L, M) in enumerate(zip(xs[0][1:], n.shape[1:])):
            if L % M:
                add(i, f"adaptive pooling from {L} to {M}: windows of unequal size ({L} is not a multiple of {M})")
    elif n.op == "upsample" and a.get("size") is not None:
        for i, (L, M) in enumerate(zip(xs[0][1:], n.shape[1:])):
            if M % L:
                add(i, f"upsampling {L} to {M} is not an integer scale")
    elif n.op == "zeropad":
        for i, (L, s) in enumerate(zip(xs[0][1:], a["stride"])):
            if L % s:
                add(i, f"input length {L} is not divisible by the shortcut's stride {s}")
    return out


def problems(g: Graph) -> list[Rounding]:
    """Every rounding surprise in program order."""
    return [p for n in g.nodes for p in node_problems(g, n)]


# Work is counted, not timed, so the answer never depends on how busy the machine is: each candidate size
# costs one elaboration, charged as the network's op count plus a fixed part for the call itself.
WORK_BUDGET = 300_000  # per scan; a 176-op ResNet-50 gets 1,085 sizes (22 s measured on a busy 2-core machine)
PER_ELABORATION = 100


class _Elaborations:
    """Elaborates `net`'s program at other parameters or input shapes, parsing its file once,
    and counts the work against a deterministic budget (reads `net`; writes nothing)."""

    def __init__(self, net, budget: int | None = None):
        from ..loader import load_file

        self.net = net
        self.program = load_file(net.source, net.limits)
        self.cost = len(net.nodes) + PER_ELABORATION
        self.budget = WORK_BUDGET if budget is None else budget
        self.work = 0

    @property
    def exhausted(self) -> bool:
        """True when one more elaboration would exceed the budget (the first one is always allowed)."""
        return self.work > 0 and self.work + self.cost > self.budget

    def graph(self, params: dict | None = None, input_shapes: dict | None = None) -> Graph:
        """The graph at these parameter overrides / input shapes; raises ResdslError."""
        from ..elaborate import elaborate

        self.work += self.cost
        return elaborate(self.program, self.net.name, {**self.net.params, **(params or {})}, self.net.limits,
                         input_shapes)


def size_parameters(net, runs: "_Elaborations | None" = None) -> list[str]:
    """Network parameters that set spatial input dims (their value appears there and changing it changes it)."""
    runs = runs or _Elaborations(net)
    found = []
    spatial = {d for shape in net.inputs.values() for d in shape[1:]}
    for name, value in net.params.items():
        if type(value) is not int or value not in spatial:
            continue
        try:
            g = runs.graph({name: value + 1})
            changed = {k: g.nodes[i].shape for k, i in g.inputs.items()} != net.inputs
        except ResdslError:
            changed = True
        if changed:
            found.append(name)
    return found


@dataclass
class SizeReport:
    parameters: list[str]
    default: int | None
    checked: list[int]
    valid: list[int]
    rule: str
    failures: dict[int, str] = field(default_factory=dict)  # size -> first problem (or error)
    current: list[Rounding] = field(default_factory=list)  # problems at the network's own size
    truncated: bool = False  # the work budget ran out before every size in the range was checked
    dims: list["DimReport"] = field(default_factory=list)  # per spatial dim (no size parameter, or --input)
    work: int = 0  # work units spent (deterministic: ops elaborated plus a fixed part per elaboration)

    def to_json(self) -> dict:
        return {"parameters": self.parameters, "default": self.default,
                "checked": [min(self.checked), max(self.checked)] if self.checked else None,
                "valid": self.valid, "rule": self.rule, "truncated": self.truncated, "work": self.work,
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
    checked: list[int] = field(default_factory=list)
    truncated: bool = False  # the work budget ran out inside (or before) this dim


def _scan(runs: _Elaborations, shape_of, sizes, progress, done: int, total: int, spatial_dim: int):
    """Elaborate at each size (shape_of(size) -> input_shapes) and sort sizes into valid / failing,
    counting only the roundings in the varied spatial dim (the others may be invalid on their own).
    Stops when the work budget is spent; the last value says whether it did."""
    checked, valid, failures = [], [], {}
    for s in sizes:
        if runs.exhausted:
            return checked, valid, failures, True
        checked.append(s)
        try:
            probs = [p for p in problems(runs.graph(input_shapes=shape_of(s))) if p.dim == spatial_dim]
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


def valid_sizes_by_dim(net, lo: int = 1, hi: int | None = None, budget: int | None = None, progress=None,
                       runs: _Elaborations | None = None) -> list[DimReport]:
    """Vary each spatial dim of each input on its own (through input-shape overrides), others fixed;
    the work budget is shared out equally between the dims."""
    runs = runs or _Elaborations(net, budget)
    budget = runs.budget
    dims = [(name, d) for name, shape in net.inputs.items() for d in range(1, len(shape))]
    ranges = {(name, d): range(lo, (hi if hi is not None else max(2 * net.inputs[name][d], 64)) + 1) for name, d in dims}
    total = sum(len(r) for r in ranges.values())
    done, out = 0, []
    for k, (name, d) in enumerate(dims):
        runs.budget = runs.work + (budget - runs.work) // (len(dims) - k)  # each dim its share of what is left
        base = list(net.inputs[name])

        def shape_of(s, name=name, d=d, base=base):
            return {name: tuple(base[:d] + [s] + base[d + 1:])}

        checked, valid, failures, stopped = _scan(runs, shape_of, ranges[(name, d)], progress, done, total, d - 1)
        done += len(checked)
        rule = summarise(valid, checked) if checked else "not checked (work budget spent)"
        if stopped and checked:
            rule += f" (checked {checked[0]}..{checked[-1]} only: work budget spent)"
        out.append(DimReport(name, d, rule, valid, failures, checked, stopped))
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


def valid_sizes(net, lo: int = 1, hi: int | None = None, budget: int | None = None, progress=None,
                by_dim: bool = False) -> SizeReport:
    """Elaborate `net` at every size in [lo, hi] (all its size parameters set together) and check each,
    until `budget` work units (default WORK_BUDGET) are spent; then `truncated` is set."""
    runs = _Elaborations(net, budget)
    params = size_parameters(net, runs)
    current = problems(net.graph)
    if by_dim or not params:  # vary each input dim directly (through input-shape overrides)
        dims = valid_sizes_by_dim(net, lo, hi, budget, progress, runs)
        rule = "; ".join(f"{d.input} dim {d.dim}: {d.rule}" for d in dims) or "the network has no spatial input"
        truncated = any(d.truncated for d in dims)
        return SizeReport([], None, [], [], rule, current=current, truncated=truncated, dims=dims, work=runs.work)
    default = int(net.params[params[0]])
    hi = hi if hi is not None else max(2 * default, 64)
    checked, valid, failures = [], [], {}
    truncated = False
    sizes = range(lo, hi + 1)  # lazily: the budget, not the range, bounds the work
    for i, s in enumerate(sizes):
        if runs.exhausted:
            truncated = True
            break
        checked.append(s)
        try:
            g = runs.graph({p: s for p in params})
        except ResdslError as e:
            failures[s] = e.diagnostics[0].message if e.diagnostics else "error"
            continue
        probs = problems(g)
        if probs:
            failures[s] = f"{probs[0].node} ({probs[0].op}): {probs[0].message}"
        else:
            valid.append(s)
        if progress:
            progress(i + 1, len(sizes))
    return SizeReport(params, default, checked, valid, summarise(valid, checked), failures, current, truncated,
                      work=runs.work)

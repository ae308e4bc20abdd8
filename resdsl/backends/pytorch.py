"""PyTorch backend: lower the IR to a standalone Python file, and build modules from it.

Reads a `Network` (its graph's nodes in program order: op, attrs, input ids,
shapes, qualified names, scopes, spans).  Writes Python source text (`generate`)
that imports only torch; `build` executes that same text and instantiates the
network's class.

The module tree mirrors the file (backends/tree.py): every scope -- a block
call, a labelled group/residual/dense/parallel, a loop's stage -- is a real
nn.Module with its own forward, and the layers are its children, so
state_dict keys are the layer names (`layer1.0.conv1.weight`, as torchvision
spells them) and hooks, torch.fx, torchinfo and ONNX scope names see blocks.
  * One class per .res block, named after it (`Bottleneck`), and one more per
    structurally different instance (`Bottleneck2`: the instances without the
    projection shortcut).  The numbers that differ between the instances of a
    class become its constructor arguments (`in_channels`, `stride`...).
  * A scope that is a plain chain of modules (each reading the one before) is
    an `nn.Sequential` (`layer1`, `downsample`), as torchvision writes them.
  * Activations and pools are modules (nn.ReLU, nn.MaxPool2d...); merges and
    reshapes are expressions with static arguments.  Center crops compute
    their offsets from the input's shape (`(x.shape[2] - h.shape[2]) // 2`,
    straight-line arithmetic that torch.fx, torch.export and ONNX record), so
    one compiled U-Net runs at every valid input size.
  * A network that is a chain of children named 0, 1, 2... is an
    nn.Sequential subclass whose forward is nn.Sequential's.
  * forward bodies are straight-line: one line per layer or child call, with
    its name, output shape `[B, ...]` and .res location as a comment; no
    data-dependent control flow, so torch.fx and torch.export trace them.
    Variables are reused once a value is dead.  An activation with an in-place
    variant (nn.ReLU / ReLU6 / SiLU / Hardswish(inplace=True)) or a two-input add
    (`out += identity`) that is the only reader of a fresh conv/linear/norm/add/
    scale output made in the same forward (possibly passed through dropout or
    drop path) works in place, as in torchvision.  (So, as with torchvision, a forward hook that keeps a
    conv/norm output sees it after such a ReLU, and under autocast an add of a
    half-precision branch and a float32 shortcut keeps the branch's dtype.)
  * The network class takes the network's parameters as keyword arguments,
    defaulting to the compiled values; the code is specialised to them, so
    another value raises ValueError (regenerate with `resdsl compile --set`).
    Its forward takes the network inputs in declaration order and returns the
    tensor for one output, a tuple in `output_names` order for several, or the
    list of `feature_info` maps when built with features (backends/features.py).

Initialisation (generated `reset_parameters`, run by the constructor).  The constructor builds the modules
under `torch.device("meta")` (allocating nothing), moves them to the default device with `to_empty`, and
reset_parameters then initialises every parameter and buffer once, module by module in program order: torch's
own `reset_parameters()` for modules whose `init` keeps torch's default (linear with init "default",
embeddings), then the `init` statement.  So each conv weight is drawn once (torchvision draws it twice:
nn.Conv2d's default uniform init, then kaiming_normal_), which makes construction faster than
torchvision's.  Networks with a tied weight or with a module that has no reset_parameters() (e.g.
nn.MultiheadAttention) keep torch's default init from the constructor instead, and reset_parameters
applies the `init` statements only.  Code generation is cached by content within the process
(`generated`).
    init of conv / linear   weight                                        bias
    "default"               conv: kaiming_normal_(fan_out, relu)          0
                            (torchvision's ResNet); linear: torch's default
    "he", "kaiming"         kaiming_normal_(fan_in, relu)                 0
    "xavier", "glorot"      xavier_normal_                                0
    "zeros" / "ones"        0 / 1                                         0
    "normal"                normal_(0, 0.01)                              0
    then the weight is multiplied by init_gain (Fixup-style rescaling).
    norms: gamma 1 (init "ones") or 0 (init "zeros", used by zero_init_last); beta 0.
    scalar_scale / scalar_bias: the op's `init` value.

Safety: nothing from a .res file is pasted into the code.  Layer names were
judged by resdsl/lowerable.py at check time ([A-Za-z0-9_] per component, no
nn.Module attribute, no keyword); they are attributes only when they are plain
identifiers (`self.conv1`) and otherwise string constants (`getattr(self,
'0')`).  Input and parameter names that are not safe identifiers are replaced
(`input_0`) or passed through **extra; class names are CamelCase letters only.
Numbers, booleans, strings and None are emitted with repr() of the plain
builtin type; comments only carry sanitised text (no newlines or quotes).
"""
from __future__ import annotations

import builtins
import hashlib
import itertools
import keyword
import linecache
import math
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from .. import ops
from ..ir import Node
from . import modules, tree

Shape = tuple[int, ...]

_COMPONENT = re.compile(r"[A-Za-z0-9_]+\Z")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Names the generated file binds at top level or uses inside methods: a parameter or input with one of
# these names would shadow them, so such names are passed another way (see _signature).
_RESERVED = (set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | set(modules.EXPORTS)
             | {"self", "torch", "nn", "F", "extra", "math"})
_SLOT = re.compile(r"h[0-9]*\Z")


def _internal(message: str) -> AssertionError:
    return AssertionError(f"internal error in the pytorch backend: {message}")


# ----------------------------------------------------------------- safe emission

def lit(v: object) -> str:
    """Python source for a plain value; only builtin literal types are accepted."""
    t = type(v)
    if v is None or t is bool:
        return repr(v)
    if t is int:
        return repr(v)
    if t is float:
        return repr(v) if math.isfinite(v) else f"float({repr(str(v))})"
    if t is str:
        return repr(v)
    if t is tuple or t is list:
        items = [lit(x) for x in v]
        if t is list:
            return "[" + ", ".join(items) + "]"
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(v, dict):  # dict, and the evaluator's read-only FrozenDict
        return "{" + ", ".join(f"{lit(k)}: {lit(x)}" for k, x in v.items()) + "}"
    raise _internal(f"cannot emit a value of type {t.__name__}")


_UNSAFE = re.compile(r"[^A-Za-z0-9_./:+@<>,()\[\]= -]")


def _comment(text: str) -> str:
    """Text that is safe inside a # comment: no newlines, quotes or control characters."""
    return _UNSAFE.sub("?", str(text))[:200]


def _shape(s: Shape) -> str:
    return "[" + ", ".join(["B"] + [str(int(d)) for d in s]) + "]"


def _where(n: Node) -> str:
    loc = f"{_comment(n.span.file)}:{int(n.span.line)}"
    if n.calls:
        loc += f" (in {_comment(n.calls[-1].block)})"
    return loc


# ----------------------------------------------------------------- lowering rules

@dataclass(frozen=True)
class Lowered:
    """How one node becomes code.

    call(module, inputs) -> the forward expression; `module` is the reference
    to the node's submodule (None for functional ops), `inputs` the variable names.
    ctor: the submodule's constructor expression (None: functional op).
    init: a reset_parameters statement template, `{m}` = the module reference.
    inplace: the in-place variant of ctor (nn.ReLU(inplace=True)), or None.
    """

    call: Callable[[str | None, list[str]], str]
    ctor: str | None = None
    init: str | None = None
    inplace: str | None = None  # the constructor to use where the code generator proves overwriting is safe
    param: bool = False  # ctor is a bare nn.Parameter of the enclosing module (reset through get_parameter)
    cls: str | None = None  # the module class ctor builds (`nn.Conv2d`, a helper's name)
    complete: bool = False  # init overwrites all of the module's parameters and buffers (ops.Module.complete)


_CTOR = re.compile(r"(nn\.[A-Z][A-Za-z0-9]*|[A-Z][A-Za-z0-9]*)\Z")


def _values(pairs) -> dict[str, str]:
    return {k: lit(v) for k, v in pairs}


def _interpret(low: ops.Lowering, op: str) -> Lowered:
    """Turn an op's declarative lowering (resdsl/ops/) into code templates; only literals are substituted."""
    if isinstance(low, ops.Expr):
        values = _values(low.values)

        def call(m: str | None, v: list[str]) -> str:
            each = {f"x{i}": name for i, name in enumerate(v)}
            return low.template.format(x=v[0], **{"x1": "", **each}, xs=low.sep.join(v), **values)
        return Lowered(call)
    if isinstance(low, ops.Module):
        if not _CTOR.match(low.cls) or (not low.cls.startswith("nn.") and low.cls not in modules.EXPORTS):
            raise _internal(f"op {op!r} lowers to an unknown module class {low.cls!r}")
        args = [lit(a) for a in low.args] + [f"{k}={lit(v)}" for k, v in low.kwargs]
        init = None
        if low.init is not None:
            init = low.init.format(m="{m}", **_values(low.init_args))

        def mcall(m: str | None, v: list[str]) -> str:
            return low.call.format(m=m, x=v[0], x1=v[1] if len(v) > 1 else "")
        inplace = None
        if low.inplace:
            inplace = f"{low.cls}({', '.join(args + [f'{k}={lit(v)}' for k, v in low.inplace])})"
        return Lowered(mcall, f"{low.cls}({', '.join(args)})", init, inplace, cls=low.cls, complete=low.complete)
    if isinstance(low, ops.Parameter):
        values = _values(low.values)

        def pcall(m: str | None, v: list[str]) -> str:
            return low.call.format(p=m, x=v[0], **values)
        shape = tuple(int(d) for d in low.shape)
        return Lowered(pcall, f"nn.Parameter(torch.empty({lit(shape)}))", low.init.format(p="{m}", **values),
                       param=True)
    raise _internal(f"op {op!r} has a lowering of type {type(low).__name__}")


def lower(n: Node, xs: list[Shape], smallest: tuple | None = None) -> Lowered:
    """How node `n` with input shapes `xs` becomes code: its op's `lower` facet, interpreted.  `smallest`: for
    an op that crops to its smallest input (facet `crops_to_smallest`), per spatial dim the input that is
    the smallest at every valid size or None (`smallest_inputs`); None: decided at the compiled shapes."""
    spec = ops.OPS.get(n.op)
    if spec is None or spec.lower is None:
        raise _internal(f"no lowering rule for op {n.op!r}")
    if smallest is not None:
        return _interpret(spec.lower(n.attrs, xs, n.shape, smallest), n.op)
    return _interpret(spec.lower(n.attrs, xs, n.shape), n.op)


def smallest_inputs(net) -> dict[int, tuple]:
    """For every node whose op crops its inputs to the smallest one (facet `crops_to_smallest`): per spatial
    dim the input that is the smallest at every valid input size, or None where that changes with the size
    (analysis/sizes.py).  A crop to a fixed input is straight-line slicing, which torch.export and ONNX trace
    as they do today; only a dim without one is cropped to a size computed at run time."""
    from ..analysis.sizes import smallest_inputs as decide

    out = {}
    for n in net.graph.nodes:
        rule = ops.OPS[n.op].crops_to_smallest
        if rule is not None and rule(n.attrs) and len(n.shape) > 1:
            out[n.id] = decide(net, n.id)
    return out


# the lowering facet of every op (input nodes have none: they are forward's arguments)
RULES = {name: op.lower for name, op in ops.OPS.items()}


# ----------------------------------------------------------------- code generation

@dataclass(frozen=True)
class Generated:
    source: str  # the whole standalone file
    forward: str  # the generated classes (what `model.code` shows)
    class_name: str  # the network's class
    parts: tuple[str, ...] = ()  # the block and scope classes it uses


def _pyattr(name: str) -> bool:
    """Whether `name` can be written as `obj.name` inside a class body (no keyword, no name mangling)."""
    return bool(_IDENT.match(name)) and not keyword.iskeyword(name) and not name.startswith("__")


def _attr(base: str, name: str) -> str:
    return f"{base}.{name}" if _pyattr(name) else f"getattr({base}, {lit(name)})"


def _set(base: str, name: str, expr: str) -> str:
    return f"{base}.{name} = {expr}" if _pyattr(name) else f"{base}.add_module({lit(name)}, {expr})"


def _path(ref: tuple[str, ...], base: str = "self") -> str:
    for part in ref:
        base = _attr(base, part)
    return base


def _fresh(base: str, used: set[str], sep: str = "_", first: int = 1) -> str:
    """`base`, or `base_1`, `base_2`... (`sep`, `first`): the first not in `used` (at most len(used) + 1 tries)."""
    if base not in used:
        return base
    k = first
    while f"{base}{sep}{k}" in used:
        k += 1
    return f"{base}{sep}{k}"


def _signature(params: dict[str, object]) -> tuple[str, str, bool]:
    """Constructor keywords: safe names become keyword arguments, the rest arrive in **extra."""
    safe = [k for k in params if _pyattr(k) and k not in _RESERVED and not _SLOT.match(k) and not k.startswith("_")]
    other = [k for k in params if k not in safe]
    sig = "".join(f", {k}={lit(params[k])}" for k in safe)
    given = "{" + ", ".join(f"{lit(k)}: {k}" for k in safe) + "}"
    if other:
        sig += ", **extra"
    # `self` is positional-only, so a network parameter called `self` arrives in **extra like the others.
    return ("self, /, *" if safe else "self, /") + sig, given, bool(other)


def _arg_names(graph) -> dict[int, str]:
    """forward's argument for each network input: its own name when that is a safe identifier, else input_K.

    Deterministic and loop-free: user names are taken first, replacements get the first free suffix."""
    names: dict[int, str] = {}
    used: set[str] = set()
    good = {nid: name for name, nid in graph.inputs.items()
            if _pyattr(name) and name not in _RESERVED and not _SLOT.match(name) and not name.startswith("_")}
    used.update(good.values())
    for k, (name, nid) in enumerate(graph.inputs.items()):
        if nid in names:
            continue
        arg = good.get(nid) or _fresh(f"input_{k}", used)
        used.add(arg)
        names[nid] = arg
    return names


# Ops whose backward does not read their own output and whose output is a fresh tensor (never a view or the
# input itself): an activation with an in-place variant or a two-input add that is the only reader of such a
# value may overwrite it (as torchvision's ReLU(inplace=True) and `out += identity` do), saving an allocation.
# Ops that pass their input through (dropout, drop path, identity: the input itself in eval, a fresh tensor in
# training) are overwritable exactly when their input is.  Autograd's version counters would raise, not
# silently miscompute, if a saved tensor were overwritten; tests/test_backend.py checks random graphs against
# their out-of-place text.
_PASS_THROUGH = frozenset(name for name, op in ops.OPS.items() if op.pass_through)
_CHUNK = 32  # operands per statement of an n-ary add: Python's compiler recurses once per `+`


def _camel(text: str) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", text) if p]
    return "".join(p[:1].upper() + p[1:] for p in parts)


def class_name(network: str) -> str:
    """A CamelCase class name for a network name (`wide_resnet` -> `WideResnet`)."""
    name = _camel(network) or "Network"
    if name[0].isdigit():
        name = "Net" + name
    if name in _RESERVED or name in ("Module",):
        name += "Net"
    if not _IDENT.match(name):
        raise _internal(f"cannot make a class name from {network!r}")
    return name


# In generated statements (our own text): a string literal (skipped), or a number literal not glued to a name.
_LITERAL = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|(?<![\w.])(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)""")
_NAME_END = re.compile(r"\w+\Z")  # searched with endpos: the word right before it
_NUMBERISH = set("0123456789.eE+-, ")


def _keyword(line: str, start: int) -> str | None:
    """The keyword a number at `start` is passed to (`stride=2`, `stride=(2, 2)`), or None if positional."""
    j = start - 1
    while j >= 0 and line[j] in " -":
        j -= 1
    if j >= 0 and line[j] == "(":
        j -= 1
    elif j < 0 or line[j] != "=":  # inside a tuple: step back to its opening parenthesis
        while j >= 0 and line[j] in _NUMBERISH:
            j -= 1
        if j < 0 or line[j] != "(":
            return None
        j -= 1
    if j < 0 or line[j] != "=":
        return None
    m = _NAME_END.search(line, max(0, j - 60), j)
    return m.group(0) if m else None


def _numbers(line: str) -> list[tuple[int, int, str, str | None]]:
    """The number literals of one generated statement: (start col, end col, text, keyword it is passed to)."""
    found = []
    for m in _LITERAL.finditer(line):
        if m.group(1) is None:
            continue
        found.append((m.start(1), m.end(1), m.group(1), _keyword(line, m.start(1))))
    return found


@dataclass
class _Class:
    name: str
    skeleton: tuple
    instances: list  # (unit, init lines, numbers per line)
    forward: list[tuple[str, str]]  # the first instance's (code, comment) lines
    args: list[tuple[str, list[tuple[int, int]]]] | None = None  # filled by _finish: (name, [(line, number)])


class _Gen:
    """Emits the classes of one network.  Reads the graph, the lowering of each node and the module tree."""

    def __init__(self, graph, returned: list[int], smallest: dict[int, tuple] | None = None):
        self.graph = graph
        self.nodes = graph.nodes
        smallest = smallest or {}
        self.low = {n.id: lower(n, [self.nodes[i].shape for i in n.inputs], smallest.get(n.id))
                    for n in self.nodes if n.op != "input"}
        self.readers = [0] * len(self.nodes)
        for n in self.nodes:
            for i in n.inputs:
                self.readers[i] += 1
        self.returned = set(returned)
        # the op's fresh_output facet at each node's input shapes
        self.fresh = [ops.OPS[n.op].fresh([self.nodes[i].shape for i in n.inputs]) for n in self.nodes]
        self.pieces = self._partitions()
        self.inplace: set[int] = set()  # activation nodes built with inplace=True
        self.classes: dict[tuple, _Class] = {}
        self.order: list[_Class] = []  # definition order (children first)
        self.calls: dict[int, str] = {}  # id(unit) -> its constructor expression
        self.taken: set[str] = set(_RESERVED) | set(modules.EXPORTS) | {"Module", "OrderedDict"}
        self.instance_class: list[_Class] = []  # placeholder index -> the class of that instance
        self.call_text: dict[int, str] = {}  # placeholder index -> constructor call (filled by finish)
        self.features = None

    # -- values
    def _partitions(self) -> dict[int, tuple[int, ...]]:
        """Views that cut one value into consecutive pieces along a dim (op facet `piece`), each mapped to all
        the pieces in order.  They are emitted as one torch.split, as timm's Res2Net writes it: its backward
        is one cat, where each slice's backward fills a zero tensor the size of the whole value and the
        pieces' gradients are then added up."""
        cuts: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        for n in self.nodes:
            spec = ops.OPS[n.op]
            if spec.piece is not None:
                d, start, stop = spec.piece(n.attrs, [self.nodes[i].shape for i in n.inputs])
                cuts.setdefault((n.inputs[0], d), []).append((start, stop, n.id))
        out: dict[int, tuple[int, ...]] = {}
        for (src, d), pieces in cuts.items():
            pieces.sort()
            whole = pieces[0][0] == 0 and pieces[-1][1] == self.nodes[src].shape[d]
            if len(pieces) > 1 and whole and all(p[1] == q[0] for p, q in zip(pieces, pieces[1:])):
                group = tuple(p[2] for p in pieces)
                out.update((i, group) for i in group)
        return out

    def _split(self, group: tuple[int, ...], source: str) -> str:
        n = self.nodes[group[0]]
        d, _, _ = ops.OPS[n.op].piece(n.attrs, [self.nodes[n.inputs[0]].shape])
        sizes = [self.nodes[i].shape[d] for i in group]
        return f"torch.split({source}, {lit(sizes[0] if len(set(sizes)) == 1 else sizes)}, {lit(d + 1)})"

    def ctor(self, nid: int) -> str | None:
        low = self.low[nid]
        return low.inplace if nid in self.inplace and low.inplace else low.ctor

    def sequential_root(self, unit) -> bool:
        """Whether the network itself is a chain of children named 0, 1, 2...: its class is then an nn.Sequential
        (as a person writes `nn.Sequential(*blocks)`), whose forward runs them in a loop without an attribute
        lookup per child (1,000 blocks: ~0.6 ms of 20)."""
        return (self.features is None and self._chain(unit, root=True)
                and [it.ref for it in unit.items] == [(str(k),) for k in range(len(unit.items))])

    def _chain(self, unit, root: bool = False) -> bool:
        """Whether the unit is a plain chain of modules, each reading the previous one's value: nn.Sequential."""
        if (unit.path == "" and not root) or unit.holders or (unit.scope is not None and unit.scope.kind == "block"):
            return False
        if len(unit.inputs) != 1 or len(unit.outputs) != 1 or not unit.items:
            return False
        prev = unit.inputs[0]
        for it in unit.items:
            if isinstance(it, tree.Leaf):
                n, low = self.nodes[it.node], self.low[it.node]
                if n.inputs != (prev,) or low.ctor is None or low.call("M", ["X"]) != "M(X)":
                    return False
                prev = it.node
            else:
                if it.unit.inputs != (prev,) or len(it.unit.outputs) != 1:
                    return False
                prev = it.unit.outputs[0]
        return prev == unit.outputs[0]

    # -- forward
    def forward(self, unit, args: list[str]) -> list[tuple[str, str]]:
        """forward's body as (code, comment) lines; slots h, h1... are reused once their value is dead."""
        nodes = self.nodes
        var: dict[int, str] = dict(zip(unit.inputs, args))
        is_arg = set(unit.inputs)
        reads = [self.nodes[it.node].inputs if isinstance(it, tree.Leaf) else it.unit.inputs for it in unit.items]
        last: dict[int, int] = {}
        for k, r in enumerate(reads):
            for i in r:
                last[i] = k
        keep = set(unit.outputs)
        local: set[int] = set()
        free: list[str] = []
        count = itertools.count()
        lines: list[tuple[str, str]] = []

        def slot(avoid=()) -> str:
            for s in free:
                if s not in avoid:
                    free.remove(s)
                    return s
            k = next(count)
            return "h" if k == 0 else f"h{k}"

        def fresh_local(i: int) -> bool:
            """Whether value i may be overwritten: made in this forward, read once, not returned, and fresh
            (or passed through from a value that may be overwritten)."""
            while i in local and self.readers[i] == 1 and i not in self.returned:
                if self.fresh[i]:
                    return True
                if nodes[i].op not in _PASS_THROUGH:
                    return False
                i = nodes[i].inputs[0]
            return False

        leaves = {it.node for it in unit.items if isinstance(it, tree.Leaf)}
        for k, it in enumerate(unit.items):
            vs = [var[i] for i in reads[k]]
            dead = [var[i] for i in dict.fromkeys(reads[k]) if last.get(i) == k and i not in keep and i not in is_arg]
            group = self.pieces.get(it.node) if isinstance(it, tree.Leaf) else None
            if group is not None and leaves.issuperset(group):
                if it.node not in var:  # the first piece: `h1, h2, h3, h4 = torch.split(h, 26, 1)` makes all
                    targets = [slot() for _ in group]
                    var.update(zip(group, targets))
                    local.update(group)
                    free.extend(t for i, t in zip(group, targets) if i not in last and i not in keep)
                    names = " ".join(_comment(nodes[i].name) for i in group)
                    lines.append((f"{', '.join(targets)} = {self._split(group, vs[0])}", f"{names}  "
                                  f"{_where(nodes[it.node])}"))
                free[:0] = [s for s in dead if s not in free]
                continue
            if isinstance(it, tree.Leaf):
                n, low = nodes[it.node], self.low[it.node]
                comment = f"{_comment(n.name)} {_shape(n.shape)}  {_where(n)}"
                produced = [n.id]
                if low.inplace and fresh_local(n.inputs[0]):
                    self.inplace.add(n.id)
                expr = low.call(_path(it.ref) if low.ctor else None, vs)
                if n.op == "add" and len(vs) > _CHUNK:  # (((a + b) + c) + ...) in statements of _CHUNK operands
                    target = slot(avoid=set(vs))
                    lines.append((f"{target} = {' + '.join(vs[:_CHUNK])}", comment))
                    for c in range(_CHUNK, len(vs), _CHUNK):
                        lines.append((f"{target} = {' + '.join([target] + vs[c:c + _CHUNK])}", ""))
                    free[:0] = [s for s in dead if s != target]
                    var[n.id] = target
                    local.add(n.id)
                    continue
                acc = self._accumulator(n, fresh_local)
                if acc is not None:  # torchvision's `out += identity`: the sum lands in the dead branch output
                    target, other = var[n.inputs[acc]], var[n.inputs[1 - acc]]
                    lines.append((f"{target} += {other}", comment))
                    free[:0] = [s for s in dead if s != target]
                    var[n.id] = target
                    local.add(n.id)
                    continue
            else:
                child = it.unit
                produced = list(child.outputs)
                expr = f"{_path(it.ref)}({', '.join(vs)})"
                comment = f"{_comment(child.path)} -> " + ", ".join(_shape(nodes[i].shape) for i in produced)
            free[:0] = [s for s in dead if s not in free]
            targets = [slot() for _ in produced]  # all distinct: unread ones are freed only after the statement
            var.update(zip(produced, targets))
            local.update(produced)
            free.extend(t for i, t in zip(produced, targets) if i not in last and i not in keep)  # nobody reads it
            lhs = ", ".join(targets)
            lines.append((f"{lhs} = {expr}" if targets else expr, comment))  # (a block whose output nobody reads: q14)
        outs = [var[i] for i in unit.outputs]
        if unit.path == "" and self.features is not None:
            lines.append(("return [" + ", ".join(outs) + "]", "the feature maps, in `feature_info` order"))
        elif len(outs) == 1:
            lines.append(("return " + outs[0], ""))
        else:
            lines.append(("return " + ", ".join(outs), ""))
        return lines

    def _accumulator(self, n, fresh_local) -> int | None:
        """The input slot a two-input add may accumulate into, or None."""
        if n.op != "add" or len(n.inputs) != 2 or n.inputs[0] == n.inputs[1]:
            return None
        for slot in (1, 0):  # the residual branch first: it is usually a fresh norm/conv output
            i = n.inputs[slot]
            if fresh_local(i) and self.nodes[i].shape == n.shape:
                return slot
        return None

    # -- __init__
    def init(self, unit) -> list[str]:
        """The statements that build the unit's children, in program order (which fixes the RNG order)."""
        lines: list[str] = []
        pending = list(unit.holders)  # parents first; each made just before the first layer inside it,
        for it in unit.items:         # so that state_dict keys come in program order (torchvision's too)
            while pending and any(it.ref[:len(h)] == h for h in pending):
                h = next(h for h in pending if it.ref[:len(h)] == h)
                pending.remove(h)
                lines.append(_set(_path(h[:-1]), h[-1], "nn.Module()"))
            base, name = _path(it.ref[:-1]), it.ref[-1]
            if isinstance(it, tree.Leaf):
                ctor = self.ctor(it.node)
                if ctor is not None:
                    lines.append(_set(base, name, ctor))
            else:
                lines += self.construct(it.unit, base, name)
        return lines

    def construct(self, unit, base: str, name: str) -> list[str]:
        expr = self.expr(unit)
        if expr is not None:
            return [_set(base, name, expr)]
        inner = _attr(base, name)
        lines = [_set(base, name, "nn.Sequential()")]
        for it in unit.items:
            if isinstance(it, tree.Leaf):
                lines.append(_set(inner, it.ref[-1], self.ctor(it.node)))
            else:
                lines += self.construct(it.unit, inner, it.ref[-1])
        return lines

    def expr(self, unit) -> str | None:
        """One expression that builds the unit, or None when it is a named nn.Sequential (built by statements)."""
        if id(unit) in self.calls:
            return self.calls[id(unit)]
        if self._chain(unit):
            self.forward(unit, ["x"])  # decides the in-place ReLUs of the chain
            names = [it.ref[-1] for it in unit.items]
            parts = [self.ctor(it.node) if isinstance(it, tree.Leaf) else self.expr(it.unit) for it in unit.items]
            if names == [str(k) for k in range(len(names))] and all(p is not None for p in parts):
                expr = f"nn.Sequential({', '.join(parts)})"
            else:
                expr = None
        else:
            expr = self.define(unit)
        self.calls[id(unit)] = expr
        return expr

    def define(self, unit) -> str:
        """Register the unit as an instance of its class (shared with structurally equal instances).

        Returns a placeholder for its constructor call: the call's arguments (the numbers that differ
        between instances) are known only once every instance is in, see `finish`."""
        args = ["x"] + [f"x{k}" for k in range(1, len(unit.inputs))]
        fwd = self.forward(unit, args)
        init = self.init(unit)
        s = unit.scope
        base = _camel(s.hint) if s is not None and s.kind == "block" else _camel(s.kind if s is not None else "module")
        key = (base, tuple(self._skeleton(line) for line in init), tuple(code for code, _ in fwd), len(unit.inputs))
        cls = self.classes.get(key)
        if cls is None:
            name = base if base and base[0].isalpha() else "Block" + base
            name = _fresh(name, self.taken, "", 2)
            self.taken.add(name)
            cls = self.classes[key] = _Class(name, key, [], fwd)
            self.order.append(cls)
        idx = len(self.instance_class)
        self.instance_class.append(cls)
        cls.instances.append((unit, init, idx))
        return f"__call{idx}__"

    def _skeleton(self, line: str) -> str:
        line = _CALL.sub(lambda m: "<" + self.instance_class[int(m[1])].name + ">", line)
        out, pos = [], 0
        for a, b, _, _ in _numbers(line):
            out += [line[pos:a], "#"]
            pos = b
        return "".join(out) + line[pos:]

    def resolve(self, line: str) -> str:
        return _CALL.sub(lambda m: self.call_text[int(m[1])], line)

    def finish(self) -> list[str]:
        """Every class's source, children first; fills `call_text` for each instance."""
        out = []
        for cls in self.order:
            resolved = [[self.resolve(line) for line in init] for _, init, _ in cls.instances]
            numbers = [[_numbers(line) for line in lines] for lines in resolved]
            positions = [(li, k) for li, ns in enumerate(numbers[0]) for k in range(len(ns))]
            groups: dict[tuple[str, ...], list[tuple[int, int]]] = {}
            for li, k in positions:
                values = tuple(ns[li][k][2] for ns in numbers)
                if len(set(values)) > 1:
                    groups.setdefault(values, []).append((li, k))
            names: dict[tuple[int, int], str] = {}
            params: list[tuple[str, tuple[str, ...]]] = []
            used = {"self"}
            for values, where in groups.items():
                name = self._arg_name(cls, numbers[0][where[0][0]][where[0][1]][3], values, used)
                used.add(name)
                params.append((name, values))
                for w in where:
                    names[w] = name
            for j, (_, _, idx) in enumerate(cls.instances):
                self.call_text[idx] = f"{cls.name}(" + ", ".join(f"{p}={v[j]}" for p, v in params) + ")"
            out.append(self._class_source(cls, resolved[0], numbers[0], names, [p for p, _ in params]))
        return out

    def _arg_name(self, cls, kw: str | None, values: tuple[str, ...], used: set[str]) -> str:
        units = [u for u, _, _ in cls.instances]
        if kw is not None and _pyattr(kw):
            base = kw
        elif units[0].inputs and all(v == str(self.nodes[u.inputs[0]].shape[0]) for u, v in zip(units, values)):
            base = "in_channels"
        elif all(v == str(self.nodes[u.outputs[0]].shape[0]) for u, v in zip(units, values)):
            base = "out_channels"
        else:
            base = "value" if any(c in values[0] for c in ".e") else "channels"
        if base in _RESERVED or base in self.taken:
            base += "_"
        return _fresh(base, used, "", 2)

    def _class_source(self, cls, lines, numbers, names, params) -> str:
        unit = cls.instances[0][0]
        body = []
        for li, (line, ns) in enumerate(zip(lines, numbers)):
            pos, text = 0, []
            for k, (a, b, num, _) in enumerate(ns):
                text += [line[pos:a], names.get((li, k), num)]
                pos = b
            body.append("".join(text) + line[pos:])
        s = unit.scope
        what = f"block `{_comment(s.hint)}`" if s is not None and s.kind == "block" else \
            f"{_comment(s.kind) if s is not None else 'scope'}"
        where = f", {_comment(s.span.file)}:{int(s.span.line)}" if s is not None else ""
        used_by = [u.path for u, _, _ in cls.instances]
        shown = ", ".join(used_by[:4]) + (f" and {len(used_by) - 4} more" if len(used_by) > 4 else "")
        I = "    "
        args = ["x"] + [f"x{k}" for k in range(1, len(unit.inputs))]
        src = [f"class {cls.name}(nn.Module):",
               f'{I}"""The {what}{where}: {_comment(shown)}.',
               f'{I}Shapes in comments are those of {_comment(used_by[0])}."""',
               "",
               f"{I}def __init__(self{''.join(', ' + p for p in params)}):",
               f"{I}{I}super().__init__()"]
        src += [I * 2 + line for line in body]
        src += ["", f"{I}def forward(self, {', '.join(args)}):"]
        src += [I * 2 + _line(code, comment) for code, comment in cls.forward]
        return "\n".join(src) + "\n"


_CALL = re.compile(r"__call(\d+)__")


def _line(code: str, comment: str) -> str:
    return f"{code}  # {comment}" if comment else code


def _components(name: str) -> list[str]:
    parts = name.split(".")
    for p in parts:
        if not _COMPONENT.match(p):
            raise _internal(f"invalid layer name {name!r}")
    return parts


def generate_parts(net, features=None, smallest: dict[int, tuple] | None = None) -> Generated:
    """The standalone file.  `features` (from backends/features.py): return these values instead of the outputs.
    `smallest`: `smallest_inputs(net)`, computed here when not given."""
    graph = net.graph
    if smallest is None:
        smallest = smallest_inputs(net)
    for n in graph.nodes:  # lowerable.check guarantees these; generated code relies on them
        _components(n.name)
        if n.label is not None:
            _components(n.label)
    if features is None:
        returned = list(graph.outputs.values())
        out_names = tuple(graph.outputs)
    else:
        returned = [f.node for f in features]
        out_names = tuple(f.module for f in features)
    if not returned:
        raise _internal("network without outputs")
    unit = tree.module_tree(graph, returned)
    gen = _Gen(graph, returned, smallest)
    gen.features = features
    cls = class_name(graph.name)
    gen.taken.add(cls)
    params = dict(graph.params)
    sig, given, has_extra = _signature(params)
    args = _arg_names(graph)
    fwd = gen.forward(unit, [args[i] for i in unit.inputs])
    init = gen.init(unit)
    classes = gen.finish()
    init = [gen.resolve(line) for line in init]
    reset = _reset_lines(graph, gen.low)
    # weight tying (`tie="LAYER"`, checked by the elaborator): after every module exists
    ties = [f"tie_weight(self, {lit(n.name)}, {lit(n.attrs['tie'])})" for n in graph.nodes if n.attrs.get("tie")]
    in_names = tuple(graph.inputs)
    I = "    "
    net_src: list[str] = []
    for c in classes:
        net_src += [c, ""]
    sequential = gen.sequential_root(unit)
    net_src += [
        f"class {cls}({'nn.Sequential' if sequential else 'nn.Module'}):",
        f'{I}"""Network {_comment(graph.name)} compiled by resdsl from {_comment(net.source)}.',
        "",
        f"{I}forward takes the inputs in `input_names` order (batch first) and returns " +
        ("the feature maps of `feature_info`, as a list." if features is not None else
         "one tensor,\n" + f"{I}or a tuple in `output_names` order when the network has several outputs."),
        f'{I}"""',
        "",
        f"{I}input_names = {lit(in_names)}",
        f"{I}output_names = {lit(out_names)}",
        f"{I}input_shapes = {lit({k: tuple(graph.nodes[i].shape) for k, i in graph.inputs.items()})}",
        f"{I}output_shapes = {lit({k: tuple(graph.nodes[i].shape) for k, i in zip(out_names, returned)})}",
        f"{I}compiled_params = {lit(params)}",
    ]
    if features is not None:
        info = [{"module": f.module, "num_chs": f.num_chs, "reduction": f.reduction, "index": f.index}
                for f in features]
        net_src.append(f"{I}feature_info = {lit(info)}")
    net_src += [
        "",
        f"{I}def __init__({sig}):",
        f"{I}{I}super().__init__()",
        f"{I}{I}check_params({lit(cls)}, type(self).compiled_params, {given}{', extra' if has_extra else ''})",
    ]
    if reset.complete and init:
        net_src.append(f"{I}{I}with torch.device('meta'):  # allocated, not initialised: reset_parameters() below "
                       "draws every weight once")
        net_src += [I * 3 + line for line in init]
        net_src.append(f"{I}{I}self.to_empty(device=torch.get_default_device())")
    else:
        net_src += [I * 2 + line for line in init]
    net_src += [I * 2 + line for line in ties]
    net_src += [f"{I}{I}self.reset_parameters()", "",
                f"{I}def reset_parameters(self):",
                f'{I}{I}"""Initialise the layers as their `init` arguments say (resdsl/backends/pytorch.py)'
                + (', torch\'s default init first where `init` does not set every parameter."""' if reset.complete and init
                   else '."""')]
    net_src += [I * 2 + line for line in reset.lines] or [f"{I}{I}pass"]
    net_src += ["", f"{I}def forward(self, {', '.join(args[i] for i in unit.inputs)}):"]
    for nid in unit.inputs:
        n = graph.nodes[nid]
        net_src.append(f"{I}{I}# {args[nid]}: {_shape(n.shape)}  {_where(n)}")
    if sequential:
        (arg,) = [args[i] for i in unit.inputs]
        shape = _shape(graph.nodes[unit.outputs[0]].shape)
        net_src.append(f"{I}{I}return super().forward({arg})  # nn.Sequential: children 0 .. {len(unit.items) - 1} "
                       f"in order -> {shape}")
    else:
        net_src += [I * 2 + _line(code, comment) for code, comment in fwd]
    code = "\n".join(net_src) + "\n"
    head = [
        f"# Generated by resdsl from {_comment(net.source)} (network {_comment(graph.name)}); needs only torch.",
        "# Do not edit: regenerate with `resdsl compile FILE --set NAME=VALUE -o FILE.py`.",
        "# ---- resdsl helper modules (those of resdsl/backends/modules.py that this network uses) ----",
        modules.source_for(code),
        "",
        "",
        _NETWORK_MARK.strip("\n"),
    ]
    return Generated("\n".join(head) + "\n" + code, code, cls, tuple(c.name for c in gen.order))


@dataclass(frozen=True)
class _Reset:
    lines: list[str]  # the body of the generated reset_parameters
    complete: bool  # it initialises every parameter and buffer: the constructor may build on the meta device


def _reset_lines(graph, low: dict[int, Lowered]) -> _Reset:
    """reset_parameters' statements, in program order (which fixes the order of the random draws).

    When every module's initialisation is known -- `init` sets all its parameters (conv), or torch's
    `reset_parameters()` restores its default and `init` follows (norms, linear with init "default"), or it
    has no parameters or buffers -- reset_parameters initialises the whole network, so the constructor
    allocates the modules on the meta device and every weight is drawn once (torchvision draws each conv
    weight twice: the default uniform init in nn.Conv2d, then kaiming_normal_).  Otherwise (weight tying,
    modules without reset_parameters such as nn.MultiheadAttention) the modules keep their default init from
    the constructor and reset_parameters applies the `init` statements only."""
    complete = not any(n.attrs.get("tie") for n in graph.nodes)
    full: list[str] = []
    partial: list[str] = []
    for n in graph.nodes:
        lw = low.get(n.id)
        if lw is None or not lw.ctor:
            continue
        m = f"self.{'get_parameter' if lw.param else 'get_submodule'}({lit(n.name)})"
        own = [lw.init.format(m=m)] if lw.init and not n.attrs.get("tie") else []  # tied: its owner's init
        partial += own
        if lw.param or lw.complete:
            full += own
        elif _has_reset(lw.cls):
            full += [f"{m}.reset_parameters()"] + own
        elif n.params or n.buffers:
            complete = False
        else:
            full += own
    return _Reset(full, True) if complete else _Reset(partial, False)


def _has_reset(cls: str | None) -> bool:
    """Whether the module class (`nn.BatchNorm2d`, a helper of backends/modules.py) has reset_parameters()."""
    import torch

    if cls is None:
        return False
    obj = getattr(torch.nn, cls[3:], None) if cls.startswith("nn.") else getattr(modules, cls, None)
    return callable(getattr(obj, "reset_parameters", None))


def generate(net, features=None) -> str:
    """Standalone Python source (imports only torch) defining the network's nn.Module."""
    return generate_parts(net, features).source


_NETWORK_MARK = "# ---- the network ----\n"
_builds = itertools.count()
# Classes built in this process, by build id and by source text: deepcopy and unpickling find them here.
_LIVE: "weakref.WeakValueDictionary[str, type]" = weakref.WeakValueDictionary()


_CACHED = 32  # generated files (and their code objects) kept per process, least recently used dropped first
_GENERATED: "OrderedDict[bytes, Generated]" = OrderedDict()
_CODE: "OrderedDict[str, object]" = OrderedDict()
_SMALLEST: "OrderedDict[bytes, dict]" = OrderedDict()  # smallest_inputs per graph and named sizes


_CACHE_LOCK = threading.Lock()  # builds in several threads: lookup, insertion and eviction stay consistent


def _remember(cache: OrderedDict, key, make: Callable[[], object]):
    """cache[key], made by `make()` on a miss; keeps the _CACHED most recently used entries."""
    with _CACHE_LOCK:
        value = cache.get(key)
        if value is not None:
            cache.move_to_end(key)
            return value
    value = make()  # outside the lock: two threads may both make it, and either result is the same
    with _CACHE_LOCK:
        cache[key] = value
        while len(cache) > _CACHED:
            cache.popitem(last=False)
    return value


def generated(net, features=None) -> Generated:
    """generate_parts(net, features), computed once per distinct content within the process.

    The key is a hash of everything code generation reads: the source file name, the graph's name,
    parameters, inputs and outputs, every node (op, attributes, inputs, shape, names, spans) and scope,
    and the features.  Reprs of frozen IR values are exact (floats round-trip, 1 and 1.0 differ), and
    anything with an address in its repr merely misses.  Building ResNet-50 a second time skips ~8 ms
    of code generation."""
    g = net.graph
    text = repr((net.source, g.name, g.params, g.inputs, g.outputs, g.nodes, g.scopes, features))
    # which input a crop takes comes from the size analysis: the graph and the sizes it varies over fix it
    sizes = hashlib.blake2b((text + repr((net.symbols, net.size_vars))).encode("utf-8", "surrogatepass"),
                            digest_size=32).digest()
    smallest = _remember(_SMALLEST, sizes, lambda: smallest_inputs(net))
    key = hashlib.blake2b((text + repr(smallest)).encode("utf-8", "surrogatepass"), digest_size=32).digest()
    return _remember(_GENERATED, key, lambda: generate_parts(net, features, smallest))


def _compiled(body: str, class_name: str):
    """The code object of a generated file's network part, compiled once per distinct text."""
    def make():
        filename = f"<resdsl {class_name} {hashlib.blake2b(body.encode(), digest_size=6).hexdigest()}>"
        linecache.cache[filename] = (len(body), None, body.splitlines(True), filename)  # tracebacks
        return compile(body, filename, "exec")
    return _remember(_CODE, body, make)


def _define(source: str, class_name: str, forward: str, net, parts: tuple[str, ...] = ()) -> type:
    """Execute generated source; returns its network class (`parts`: the other generated classes).

    Every call makes new classes (each build's class carries its own `resdsl_network`); the compiled
    code object is shared by builds of the same text."""
    import torch

    build_id = f"<resdsl {class_name} #{next(_builds)}>"
    # The file's head is resdsl.backends.modules.SOURCE: bind its names to that module's (identical,
    # importable) classes instead of executing it again, so built networks pickle and builds stay cheap.
    body = source.split(_NETWORK_MARK, 1)[-1]
    namespace: dict[str, object] = {"__name__": f"resdsl_generated.{class_name}", "torch": torch,
                                    "nn": torch.nn, "F": torch.nn.functional}
    namespace.update({k: getattr(modules, k) for k in modules.EXPORTS})
    exec(_compiled(body, class_name), namespace)  # our own generated text; see the module docstring
    cls = namespace[class_name]
    # Class attributes (each build has its own class): shared by deepcopy'd twins, not part of state_dict.
    cls.code = forward
    cls.resdsl_network = net  # None in a process that only unpickled the module
    cls.resdsl_source = source
    cls._resdsl_build = build_id
    cls._resdsl_parts = parts
    for part in (class_name,) + parts:  # pickled by source, not by a module path that does not exist
        namespace[part].__reduce_ex__ = _reduce_ex
        namespace[part]._resdsl_network_class = cls
    _LIVE[build_id] = _LIVE[source] = cls
    return cls


def _reduce_ex(self, protocol):
    """Pickle (torch.save(model), deepcopy) as: the generated source + the module's state."""
    net = type(self)._resdsl_network_class
    return (_restore, (net.resdsl_source, net.__name__, net.code, net._resdsl_build, type(self).__name__,
                       net._resdsl_parts), self.__dict__.copy())


def _restore(source: str, class_name: str, forward: str, build_id: str = "", part: str | None = None,
             parts: tuple[str, ...] = ()):
    # The very class (deepcopy, or unpickling in the process that built it), else one of the same source.
    cls = _LIVE.get(build_id) or _LIVE.get(source) or _define(source, class_name, forward, None, tuple(parts))
    if part is not None and part != class_name:
        cls = _namespace_class(cls, part)
    return cls.__new__(cls)  # pickle then restores the state with nn.Module.__setstate__


def _namespace_class(network_cls: type, name: str) -> type:
    """One of the block classes defined next to `network_cls` (they share the generated module's globals)."""
    return network_cls.__init__.__globals__[name]


def build(net, seed: int | None = None, features=None):
    """Execute the generated source and instantiate the module.

    `seed` makes initialisation deterministic without touching the global RNG.  `features` (a list from
    `backends.features.select`) makes forward return those feature maps.  The module gets `.code` (the
    generated classes) and `.resdsl_network`; it can be deep-copied and pickled (`torch.save(model)`).
    """
    import torch

    from ..limits import Limits, check_params

    check_params(net.graph, getattr(net, "limits", None) or Limits())  # refuse before allocating any weight
    gen = generated(net, features)
    cls = _define(gen.source, gen.class_name, gen.forward, net, gen.parts)
    if seed is None:
        model = cls()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls()
    return model

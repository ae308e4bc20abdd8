"""PyTorch backend: lower the IR to a standalone Python file, and build modules from it.

Reads a `Network` (its graph's nodes in program order: op, attrs, input ids,
shapes, qualified names, spans).  Writes Python source text (`generate`) that
imports only torch and defines ONE `nn.Module` subclass; `build` executes
that same text and instantiates the class.

The generated class
  * takes the network's parameters as keyword arguments, defaulting to the
    compiled values; the code is specialised to them, so another value
    raises ValueError (regenerate with `resdsl compile --set NAME=VALUE`);
  * registers submodules at the IR's qualified names, nesting `Container`s per
    name component, so state_dict keys are the layer names
    (`layer1.0.conv1.weight`, as torchvision spells them);
  * has a straight-line `forward`: one line per IR node in graph order, with
    the node's name, output shape `[B, ...]` and .res location as a comment.
    Parameter-free ops are functional calls; variables are reused as soon as
    a value is dead, so activations are freed while forward runs.  A ReLU or
    two-input add that is the only reader of a fresh conv/linear/norm/add
    output works in place (as torchvision's ReLU(inplace=True) and
    `out += identity`); results are bitwise those of the out-of-place code.
    (So, as with torchvision, a forward hook that keeps a conv/norm output
    sees it after such a ReLU; resdsl's own analyses tap values through
    separate gate modules, which are never overwritten.)
    forward's arguments are the network inputs in declaration order; it
    returns the tensor for one output and a tuple in `output_names` order for
    several.

Initialisation (generated `reset_parameters`, run by the constructor):
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

Safety: nothing from a .res file is pasted into the code.  Names are checked
against [A-Za-z0-9_] per component and emitted with repr(); numbers,
booleans, strings and None are emitted with repr() of the plain builtin type;
comments only carry sanitised text (no newlines or quotes).
"""
from __future__ import annotations

import builtins
import itertools
import keyword
import linecache
import math
import re
import weakref
from dataclasses import dataclass
from typing import Callable

from .. import ops
from ..ir import Node
from . import modules

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
    if t is dict:
        return "{" + ", ".join(f"{lit(k)}: {lit(x)}" for k, x in v.items()) + "}"
    raise _internal(f"cannot emit a value of type {t.__name__}")


def _components(name: str) -> list[str]:
    parts = name.split(".")
    for p in parts:
        if not _COMPONENT.match(p):
            raise _internal(f"invalid layer name {name!r}")
    return parts


def _comment(text: str) -> str:
    """Text that is safe inside a # comment: no newlines, quotes or control characters."""
    return re.sub(r"[^A-Za-z0-9_./:+@<> -]", "?", str(text))[:200]


def _module_ref(name: str) -> str:
    # `_modules[...]` lookups: ~10x cheaper than nn.Module.__getattr__, and valid for names like "0".
    return "self" + "".join(f"._modules[{lit(c)}]" for c in _components(name))


def class_name(network: str) -> str:
    """A CamelCase class name for a network name (`wide_resnet` -> `WideResnet`)."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", network) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Network"
    if name[0].isdigit():
        name = "Net" + name
    if name in _RESERVED or name in ("Module",):
        name += "Net"
    if not _IDENT.match(name):
        raise _internal(f"cannot make a class name from {network!r}")
    return name


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
    """

    call: Callable[[str | None, list[str]], str]
    ctor: str | None = None
    init: str | None = None


_CTOR = re.compile(r"(nn\.[A-Z][A-Za-z0-9]*|[A-Z][A-Za-z0-9]*)\Z")


def _values(pairs) -> dict[str, str]:
    return {k: lit(v) for k, v in pairs}


def _interpret(low: ops.Module | ops.Expr, op: str) -> Lowered:
    """Turn an op's declarative lowering (resdsl/ops/) into code templates; only literals are substituted."""
    if isinstance(low, ops.Expr):
        values = _values(low.values)

        def call(m: str | None, v: list[str]) -> str:
            return low.template.format(x=v[0], x1=v[1] if len(v) > 1 else "", xs=low.sep.join(v), **values)
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
        return Lowered(mcall, f"{low.cls}({', '.join(args)})", init)
    raise _internal(f"op {op!r} has a lowering of type {type(low).__name__}")


def lower(n: Node, xs: list[Shape]) -> Lowered:
    """How node `n` with input shapes `xs` becomes code: its op's `lower` facet, interpreted."""
    spec = ops.OPS.get(n.op)
    if spec is None or spec.lower is None:
        raise _internal(f"no lowering rule for op {n.op!r}")
    return _interpret(spec.lower(n.attrs, xs, n.shape), n.op)


# the lowering facet of every op (input nodes have none: they are forward's arguments)
RULES = {name: op.lower for name, op in ops.OPS.items()}


# ----------------------------------------------------------------- code generation

@dataclass(frozen=True)
class Generated:
    source: str  # the whole standalone file
    forward: str  # just the forward method
    class_name: str


def _signature(params: dict[str, object]) -> tuple[str, str, bool]:
    """Constructor keywords: safe names become keyword arguments, the rest arrive in **extra."""
    safe = [k for k in params if _IDENT.match(k) and k not in _RESERVED and not _SLOT.match(k)]
    other = [k for k in params if k not in safe]
    for k in other:
        if not _COMPONENT.match(k):
            raise _internal(f"invalid parameter name {k!r}")
    sig = "".join(f", {k}={lit(params[k])}" for k in safe)
    given = "{" + ", ".join(f"{lit(k)}: {k}" for k in safe) + "}"
    if other:
        sig += ", **extra"
    return ("self, *" if safe else "self") + sig, given, bool(other)


def _arg_names(graph) -> dict[int, str]:
    names: dict[int, str] = {}
    used: set[str] = set()
    for k, (name, nid) in enumerate(graph.inputs.items()):
        arg = name if _IDENT.match(name) and name not in _RESERVED and not _SLOT.match(name) else f"input_{k}"
        while arg in used:
            arg = f"input_{k}_"
        used.add(arg)
        names[nid] = arg
    return names


# Ops whose backward does not read their own output and whose output is a fresh tensor (never a view or the
# input itself): a ReLU or a two-input add that is the only reader of such a value may overwrite it (as
# torchvision's ReLU(inplace=True) and `out += identity` do), saving an allocation per activation.
# Autograd's version counters would raise, not silently miscompute, if this reasoning were ever wrong.
_INPLACE_OK = frozenset(name for name, op in ops.OPS.items() if op.fresh_output)


def _relu_in_place(n: Node, nodes, readers: dict[int, int], outputs: set[int]) -> bool:
    (i,) = n.inputs
    return n.op == "relu" and nodes[i].op in _INPLACE_OK and readers[i] == 1 and i not in outputs


def _add_in_place(n: Node, nodes, readers: dict[int, int], outputs: set[int]) -> int | None:
    """The input slot a two-input add may accumulate into, or None."""
    if n.op != "add" or len(n.inputs) != 2 or n.inputs[0] == n.inputs[1]:
        return None
    for slot in (1, 0):  # the residual branch first: it is usually a fresh norm/conv output
        i = n.inputs[slot]
        if nodes[i].op in _INPLACE_OK and readers[i] == 1 and i not in outputs:
            return slot
    return None


def _forward(graph, args: dict[int, str]) -> list[str]:
    """forward's body: one statement per node; slots h, h1, h2... are reused once their value is dead."""
    nodes = graph.nodes
    outputs = set(graph.outputs.values())
    last_use: dict[int, int] = {}
    readers: dict[int, int] = {}
    for n in nodes:
        for i in n.inputs:
            last_use[i] = n.id
            readers[i] = readers.get(i, 0) + 1
    var: dict[int, str] = dict(args)
    free: list[str] = []
    count = itertools.count()
    lines: list[str] = []
    for nid, arg in args.items():
        n = nodes[nid]
        lines.append(f"# {arg}: {_shape(n.shape)}  {_where(n)}")
    for n in nodes:
        if n.op == "input":
            continue
        low = lower(n, [nodes[i].shape for i in n.inputs])
        expr = low.call(_module_ref(n.name) if low.ctor else None, [var[i] for i in n.inputs])
        if n.op == "relu" and _relu_in_place(n, nodes, readers, outputs):
            expr = f"torch.relu_({var[n.inputs[0]]})"
        slot = _add_in_place(n, nodes, readers, outputs)
        if slot is not None:  # a + b == b + a exactly; mixed dtypes (autocast) keep the out-of-place add
            a, b = var[n.inputs[slot]], var[n.inputs[1 - slot]]
            expr = f"{a}.add_({b}) if {a}.dtype == {b}.dtype else {expr}"
        # Values whose last reader is this node give their variable back (never the arguments or outputs).
        dead = [var[i] for i in dict.fromkeys(n.inputs)
                if last_use.get(i) == n.id and i not in outputs and i not in args]
        free = dead + [s for s in free if s not in dead]
        if free:
            target = free.pop(0)
        else:
            k = next(count)
            target = "h" if k == 0 else f"h{k}"
        var[n.id] = target
        if n.id not in last_use and n.id not in outputs:
            free.append(target)  # nobody reads it
        lines.append(f"{target} = {expr}  # {_comment(n.name)} {_shape(n.shape)}  {_where(n)}")
    outs = [var[i] for i in graph.outputs.values()]
    if not outs:
        raise _internal("network without outputs")
    lines.append("return " + (outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ",)"))
    return lines


def generate_parts(net) -> Generated:
    graph = net.graph
    if not _COMPONENT.match(graph.name):
        raise _internal(f"invalid network name {graph.name!r}")
    cls = class_name(graph.name)
    params = dict(graph.params)
    sig, given, has_extra = _signature(params)
    args = _arg_names(graph)
    in_names = tuple(graph.inputs)
    out_names = tuple(graph.outputs)
    for name in in_names + out_names:
        _components(name)
    for n in graph.nodes:  # every name and label, even those that only reach comments
        _components(n.name)
        if n.label is not None:
            _components(n.label)

    init: list[str] = []
    reset: list[str] = []
    for n in graph.nodes:
        if n.op == "input":
            continue
        low = lower(n, [graph.nodes[i].shape for i in n.inputs])
        if low.ctor is None:
            continue
        init.append(f"add_module_at(self, {lit(n.name)}, {low.ctor})  # {_where(n)}")
        if low.init and not n.attrs.get("tie"):  # a tied weight is initialised by its owner
            reset.append(low.init.format(m=_module_ref(n.name)))
    # weight tying (`tie="LAYER"`, checked by the elaborator): after every module exists
    init += [f"tie_weight(self, {lit(n.name)}, {lit(n.attrs['tie'])})" for n in graph.nodes if n.attrs.get("tie")]

    fwd_body = _forward(graph, args)
    fwd = ["def forward(self, " + ", ".join(args[graph.inputs[k]] for k in in_names) + "):"]
    fwd += ["    " + line for line in fwd_body]
    forward_src = "\n".join(fwd) + "\n"

    I = "    "
    out: list[str] = [
        f"# Generated by resdsl from {_comment(net.source)} (network {_comment(graph.name)}); needs only torch.",
        "# Do not edit: regenerate with `resdsl compile FILE --set NAME=VALUE -o FILE.py`.",
        "# ---- resdsl helper modules (resdsl/backends/modules.py) ----",
        modules.SOURCE.strip("\n"),
        "",
        "",
        "# ---- the network ----",
        f"class {cls}(nn.Module):",
        f'{I}"""Network {_comment(graph.name)} compiled by resdsl.',
        "",
        f"{I}forward takes the inputs in `input_names` order (batch first) and returns one tensor,",
        f"{I}or a tuple in `output_names` order when the network has several outputs.",
        f'{I}"""',
        "",
        f"{I}input_names = {lit(in_names)}",
        f"{I}output_names = {lit(out_names)}",
        f"{I}input_shapes = {lit({k: tuple(graph.nodes[i].shape) for k, i in graph.inputs.items()})}",
        f"{I}output_shapes = {lit({k: tuple(graph.nodes[i].shape) for k, i in graph.outputs.items()})}",
        f"{I}compiled_params = {lit(params)}",
        "",
        f"{I}def __init__({sig}):",
        f"{I}{I}super().__init__()",
        f"{I}{I}check_params({lit(cls)}, type(self).compiled_params, {given}{', extra' if has_extra else ''})",
    ]
    out += [I * 2 + line for line in init]
    out += [f"{I}{I}self.reset_parameters()", "",
            f"{I}def reset_parameters(self):",
            f'{I}{I}"""Initialise the layers as their `init` arguments say (resdsl/backends/pytorch.py)."""']
    out += [I * 2 + line for line in reset] or [f"{I}{I}pass"]
    out.append("")
    out += [I + line for line in fwd]
    source = "\n".join(out) + "\n"
    return Generated(source, forward_src, cls)


def generate(net) -> str:
    """Standalone Python source (imports only torch) defining the network's nn.Module."""
    return generate_parts(net).source


_builds = itertools.count()
# Classes built in this process, by build id and by source text: deepcopy and unpickling find them here.
_LIVE: "weakref.WeakValueDictionary[str, type]" = weakref.WeakValueDictionary()


def _define(source: str, class_name: str, forward: str, net) -> type:
    """Execute generated source; returns its network class."""
    filename = f"<resdsl {class_name} #{next(_builds)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks
    namespace: dict[str, object] = {"__name__": f"resdsl_generated.{class_name}"}
    exec(compile(source, filename, "exec"), namespace)  # our own generated text; see the module docstring
    # The helper definitions just executed are resdsl.backends.modules.SOURCE; bind their names to that
    # module's (identical, importable) classes so that built networks can be pickled.
    namespace.update({k: getattr(modules, k) for k in modules.EXPORTS})
    cls = namespace[class_name]
    # Class attributes (each build has its own class): shared by deepcopy'd twins, not part of state_dict.
    cls.code = forward
    cls.resdsl_network = net  # None in a process that only unpickled the module
    cls.resdsl_source = source
    cls.__reduce_ex__ = _reduce_ex
    cls._resdsl_build = filename
    _LIVE[filename] = _LIVE[source] = cls
    return cls


def _reduce_ex(self, protocol):
    """Pickle (torch.save(model), deepcopy) as: the generated source + the module's state."""
    cls = type(self)
    return _restore, (cls.resdsl_source, cls.__name__, cls.code, cls._resdsl_build), self.__dict__.copy()


def _restore(source: str, class_name: str, forward: str, build_id: str = ""):
    # The very class (deepcopy, or unpickling in the process that built it), else one of the same source.
    cls = _LIVE.get(build_id) or _LIVE.get(source) or _define(source, class_name, forward, None)
    return cls.__new__(cls)  # pickle then restores the state with nn.Module.__setstate__


def build(net, seed: int | None = None):
    """Execute the generated source and instantiate the module.

    `seed` makes initialisation deterministic without touching the global RNG.
    The module gets `.code` (forward's source) and `.resdsl_network`; it can
    be deep-copied and pickled (`torch.save(model)`; loading needs resdsl).
    """
    import torch

    from ..limits import Limits, check_params

    check_params(net.graph, getattr(net, "limits", None) or Limits())  # refuse before allocating any weight
    gen = generate_parts(net)
    cls = _define(gen.source, gen.class_name, gen.forward, net)
    if seed is None:
        model = cls()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls()
    return model

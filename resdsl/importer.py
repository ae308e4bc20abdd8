"""PyTorch -> .res: trace an `nn.Module` and write it as a readable, formatted .res file.

Reads a torch module and an input shape; writes .res text (`import_module`).
Four steps, one way:

1. trace: `torch.fx` with every module that maps to a resdsl op kept as a leaf
   (`MODULE_RULES`), shapes recorded by running the traced graph once;
2. convert: each fx node becomes an `Op` (resdsl op name, arguments that differ
   from the op table's defaults, module path, tensor inputs); anything without a
   rule raises `ImportProblem` naming the module and its class;
3. structure: with immediate dominators, `a + f(a)` becomes `residual { f }`
   (identity, torchvision's `downsample.0/.1` projection, or a custom shortcut),
   `cat([..., f(..)])` growing by one becomes `dense { f }`, other concatenations
   `parallel(merge="concat")`; the module tree becomes labelled `group`s, so the
   module's state_dict keys are the .res layer names;
4. blocks: module classes used more than once with the same layout become
   `block` definitions whose varying arguments are parameters; runs of calls
   `{i}: b(...)` become `for` loops.  The text is passed through `resdsl fmt`.

Mapping from torch modules and functions to resdsl ops lives in the tables
below (MODULE_RULES, FUNCTION_RULES), one entry per torch type; argument
defaults come from the op table (`resdsl.ops.OPS`), so a default is stated once.
"""
from __future__ import annotations

import importlib
import inspect
import math
import operator
import re
from collections import defaultdict
from dataclasses import dataclass, field

from .fmt import format_source
from .ops import OPS, REQUIRED


class ImportProblem(Exception):
    """A module that cannot be written as .res; the message names the module (path and class)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


# ----------------------------------------------------------------- 1. loading and tracing

def load_model(spec: str):
    """`torchvision:resnet18`, `timm:resnet50d`, `package.module:callable`, or a bare torchvision/timm name.

    Models are built with random weights; nothing is downloaded."""
    kind, _, name = spec.rpartition(":")
    if kind in ("", "torchvision", "tv"):
        import torchvision
        if hasattr(torchvision.models, name):
            return getattr(torchvision.models, name)(weights=None)
        if kind:
            raise ImportProblem(f"torchvision has no model `{name}`", "see torchvision.models.list_models()")
    if kind in ("", "timm"):
        try:
            import timm
        except ImportError:
            raise ImportProblem(f"no torchvision model `{name}`, and timm is not installed",
                                "pip install timm, or give module:callable") from None
        if timm.is_model(name):
            return timm.create_model(name, pretrained=False)
        raise ImportProblem(f"neither torchvision nor timm has a model `{name}`",
                            "give torchvision:NAME, timm:NAME or package.module:callable")
    try:
        obj = importlib.import_module(kind)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ImportProblem(f"cannot find `{spec}`: {e}", "give package.module:callable, importable from here "
                            "(the current directory is on the path)") from None
    return obj() if callable(obj) and not _is_module(obj) else obj


def _is_module(obj) -> bool:
    import torch
    return isinstance(obj, torch.nn.Module)


def _where(model, path: str) -> str:
    """`layer1.0 (Bottleneck, torchvision/models/resnet.py:108)` for messages."""
    m = model.get_submodule(path) if path else model
    cls = type(m)
    try:
        src = inspect.getsourcefile(cls)
        line = inspect.getsourcelines(cls)[1]
        origin = f", {src}:{line}"
    except (TypeError, OSError):
        origin = ""
    return f"`{path or '<top>'}` ({cls.__name__}{origin})"


def _trace(model, leaf_types: tuple):
    import torch
    import torch.fx as fx

    class Tracer(fx.Tracer):
        stack: list[str] = []

        def is_leaf_module(self, m, qualname):
            return isinstance(m, leaf_types) or super().is_leaf_module(m, qualname)

        def create_node(self, *args, **kwargs):
            node = super().create_node(*args, **kwargs)
            node.meta["resdsl_home"] = self.stack[-1] if self.stack else ""
            return node

        def call_module(self, m, forward, args, kwargs):
            self.stack.append(self.path_of_module(m))
            try:
                return super().call_module(m, forward, args, kwargs)
            except Exception:
                if self.failed is None:  # the innermost module whose forward failed
                    self.failed = self.stack[-1]
                raise
            finally:
                self.stack.pop()

    tracer = Tracer()
    tracer.failed = None
    # fx would trace through a custom autograd function's forward and silently drop its backward
    apply = torch.autograd.Function.__dict__["apply"]

    def refuse(cls, *args, **kwargs):
        raise TypeError(f"custom autograd function {cls.__name__} (its backward cannot be written in .res)")
    torch.autograd.Function.apply = classmethod(refuse)
    try:
        graph = tracer.trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, RuntimeError... for dynamic Python
        where = _where(model, tracer.failed or "")
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImportProblem(f"cannot trace module {where}: {reason}",
                            "torch.fx needs forward() without data-dependent control flow or custom autograd "
                            "functions; rewrite that module's forward, or import a submodule") from None
    finally:
        torch.autograd.Function.apply = apply
    return fx.GraphModule(model, graph)


# ----------------------------------------------------------------- 2. conversion

@dataclass(frozen=True)
class Op:
    id: int
    op: str
    args: tuple  # (name, value) pairs the .res file states (not the op table's defaults)
    path: tuple[str, ...]  # module path, () for functions and repeated parameter-free modules
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    home: tuple[str, ...] = ()  # the module whose forward() applies it (its scope when it has no label)


def _one(v):
    """torch's (3, 3) -> 3; (3, 1) -> [3, 1]."""
    if isinstance(v, (tuple, list)):
        return v[0] if len(set(v)) == 1 else list(v)
    return v


def _conv(m):
    if m.padding_mode != "zeros":
        raise ValueError(f"padding_mode={m.padding_mode!r} (resdsl pads with zeros)")
    pad = m.padding if isinstance(m.padding, str) else _one(m.padding)
    return "conv", dict(out_channels=m.out_channels, kernel_size=_one(m.kernel_size), stride=_one(m.stride),
                        padding=pad, dilation=_one(m.dilation), groups=m.groups, bias=m.bias is not None)


def _bn(m):
    if m.momentum is None:
        raise ValueError("momentum=None (cumulative averages) has no resdsl spelling")
    return "batchnorm", dict(eps=m.eps, momentum=m.momentum, affine=m.affine,
                             track_running_stats=m.track_running_stats)


def _pool(kind):
    def rule(m):
        a = dict(kernel_size=_one(m.kernel_size), stride=_one(m.stride), padding=_one(m.padding),
                 ceil_mode=m.ceil_mode)
        if kind == "max":
            a["dilation"] = _one(m.dilation)
        else:
            a["count_include_pad"] = m.count_include_pad
            if m.divisor_override is not None:
                raise ValueError("divisor_override is not supported")
        if a["stride"] == a["kernel_size"]:
            a["stride"] = None  # torch's default: the kernel size
        return f"{kind}pool", a
    return rule


def _act(name, **fields):
    def rule(m):
        return name, {k: getattr(m, attr) for k, attr in fields.items()}
    return rule


def _module_rules() -> dict:
    from torch import nn
    rules = {
        nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
        nn.BatchNorm1d: _bn, nn.BatchNorm2d: _bn, nn.BatchNorm3d: _bn,
        nn.Linear: lambda m: ("linear", dict(out_features=m.out_features, bias=m.bias is not None)),
        nn.MaxPool1d: _pool("max"), nn.MaxPool2d: _pool("max"), nn.MaxPool3d: _pool("max"),
        nn.AvgPool1d: _pool("avg"), nn.AvgPool2d: _pool("avg"), nn.AvgPool3d: _pool("avg"),
        nn.AdaptiveAvgPool2d: lambda m: ("adaptive_avgpool", dict(output_size=_one(m.output_size))),
        nn.AdaptiveMaxPool2d: lambda m: ("adaptive_maxpool", dict(output_size=_one(m.output_size))),
        nn.ReLU: _act("relu"), nn.GELU: lambda m: ("gelu", {}) if m.approximate == "none" else _no("tanh GELU"),
        nn.SiLU: _act("silu"), nn.Sigmoid: _act("sigmoid"), nn.Tanh: _act("tanh"),
        nn.LeakyReLU: _act("leaky_relu", negative_slope="negative_slope"), nn.ELU: _act("elu", alpha="alpha"),
        nn.Dropout: lambda m: ("dropout", dict(p=m.p)), nn.Identity: _act("identity"),
        nn.Flatten: lambda m: ("flatten", {}) if (m.start_dim, m.end_dim) == (1, -1) else _no("partial flatten"),
    }
    if "relu6" in OPS:  # helper b1's op; with it MobileNet imports
        rules[nn.ReLU6] = _act("relu6")
    return rules


def _no(what: str):
    raise ValueError(f"{what} has no resdsl op")


def _function_rules() -> dict:
    import torch
    import torch.nn.functional as F
    rules = {
        operator.add: "add", torch.add: "add", operator.iadd: "add",
        torch.cat: "concat", torch.flatten: "flatten",
        F.relu: "relu", torch.relu: "relu", F.gelu: "gelu", F.silu: "silu", torch.sigmoid: "sigmoid",
        torch.tanh: "tanh", F.adaptive_avg_pool2d: "adaptive_avgpool", F.dropout: "dropout",
    }
    methods = {"relu": "relu", "flatten": "flatten", "sigmoid": "sigmoid", "add": "add", "view": "flatten",
               "reshape": "flatten"}
    return {**rules, **{("method", k): v for k, v in methods.items()}}


def _stated(op: str, args: dict) -> tuple:
    """The arguments that differ from the op table's defaults, in the table's order."""
    spec = OPS[op]
    out = []
    for p in spec.params:
        if p.name in args:
            v = args[p.name]
            if p.default is REQUIRED or v != p.default or type(v) is not type(p.default):
                if not (p.default is None and v is None):
                    out.append((p.name, v))
    return tuple(out)


def _rule(gm, root, node, mod_rules: dict, fn_rules: dict):
    """(op, args) for a module call, (op, None) for a function, None for a node that is not a tensor op.
    Raises `ImportProblem` naming the module for anything without a rule."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        rule = mod_rules.get(type(m))
        if rule is None:
            raise ImportProblem(f"cannot import module {_where(root, node.target)}: no resdsl op for "
                                f"{type(m).__module__}.{type(m).__name__}",
                                "resdsl ops are listed by `resdsl ops`; rewrite the module from them")
        try:
            return rule(m)
        except ValueError as e:
            raise ImportProblem(f"cannot import module {_where(root, node.target)}: {e}") from None
    if node.op in ("call_function", "call_method"):
        if (node.op == "call_method" and node.target in ("size", "dim")) or node.target is getattr:
            return None  # shape queries feed view/reshape; not tensors
        op = fn_rules.get(("method", node.target) if node.op == "call_method" else node.target)
        if op is None:
            name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", node.target)
            raise ImportProblem(f"cannot import `{name}` ({node.op} at fx node {node.name}, called from "
                                f"module {_owner(root, node)}): no resdsl op for it")
        return op, None
    if node.op == "get_attr":
        raise ImportProblem(f"cannot import the direct use of parameter `{node.target}` in "
                            f"{_owner(root, node)}: only modules own weights in resdsl")
    return None


def _check_supported(gm, root) -> None:
    """Every node has a rule (before anything runs, so an unknown module is named, not its runtime error)."""
    mod_rules, fn_rules = _module_rules(), _function_rules()
    for node in gm.graph.nodes:
        _rule(gm, root, node, mod_rules, fn_rules)


def _convert(gm, root, shapes: dict) -> tuple[list[Op], dict[str, int]]:
    """fx graph -> `Op`s in program order; aliases (cat of one tensor, no-op views) are folded away."""
    mod_rules, fn_rules = _module_rules(), _function_rules()
    ops: list[Op] = []
    ids: dict[str, int] = {}  # fx node name -> Op id (aliases map to their source)
    called: dict[str, int] = defaultdict(int)

    def add(node, op: str, args: dict, path: tuple[str, ...], home: tuple[str, ...] = ()) -> None:
        ids[node.name] = len(ops)
        inputs = tuple(ids[a.name] for a in node.all_input_nodes if a.name in ids)
        ops.append(Op(len(ops), op, _stated(op, args) if op in OPS else (), path, inputs, shapes[node.name], home))

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            add(node, "input", {}, ())
            continue
        found = _rule(gm, root, node, mod_rules, fn_rules)
        if found is None:
            continue
        op, args = found
        if node.op == "call_module":
            called[node.target] += 1
            path = tuple(node.target.split("."))
            if called[node.target] == 1:
                add(node, op, args, path)
                continue
            m = gm.get_submodule(node.target)  # applied again: fine without weights, else shared weights
            if any(True for _ in m.parameters()) or any(True for _ in m.buffers()):
                raise ImportProblem(f"module {_where(root, node.target)} is applied {called[node.target]} "
                                    "times: resdsl layers own their weights, so shared weights cannot "
                                    "be written", "give each use its own module")
            add(node, op, args, (), path[:-1])
            continue
        args = _function_args(op, node, shapes)
        if args is None:  # an alias: cat([x]), flatten of a flat tensor
            ids[node.name] = ids[node.all_input_nodes[0].name]
            continue
        home = node.meta.get("resdsl_home", "")
        add(node, op, args, (), tuple(home.split(".")) if home else ())
    return ops, ids


def _owner(root, node) -> str:
    return _where(root, node.meta.get("resdsl_home", ""))


def _function_args(op: str, node, shapes) -> dict | None:
    ins = [a for a in node.all_input_nodes if a.name in shapes]
    out = shapes[node.name]
    if op == "concat":
        (tensors,) = node.args[:1] or (node.kwargs["tensors"],)
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if len(tensors) == 1:
            return None
        if dim not in (1, -len(out) - 1 + 1) or len(out) < 1:
            raise ImportProblem(f"cannot import torch.cat along dim {dim} at fx node {node.name}: resdsl "
                                "concatenates channels (dim 1)")
        return {}
    if op == "flatten":
        if len(out) != 1:
            raise ImportProblem(f"cannot import {node.target} at fx node {node.name}: only flattening to "
                                "[batch, features] has a resdsl op")
        return None if shapes[ins[0].name] == out else {}
    if op == "adaptive_avgpool":
        size = node.args[1] if len(node.args) > 1 else node.kwargs["output_size"]
        return {"output_size": _one(size)}
    if op == "dropout":
        p = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
        return {"p": p}
    return {}


def _shapes(gm, input_shape) -> dict[str, tuple[int, ...]]:
    """Run the traced graph once on zeros (eval mode) and record each tensor's shape without the batch."""
    import torch
    from torch.fx.passes.shape_prop import ShapeProp
    was = gm.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    gm.train(was)
    out = {}
    for n in gm.graph.nodes:
        meta = n.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape"):
            out[n.name] = tuple(meta.shape[1:])
    return out


# ----------------------------------------------------------------- 3. structure

@dataclass
class Stmt:
    """A layer (`op`), or a region: residual / dense / parallel with bodies of statements."""
    kind: str  # layer | residual | dense | parallel
    op: Op | None = None
    bodies: list[list["Stmt"]] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    def leaves(self):
        if self.op is not None:
            yield self.op
        for b in self.bodies:
            for s in b:
                yield from s.leaves()


def _dominators(ops: list[Op]) -> list[int]:
    """Immediate dominator of each op (the input dominates itself); ops are in topological order."""
    idom = list(range(len(ops)))
    for o in ops:
        if not o.inputs:
            continue
        d = o.inputs[0]
        for i in o.inputs[1:]:
            a, b = d, i
            while a != b:
                if a > b:
                    a = idom[a]
                else:
                    b = idom[b]
            d = a
        idom[o.id] = d
    return idom


class _Structurer:
    def __init__(self, ops: list[Op]):
        self.ops = ops
        self.idom = _dominators(ops)
        self.users: dict[int, set[int]] = defaultdict(set)
        for o in ops:
            for i in o.inputs:
                self.users[i].add(o.id)
        self.base: dict[int, tuple[int, ...]] = {}  # concat -> the tensors it joins, nested concats flattened
        self.by_base: dict[tuple[int, ...], int] = {}
        for o in ops:
            b = sum((self.base.get(i, (i,)) for i in o.inputs), ()) if o.op == "concat" else (o.id,)
            self.base[o.id] = b
            self.by_base.setdefault(b, o.id)

    def sequence(self, start: int, end: int) -> list[Stmt]:
        """Statements computing `end` from `start` (which dominates it)."""
        out: list[Stmt] = []
        e = end
        while e != start:
            o = self.ops[e]
            if o.op == "input":
                raise ImportProblem(f"a second network input reaches {self._name(end)}: import one input")
            if o.op == "add":
                e = self._residual(o, out)
            elif o.op == "concat":
                e = self._concat(o, out)
            else:
                out.append(Stmt("layer", o))
                e = o.inputs[0]
        return out[::-1]

    def _name(self, i: int) -> str:
        o = self.ops[i]
        return "`" + ".".join(o.path) + "`" if o.path else f"the {o.op} at step {i}"

    def _check_closed(self, fork: int, merge: int, body: list[Stmt], allowed: set[int] = frozenset()) -> None:
        inside = {o.id for s in body for o in s.leaves()} | {merge} | set(allowed)
        for s in body:
            for o in s.leaves():
                if o.id in allowed:
                    continue
                extra = self.users[o.id] - inside
                if extra:
                    raise ImportProblem(f"the output of {self._name(o.id)} is used both inside and outside the "
                                        f"merge at {self._name(merge)}; only nested residual, dense and parallel "
                                        "regions can be written")

    def _residual(self, o: Op, out: list[Stmt]) -> int:
        if len(o.inputs) != 2:
            raise ImportProblem(f"an add of {len(o.inputs)} tensors at {self._name(o.id)} is not supported")
        f = self.idom[o.id]
        a, b = (self.sequence(f, i) for i in o.inputs)
        for body in (a, b):
            self._check_closed(f, o.id, body)
        if not b or (a and _is_projection(b)):
            a, b = a, b
        elif not a or _is_projection(a):
            a, b = b, a
        out.append(Stmt("residual", bodies=[a] if not b else [a, b]))
        return f

    def _concat(self, o: Op, out: list[Stmt]) -> int:
        parts = self.base[o.id]
        prev = self.by_base.get(parts[:-1])
        if prev is not None and prev != o.id and self._dominates(prev, parts[-1]):
            body = self.sequence(prev, parts[-1])
            self._check_closed(prev, o.id, body, allowed={parts[-1]})
            out.append(Stmt("dense", bodies=[body]))
            return prev
        f = self.idom[o.id]
        bodies = [self.sequence(f, i) for i in o.inputs]
        for body in bodies:
            self._check_closed(f, o.id, body)
        out.append(Stmt("parallel", bodies=bodies, options={"merge": "concat"}))
        return f

    def _dominates(self, a: int, b: int) -> bool:
        while True:
            if a == b:
                return True
            if self.idom[b] == b:
                return False
            b = self.idom[b]


def _is_projection(body: list[Stmt]) -> bool:
    """torchvision's downsample: L.0 = 1x1 conv without bias (any stride), L.1 = default batchnorm."""
    if len(body) != 2 or any(s.kind != "layer" for s in body):
        return False
    conv, bn = body[0].op, body[1].op
    ca = dict(conv.args)
    return (conv.op == "conv" and ca.get("kernel_size") == 1 and ca.get("bias") is False
            and set(ca) <= {"out_channels", "kernel_size", "stride", "bias"}
            and bn.op == "batchnorm" and not bn.args
            and conv.path[-1:] == ("0",) and bn.path[-1:] == ("1",) and conv.path[:-1] == bn.path[:-1])


# ----------------------------------------------------------------- text (an intermediate tree of items)

@dataclass
class Item:
    """One .res statement: a layer, a block call, or a scope with a body (group/residual/dense/parallel)."""
    label: str | None
    head: str  # `conv(64, kernel_size=3)`, `residual(shortcut="project")`, `group`, `bottleneck(64)`
    body: list["Item"] | None = None
    shortcut: list["Item"] | None = None
    branches: list[list["Item"]] | None = None
    module: str = ""  # the torch module path this scope stands for (for blocks)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ImportProblem(f"the value {v} has no resdsl spelling")
        r = repr(v)
        return r if ("." in r or "e" in r) else r + ".0"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _call(op: Op) -> str:
    spec = OPS[op.op]
    first = spec.params[0].name if spec.params and spec.params[0].default is REQUIRED else None
    args = [(_value(v) if k == first else f"{k}={_value(v)}") for k, v in op.args]
    if args:
        return f"{op.op}({', '.join(args)})"
    return f"{op.op}()" if spec.family == "norm" else op.op


def _prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    if not paths:
        return ()
    p = paths[0]
    for q in paths[1:]:
        n = 0
        while n < min(len(p), len(q)) and p[n] == q[n]:
            n += 1
        p = p[:n]
    return p


def _scope_of(s: Stmt) -> tuple[str, ...] | None:
    """The module scope a statement belongs to: the common prefix of its layers' paths, kept a strict prefix
    of every path so that each layer keeps its own label; None when it has no labelled layer."""
    if s.kind == "layer":
        return s.op.path[:-1] if s.op.path else (s.op.home or None)
    paths = [o.path for o in s.leaves() if o.path]
    if not paths:
        return None
    p = _prefix(paths)
    return p[:-1] if any(len(q) == len(p) for q in paths) else p


def _items(stmts: list[Stmt], scope: tuple[str, ...]) -> list[Item]:
    """Statements inside `scope` -> items; runs of statements under one child module become `child: group`."""
    out: list[Item] = []
    i = 0
    while i < len(stmts):
        sc = _scope_of(stmts[i])
        if sc is None or len(sc) <= len(scope):
            out.append(_item(stmts[i], scope))
            i += 1
            continue
        child = sc[len(scope)]
        j, last = i, i
        while j < len(stmts):
            sj = _scope_of(stmts[j])
            if sj is not None and (len(sj) <= len(scope) or sj[len(scope)] != child):
                break
            if sj is not None:
                last = j
            j += 1
        run, inner = stmts[i:last + 1], scope + (child,)
        if len(run) == 1 and run[0].kind != "layer" and _scope_of(run[0]) == inner:
            item = _item(run[0], inner)
            item.label = child
        else:
            item = Item(child, "group", _items(run, inner))
        item.module = ".".join(inner)
        out.append(item)
        i = last + 1
    return out


def _item(s: Stmt, scope: tuple[str, ...]) -> Item:
    if s.kind == "layer":
        label = s.op.path[-1] if s.op.path else None
        if s.op.path[:-1] != scope and s.op.path:
            raise ImportProblem(f"internal: layer {'.'.join(s.op.path)} placed in scope {'.'.join(scope)}")
        return Item(label, _call(s.op))
    if s.kind == "dense":
        return Item(None, "dense", _items(s.bodies[0], scope))
    if s.kind == "parallel":
        return Item(None, 'parallel(merge="concat")', branches=[_items(b, scope) for b in s.bodies])
    branch = s.bodies[0]
    if len(s.bodies) == 1:
        return Item(None, "residual", _items(branch, scope))
    short = s.bodies[1]
    if _is_projection(short) and short[0].op.path[:-2] == scope:
        label = short[0].op.path[-2]
        opts = ['shortcut="project"'] + ([] if label == "downsample" else [f'shortcut_label="{label}"'])
        return Item(None, f"residual({', '.join(opts)})", _items(branch, scope))
    return Item(None, "residual", _items(branch, scope), shortcut=_items(short, scope))


# ----------------------------------------------------------------- 4. blocks and loops

def _signature(item: Item) -> tuple:
    """The layout of an item with every number and string replaced by a placeholder."""
    sub = lambda items: tuple(_signature(x) for x in items) if items is not None else None
    return (item.label, _NUM.sub("#", item.head), sub(item.body), sub(item.shortcut),
            tuple(sub(b) for b in item.branches) if item.branches else None)


# the literal values of a rendered head: strings, numbers (not the digits of a name like conv1d), booleans
_NUM = re.compile(r'"[^"]*"|(?<![\w.])-?\d+(?:\.\d*)?(?:e[-+]?\d+)?(?![\w])|\btrue\b|\bfalse\b')


def _values(item: Item) -> list[str]:
    vals = _NUM.findall(item.head)
    for items in [item.body, item.shortcut] + list(item.branches or []):
        for x in items or []:
            vals += _values(x)
    return vals


def _substitute(item: Item, names: list[str | None], pos: list[int]) -> Item:
    def head(h: str) -> str:
        def rep(m):
            k = pos[0]
            pos[0] += 1
            return names[k] if names[k] is not None else m.group(0)
        return _NUM.sub(rep, h)
    new = Item(item.label, head(item.head))
    new.body = [_substitute(x, names, pos) for x in item.body] if item.body is not None else None
    new.shortcut = [_substitute(x, names, pos) for x in item.shortcut] if item.shortcut is not None else None
    new.branches = [[_substitute(x, names, pos) for x in b] for b in item.branches] if item.branches else None
    return new


def _arg_names(item: Item) -> list[tuple[str, str]]:
    """(layer label, argument) of each value slot: ("conv1", "channels"), ("conv2", "stride")."""
    names: list[tuple[str, str]] = []

    def walk(it: Item, where: str):
        m = re.match(r"(\w+)\((.*)\)\Z", it.head)
        if m:
            op = OPS.get(m.group(1))
            parts = _split_args(m.group(2))
            for k, part in enumerate(parts):
                key, eq, _ = part.partition("=")
                arg = key.strip() if eq and re.fullmatch(r"\s*\w+\s*", key) else (
                    op.params[k].name if op and k < len(op.params) else "arg")
                arg = {"out_channels": "channels", "out_features": "features"}.get(arg, arg)
                for _ in _NUM.findall(part):
                    names.append((it.label or where, arg))
        for items in [it.body, it.shortcut] + list(it.branches or []):
            for x in items or []:
                walk(x, it.label or where)
    walk(item, "block")
    return names


def _split_args(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur] if cur.strip() else parts


def _blocks(items: list[Item], classes: dict[str, str]) -> list[str]:
    """Module classes used twice or more with one layout -> block definitions (returned, innermost first);
    their uses in `items` become calls."""
    found: dict[tuple, list[Item]] = defaultdict(list)
    depth: dict[tuple, int] = {}

    def collect(its, d):
        for it in its:
            cls = classes.get(it.module)
            if cls is not None and (it.body is not None or it.branches is not None) and it.label is not None:
                key = (cls, _signature(_as_body(it)))
                found[key].append(it)
                depth[key] = max(depth.get(key, 0), d)
            for sub in [it.body, it.shortcut] + list(it.branches or []):
                collect(sub or [], d + 1)
    collect(items, 0)
    defs: list[str] = []
    used: dict[str, int] = defaultdict(int)
    for key in sorted(found, key=lambda k: -depth[k]):  # inner classes first: outer templates then call them
        uses = found[key]
        if len(uses) < 2:
            continue
        base = _snake(key[0])
        used[base] += 1
        name = base if used[base] == 1 else f"{base}_{used[base]}"
        params, cols, names = _parameters(uses)
        template = _substitute(_as_body(uses[0]), names, [0])
        defs.append("\n".join([f"block {name}({', '.join(params)}) {{"] + _render(template.body, 1) + ["}"]))
        for k, u in enumerate(uses):
            u.head, u.body, u.shortcut, u.branches = f"{name}({', '.join(col[k] for col in cols)})", None, None, None
    return defs


def _as_body(it: Item) -> Item:
    """A scope item as a block body: a group's statements, or the (unlabelled) region itself."""
    if it.head == "group":
        return Item(None, "group", it.body)
    return Item(None, "group", [Item(None, it.head, it.body, it.shortcut, it.branches)])


def _parameters(uses: list[Item]) -> tuple[list[str], list[tuple], list[str | None]]:
    """Block parameters from the value slots that differ between uses: (names, their values per use, the
    expression standing in each slot -- None where all uses agree and the literal stays)."""
    columns = list(zip(*[_values(_as_body(u)) for u in uses]))
    slot_names = _arg_names(_as_body(uses[0]))
    params: list[str] = []
    cols: list[tuple] = []
    names: list[str | None] = []
    known: dict[tuple, str] = {}
    for k, col in enumerate(columns):
        if len(set(col)) == 1:
            names.append(None)
        elif col in known:
            names.append(known[col])
        else:
            expr = _multiple(col, known)
            if expr is None:
                expr = f"\0{len(params)}"  # a placeholder until every parameter is known
                params.append(expr)
                cols.append(col)
                known[col] = expr
            names.append(expr)
    # a parameter is called after its argument (`channels`, `stride`) when that is unambiguous,
    # else after its layer too (`conv1_channels`)
    slots = [slot_names[names.index(p)] for p in params]
    args = [a for _, a in slots]
    final: list[str] = []
    for label, arg in slots:
        final.append(_unique(arg if args.count(arg) == 1 else f"{label}_{arg}", final))
    rename = lambda e: re.sub("\0(\\d+)", lambda m: final[int(m.group(1))], e) if e is not None else None
    return final, cols, [rename(e) for e in names]


def _multiple(col: tuple, known: dict[tuple, str]) -> str | None:
    """`conv1_channels * 4` when a column is a fixed integer multiple of an earlier parameter."""
    try:
        ys = [int(v) for v in col]
    except ValueError:
        return None
    for other, name in known.items():
        try:
            xs = [int(v) for v in other]
        except ValueError:
            continue
        if all(x > 0 for x in xs) and all(y % x == 0 for x, y in zip(xs, ys)):
            ks = {y // x for x, y in zip(xs, ys)}
            if len(ks) == 1 and ks != {1}:
                return f"{name} * {ks.pop()}"
    return None


def _unique(name: str, taken: list[str]) -> str:
    name = re.sub(r"\W", "_", name)
    if not re.match(r"[A-Za-z_]", name) or name in _KEYWORDS:
        name = "p_" + name
    out, k = name, 2
    while out in taken:
        out, k = f"{name}{k}", k + 1
    return out


_KEYWORDS = {"in_channels", "in_shape", "true", "false", "none", "and", "or", "not", "if", "else", "for", "in",
             "block", "network", "input", "output", "from", "import", "residual", "dense", "parallel", "branch",
             "group", "shortcut"}


def _snake(cls: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls).lower()
    s = re.sub(r"\W", "_", s).strip("_") or "block"
    if s in OPS or s in _KEYWORDS:
        s += "_block"
    return s


def _loops(items: list[Item]) -> list:
    """Runs of three or more calls `prefix{k}: same(...)` with consecutive k -> one `for` loop."""
    out: list = []
    i = 0
    while i < len(items):
        it = items[i]
        m = re.fullmatch(r"([A-Za-z_]*?)(\d+)", it.label or "")
        j = i + 1
        if m and it.body is None and it.shortcut is None and not it.branches:
            pre, k0 = m.group(1), int(m.group(2))
            while (j < len(items) and items[j].head == it.head and items[j].body is None
                   and items[j].branches is None and items[j].label == f"{pre}{k0 + j - i}"):
                j += 1
            if j - i >= 3:
                label = f"{pre}{{i}}" if pre else "{i}"
                out.append(("for", "i", k0, k0 + j - i, Item(label, it.head)))
                i = j
                continue
        out.append(it)
        i += 1
    return out


def _render(items: list[Item], depth: int) -> list[str]:
    pad = "    " * depth
    lines: list[str] = []
    for it in _loops(items):
        if isinstance(it, tuple):
            _, var, a, b, inner = it
            rng = f"range({b})" if a == 0 else f"range({a}, {b})"
            lines.append(f"{pad}for {var} in {rng} {{")
            lines += _render_one(inner, depth + 1)
            lines.append(f"{pad}}}")
        else:
            lines += _render_one(it, depth)
    return lines


def _render_one(it: Item, depth: int) -> list[str]:
    pad = "    " * depth
    label = f"{it.label}: " if it.label is not None else ""
    if it.branches is not None:
        lines = [f"{pad}{label}{it.head} {{"]
        for b in it.branches:
            lines += [f"{pad}    branch {{"] + _render(b, depth + 2) + [f"{pad}    }}"]
        return lines + [f"{pad}}}"]
    if it.body is None:
        return [f"{pad}{label}{it.head}"]
    lines = [f"{pad}{label}{it.head} {{"] + _render(it.body, depth + 1)
    if it.shortcut is not None:
        lines += [f"{pad}}} shortcut {{"] + _render(it.shortcut, depth + 1)
    return lines + [f"{pad}}}"]


# ----------------------------------------------------------------- the entry point

def import_module(model, input_shape: tuple[int, ...], name: str = "imported", origin: str = "") -> str:
    """A formatted .res file for `model` on inputs of `input_shape` (no batch dimension).

    Raises `ImportProblem` (naming the module) for what cannot be written."""
    import torch
    rules = _module_rules()
    gm = _trace(model, tuple(rules))
    _check_supported(gm, model)
    try:
        shapes = _shapes(gm, tuple(input_shape))
    except Exception as e:  # the module itself fails on this input
        raise ImportProblem(f"the module fails on an input of shape {[1, *input_shape]}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                            "give the input shape the module expects with --input C,H,W") from None
    ops, ids = _convert(gm, model, shapes)
    inputs = [o for o in ops if o.op == "input"]
    if len(inputs) != 1:
        raise ImportProblem(f"the module takes {len(inputs)} tensor inputs; import supports one")
    out_nodes = [n for n in gm.graph.nodes if n.op == "output"]
    result = out_nodes[0].args[0]
    if not isinstance(result, torch.fx.Node) or result.name not in shapes:
        raise ImportProblem("the module returns several tensors or a container; import supports one tensor")
    last = ids[result.name]
    stmts = _Structurer(ops).sequence(inputs[0].id, last)
    items = _items(stmts, ())
    classes = {path: type(m).__name__ for path, m in model.named_modules()
               if path and type(m) not in (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)
               and type(m) not in rules}
    defs = _blocks(items, classes)
    net = _ident(name)
    shape = ", ".join(str(d) for d in input_shape)
    out_name = "logits" if ops[last].op == "linear" else "out"
    lines = [f"# {origin or name}, imported by `resdsl import` from torch.fx's trace on a [{shape}] input.",
             "# Layer names are the module's, so its state_dict loads into the compiled network with strict=True.",
             ""]
    for d in defs:
        lines += [d, ""]
    lines += [f"network {net}() {{", f"    input x: [{shape}]"] + _render(items, 1) + [f"    output {out_name}", "}"]
    return format_source("\n".join(lines) + "\n", f"<import {net}>")


def _ident(name: str) -> str:
    s = re.sub(r"\W", "_", name)
    return s if re.match(r"[A-Za-z_]", s) and s not in _KEYWORDS else "net_" + s

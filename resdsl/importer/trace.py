"""Steps 1 and 2 of `resdsl import`: load a torch module, trace it with torch.fx, convert its nodes to `Op`s.

Reads an `nn.Module`; writes the `Op` list (program order, tensor inputs by id)
that `structure.py` reads.  Every torch module and function with a resdsl
counterpart has one rule in `_module_rules` / `_function_rules`, the single
place the mapping lives; the op table (`resdsl.ops.OPS`) supplies argument
order and defaults.  Anything without a rule raises `ImportProblem` naming the
module path, its class and where the class is defined, before anything runs.
"""
from __future__ import annotations

import importlib
import inspect
import operator
import re
from collections import defaultdict
from dataclasses import dataclass

from ..ops import OPS, REQUIRED


class ImportProblem(Exception):
    """A module that cannot be written as .res; the message names the module (path and class)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


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


def fx_trace(model, leaf_types: tuple):
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


@dataclass(frozen=True)
class Op:
    id: int
    op: str
    args: tuple  # (name, value) of every argument the module determines, in the op table's order
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


def _conv_transpose(m):
    if m.padding_mode != "zeros":
        raise ValueError(f"padding_mode={m.padding_mode!r} (resdsl pads with zeros)")
    return "conv_transpose", dict(out_channels=m.out_channels, kernel_size=_one(m.kernel_size),
                                  stride=_one(m.stride), padding=_one(m.padding),
                                  output_padding=_one(m.output_padding), groups=m.groups,
                                  bias=m.bias is not None, dilation=_one(m.dilation))


def _upsample(m):
    if m.recompute_scale_factor:
        raise ValueError("recompute_scale_factor has no resdsl spelling")
    scale = m.scale_factor if m.scale_factor is None else _one(m.scale_factor)
    return "upsample", dict(scale_factor=float(scale) if isinstance(scale, int) else scale,
                            size=_one(m.size) if m.size is not None else None, mode=m.mode,
                            align_corners=m.align_corners)


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


def module_rules() -> dict:
    from torch import nn
    rules = {
        nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
        nn.ConvTranspose1d: _conv_transpose, nn.ConvTranspose2d: _conv_transpose, nn.ConvTranspose3d: _conv_transpose,
        nn.Upsample: _upsample,
        nn.GroupNorm: lambda m: ("groupnorm", dict(num_groups=m.num_groups, eps=m.eps, affine=m.affine)),
        nn.BatchNorm1d: _bn, nn.BatchNorm2d: _bn, nn.BatchNorm3d: _bn,
        nn.Linear: lambda m: ("linear", dict(out_features=m.out_features, bias=m.bias is not None)),
        nn.MaxPool1d: _pool("max"), nn.MaxPool2d: _pool("max"), nn.MaxPool3d: _pool("max"),
        nn.AvgPool1d: _pool("avg"), nn.AvgPool2d: _pool("avg"), nn.AvgPool3d: _pool("avg"),
        nn.AdaptiveAvgPool2d: lambda m: ("adaptive_avgpool", dict(output_size=_one(m.output_size))),
        nn.AdaptiveMaxPool2d: lambda m: ("adaptive_maxpool", dict(output_size=_one(m.output_size))),
        nn.ReLU: _act("relu"), nn.ReLU6: _act("relu6"), nn.GELU: _act("gelu", approximate="approximate"),
        nn.Hardswish: _act("hardswish"), nn.Hardsigmoid: _act("hardsigmoid"), nn.Mish: _act("mish"),
        nn.LayerNorm: _layernorm,
        nn.SiLU: _act("silu"), nn.Sigmoid: _act("sigmoid"), nn.Tanh: _act("tanh"),
        nn.LeakyReLU: _act("leaky_relu", negative_slope="negative_slope"), nn.ELU: _act("elu", alpha="alpha"),
        nn.Dropout: lambda m: ("dropout", dict(p=m.p)), nn.Identity: _act("identity"),
        nn.Flatten: lambda m: ("flatten", {}) if (m.start_dim, m.end_dim) == (1, -1) else _no("partial flatten"),
    }
    try:  # torchvision's building blocks, kept whole (their forward() is one resdsl op)
        from torchvision.models.convnext import LayerNorm2d
        from torchvision.ops import Permute, StochasticDepth
    except ImportError:
        return rules
    rules[LayerNorm2d] = lambda m: ("layernorm2d", dict(eps=m.eps, elementwise_affine=m.elementwise_affine,
                                                        bias=m.bias is not None))
    rules[Permute] = lambda m: ("permute", dict(dims=_feature_dims(m.dims)))
    rules[StochasticDepth] = lambda m: ("drop_path", dict(p=m.p, mode=m.mode))
    return rules


def _layernorm(m):
    return "layernorm", dict(dims=len(m.normalized_shape), eps=m.eps, elementwise_affine=m.elementwise_affine,
                             bias=m.bias is not None)


def _feature_dims(dims) -> list[int]:
    """torch's permutation with the batch dimension -> resdsl's of the feature dimensions."""
    if list(dims)[:1] != [0]:
        raise ValueError(f"permute{tuple(dims)} moves the batch dimension")
    return [d - 1 for d in list(dims)[1:]]


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
        F.max_pool2d: "maxpool", F.avg_pool2d: "avgpool",
    }
    rules.update({operator.mul: "mul", torch.mul: "mul", operator.imul: "mul", torch.permute: "permute",
                  F.relu6: "relu6", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid"})
    rules[torch.mean] = "mean"
    methods = {"relu": "relu", "flatten": "flatten", "sigmoid": "sigmoid", "add": "add", "view": "flatten",
               "reshape": "flatten", "mul": "mul", "permute": "permute", "mean": "mean"}
    return {**rules, **{("method", k): v for k, v in methods.items()}}


def _ordered(op: str, args: dict) -> tuple:
    """The module's arguments in the op table's order."""
    return tuple((p.name, args[p.name]) for p in OPS[op].params if p.name in args)


def is_default(op: str, name: str, value) -> bool:
    """Whether a .res file may leave the argument out (the op table's default, of the same type)."""
    p = next(p for p in OPS[op].params if p.name == name)
    return p.default is not REQUIRED and type(value) is type(p.default) and value == p.default


def stated(op: Op) -> dict:
    """The arguments a .res file has to write for this op."""
    return {k: v for k, v in op.args if not is_default(op.op, k, v)}


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
        if not all(u.op in ("call_function", "call_method") and fn_rules.get(
                ("method", u.target) if u.op == "call_method" else u.target) == "mul" for u in node.users):
            raise ImportProblem(f"cannot import the direct use of parameter `{node.target}` in "
                                f"{_owner(root, node)}: only modules own weights in resdsl, except a "
                                "per-channel scale `parameter * x` (layer_scale)")
        return None  # read by its mul (see _scale_of)
    return None


def check_supported(gm, root) -> None:
    """Every node has a rule (before anything runs, so an unknown module is named, not its runtime error)."""
    mod_rules, fn_rules = module_rules(), _function_rules()
    for node in gm.graph.nodes:
        _rule(gm, root, node, mod_rules, fn_rules)


def convert(gm, root, shapes: dict) -> tuple[list[Op], dict[str, int]]:
    """fx graph -> `Op`s in program order; aliases (cat of one tensor, no-op views) are folded away."""
    mod_rules, fn_rules = module_rules(), _function_rules()
    ops: list[Op] = []
    ids: dict[str, int] = {}  # fx node name -> Op id (aliases map to their source)
    called: dict[str, int] = defaultdict(int)

    def add(node, op: str, args: dict, path: tuple[str, ...], home: tuple[str, ...] = ()) -> None:
        ids[node.name] = len(ops)
        inputs = tuple(ids[a.name] for a in node.all_input_nodes if a.name in ids)
        ops.append(Op(len(ops), op, _ordered(op, args) if op in OPS else (), path, inputs, shapes[node.name], home))

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            add(node, "input", {}, ())
            continue
        found = _rule(gm, root, node, mod_rules, fn_rules)
        if found is None:
            continue
        op, args = found
        if op == "linear" and len(shapes[node.all_input_nodes[0].name]) > 1:
            args = {**args, "pointwise": True}  # nn.Linear on the last dim of [H, W, C] (ConvNeXt's MLP)
        if node.op == "call_module":
            called[node.target] += 1
            path = tuple(node.target.split("."))
            m = gm.get_submodule(node.target)
            owns = any(True for _ in m.parameters()) or any(True for _ in m.buffers())
            bad = [c for c in path if not _LABEL.fullmatch(c)]
            if bad and owns:
                raise ImportProblem(f"module {_where(root, node.target)} has `{bad[0]}` in its name, which is not "
                                    "a resdsl label (letters, digits, _), so its state_dict keys cannot be "
                                    "the .res layer names", "rename the submodule")
            if called[node.target] == 1 and not bad:
                add(node, op, args, path)
                continue
            if owns:  # applied again: fine without weights, not with shared weights
                raise ImportProblem(f"module {_where(root, node.target)} is applied {called[node.target]} "
                                    "times: resdsl layers own their weights, so shared weights cannot "
                                    "be written", "give each use its own module")
            add(node, op, args, (), _valid_prefix(path[:-1]))  # unlabelled: it owns nothing to name
            continue
        scale = _scale_of(gm, node) if op == "mul" else None
        if scale is not None:  # parameter * x: a layer_scale named like the parameter
            target, keepdims = scale
            ids[node.name] = len(ops)
            x = next(a for a in node.all_input_nodes if a.op != "get_attr")
            ops.append(Op(len(ops), "layer_scale", _ordered("layer_scale", {"keepdims": keepdims}),
                          tuple(target.split(".")), (ids[x.name],), shapes[node.name]))
            continue
        args = _function_args(op, node, shapes)
        if args is None:  # an alias: cat([x]), flatten of a flat tensor
            ids[node.name] = ids[node.all_input_nodes[0].name]
            continue
        op = args.pop("op", op)  # a function standing for another op (mean -> pooling)
        home = node.meta.get("resdsl_home", "")
        add(node, op, args, (), _valid_prefix(tuple(home.split("."))) if home else ())
    return ops, ids


_LABEL = re.compile(r"[A-Za-z0-9_]+")


def _scale_of(gm, node) -> tuple[str, bool] | None:
    """For `parameter * x` with a [C, 1, 1] or [C] parameter: (its name, keepdims); None for tensor * tensor."""
    params = [a for a in node.all_input_nodes if a.op == "get_attr"]
    if not params:
        return None
    (p,) = params
    value = gm.get_parameter(p.target) if "." in p.target or hasattr(gm, p.target) else None
    shape = tuple(value.shape) if value is not None else ()
    if len(node.all_input_nodes) != 2 or not (len(shape) == 3 and shape[1:] == (1, 1) or len(shape) == 1):
        raise ImportProblem(f"cannot import `{p.target}` * x at fx node {node.name}: only a per-channel "
                            f"parameter of shape [C, 1, 1] or [C] is a resdsl layer_scale, not {list(shape)}")
    return p.target, len(shape) == 3


def _valid_prefix(path: tuple[str, ...]) -> tuple[str, ...]:
    k = 0
    while k < len(path) and _LABEL.fullmatch(path[k]):
        k += 1
    return path[:k]


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
    if op == "mean":  # x.mean((2, 3), keepdim=True): squeeze-and-excitation's pooling
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        rank = len(shapes[ins[0].name]) + 1
        spatial = set(range(2, rank))
        if not isinstance(dims, (list, tuple)) or {d % rank for d in dims} != spatial or len(spatial) == 0:
            raise ImportProblem(f"cannot import mean over dims {dims} at fx node {node.name}: only the mean over "
                                "all spatial dims (global average pooling) has a resdsl op")
        return {"op": "adaptive_avgpool", "output_size": 1} if keep else {"op": "global_avgpool"}
    if op == "permute":
        dims = node.args[1:] if node.op == "call_method" else node.args[1]
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (list, tuple)) else dims
        try:
            return {"dims": _feature_dims(dims)}
        except ValueError as e:
            raise ImportProblem(f"cannot import {e} at fx node {node.name}") from None
    if op in _POOL_ARGS:  # F.max_pool2d(x, kernel_size, stride, padding, ...): torch's positional order
        given = dict(zip(_POOL_ARGS[op], node.args[1:])) | dict(node.kwargs)
        if given.get("return_indices") or given.get("divisor_override") is not None:
            raise ImportProblem(f"cannot import {node.target.__name__} at fx node {node.name} with "
                                "return_indices/divisor_override")
        a = {k: _one(v) for k, v in given.items() if k in _POOL_ARGS[op]}
        if a.get("stride") in ((), []) or a.get("stride") == a.get("kernel_size"):
            a["stride"] = None  # torch's default: the kernel size
        return a
    return {}


_POOL_ARGS = {"maxpool": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
              "avgpool": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")}


def shapes_of(gm, input_shape) -> dict[str, tuple[int, ...]]:
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

"""Static cost model: MACs, memory and receptive fields from the IR (no torch).

Reads a `Graph` (node op, attrs, input and output shapes, param/buffer
counts); writes a `CostReport`.  All figures are per sample (batch 1).

MACs follow a *convention*: the rules of one well-known counter, applied to
the network as torchvision would write it (every layer an `nn.Module`:
`nn.ReLU`, `nn.MaxPool2d`, `nn.AdaptiveAvgPool2d`, ...; the residual add a
Python `+`).  docs/counting.md lists every rule side by side with the line of
the package it comes from.  Conventions:

  torchvision  conv / transposed conv / linear multiply-accumulates, bias
               excluded, nothing else (= FlopCounterMode / 2; the "GFLOPS"
               torchvision publishes).  The default.
  torch        torch.utils.flop_counter.FlopCounterMode: 2 x the above (FLOPs).
  fvcore       fvcore.nn.FlopCountAnalysis on a model in eval() mode.
  torchinfo    torchinfo.summary's "Total mult-adds".
  thop         thop.profile's MACs.
  ptflops      ptflops.get_model_complexity_info (pytorch backend) MACs.
  resdsl       torchvision's conv/linear MACs plus one op per element for
               norms (inference scale+shift), activations, scales and bias
               adds, k-1 per element for k-input adds (residual adds are
               counted here), pooling window size per output element.

Activation memory: `activation_elems` is the sum of every op's output
elements (input placeholders included); `saved_elems` counts each tensor
once if training keeps it for backward under these rules: the *input* of
conv/linear/norm/scalar_scale/gelu/silu/elu/leaky_relu/maxpool/upsample(bilinear)
ops is saved, the *output* of relu/sigmoid/tanh/softmax is saved, and
add/concat/scale/avgpool/flatten/crop/identity save nothing (their backward
needs only shapes).  Dropout/drop-path masks are not counted.

Receptive field per spatial dim: size r and jump j (stride in input pixels),
r_out = r_in + (k - 1) * d * j_in and j_out = j_in * s for conv and pooling;
merges take the max over their inputs; global pooling and flatten extend r
to the whole input; transposed conv and upsampling divide the jump.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

from ..ir import Graph, Node

Shape = tuple[int, ...]
CONVENTIONS = ("torchvision", "torch", "fvcore", "torchinfo", "thop", "ptflops", "resdsl")
UNITS = {"torch": "FLOPs"}  # every other convention counts multiply-accumulates
CLASSES = {"conv": "conv/linear", "linear": "conv/linear", "norm": "norm", "act": "activation", "pool": "pooling",
           "merge": "add/concat", "scale": "scale", "reshape": "other", "reg": "other", "shortcut": "other",
           "input": "other"}
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


class CostError(AssertionError):
    """An op without a rule in a pass: a bug in resdsl, not in the user's file."""


# ---------------------------------------------------------------- shared formulas

def _numel(s: Shape) -> int:
    return math.prod(s)


def _conv_macs(n: Node, xs: list[Shape], y: Shape) -> int:
    """Multiply-accumulates of a conv, bias excluded: out positions x C_out x C_in/groups x kernel."""
    a = n.attrs
    return _numel(y[1:]) * y[0] * (xs[0][0] // a["groups"]) * math.prod(a["kernel_size"])


def _tconv_macs(n: Node, xs: list[Shape], y: Shape) -> int:
    """Transposed conv as torch counts it: input positions x C_in x C_out/groups x kernel."""
    a = n.attrs
    return _numel(xs[0][1:]) * xs[0][0] * (y[0] // a["groups"]) * math.prod(a["kernel_size"])


def _linear_macs(n: Node, xs: list[Shape], y: Shape) -> int:
    return xs[0][-1] * y[0]


def _bias(n: Node) -> bool:
    return bool(n.attrs.get("bias"))


def _is_tconv(n: Node) -> bool:
    return n.op.startswith("conv_transpose")


def _core(n: Node, xs: list[Shape], y: Shape) -> int:
    """torchvision's rule: conv / transposed conv / linear without bias, nothing else."""
    if n.family == "conv":
        return _tconv_macs(n, xs, y) if _is_tconv(n) else _conv_macs(n, xs, y)
    if n.op == "linear":
        return _linear_macs(n, xs, y)
    return 0


def _norm_affine(n: Node) -> bool:
    if n.op == "layernorm":
        return bool(n.attrs["elementwise_affine"])
    return bool(n.attrs.get("affine"))


def _spatial_rank(s: Shape) -> int:
    return len(s) - 1


# ---------------------------------------------------------------- conventions: one rule per op family

Rule = Callable[[Node, list[Shape], Shape], int]


def _rule_torchvision(n, xs, y):
    return _core(n, xs, y)


def _rule_torch(n, xs, y):
    return 2 * _core(n, xs, y)


def _rule_fvcore(n, xs, y):
    # fvcore/nn/flop_count.py _DEFAULT_SUPPORTED_OPS and jit_handles.py (eval mode)
    if n.family in ("conv", "linear"):
        return _core(n, xs, y)
    if n.op in ("batchnorm", "ghost_batchnorm"):  # batchnorm_flop_jit, training=False
        return _numel(xs[0]) * (2 if n.attrs["affine"] else 1)
    if n.op in ("groupnorm", "layernorm", "instancenorm"):  # norm_flop_counter: 5 with affine, else 4
        return _numel(xs[0]) * (5 if _norm_affine(n) else 4)
    if n.op == "upsample" and _spatial_rank(xs[0]) == 2:  # only the 2d kernels have handles
        return _numel(y) * (1 if n.attrs["mode"] == "nearest" else 4)
    if n.op in ("adaptive_avgpool", "global_avgpool") and _spatial_rank(xs[0]) == 2:
        return _numel(xs[0])  # aten::adaptive_avg_pool2d: elementwise_flop_counter(1, 0)
    return 0


def _rule_torchinfo(n, xs, y):
    # torchinfo/layer_info.py calculate_macs: per leaf module with a `weight`/`bias` parameter;
    # "Conv" modules: params x output positions; others: params (per sample)
    if n.family == "conv":
        return n.params * _numel(y[1:])
    if n.params and n.op in ("linear", "batchnorm", "ghost_batchnorm", "layernorm", "groupnorm", "instancenorm",
                             "scalar_scale", "scalar_bias"):
        return n.params
    return 0


def _rule_thop(n, xs, y):
    # thop/profile.py register_hooks, thop/vision/basic_hooks.py and calc_func.py
    if n.family == "conv":  # calculate_conv2d_flops: output numel x C_in/groups x kernel, for transposed too
        return _numel(y) * (xs[0][0] // n.attrs["groups"]) * math.prod(n.attrs["kernel_size"])
    if n.op == "linear":
        return xs[0][-1] * y[0]
    if n.op in ("batchnorm", "layernorm", "instancenorm"):  # count_normalization (GroupNorm has no hook)
        return 2 * _numel(xs[0]) * (2 if _norm_affine(n) else 1)
    if n.op == "avgpool":
        return _numel(y)
    if n.op in ("adaptive_avgpool", "global_avgpool"):  # (in/out window + 1) x output numel
        out = y[1:] if n.op == "adaptive_avgpool" else (1,) * _spatial_rank(xs[0])
        window = Fraction(_numel(xs[0][1:]), _numel(out))
        return int((window + 1) * y[0] * _numel(out))
    if n.op == "upsample":
        return _numel(y) * (1 if n.attrs["mode"] == "nearest" else 11)
    if n.op == "softmax":
        f = xs[0][n.attrs["dim"]]
        return _numel(xs[0]) // f * (3 * f - 1)
    return 0


def _rule_ptflops(n, xs, y):
    # ptflops/pytorch_ops.py MODULES_MAPPING (pytorch backend, 0.7.5).  With the default
    # count_functional=True, F.relu/F.elu/F.gelu/F.*pool*/F.interpolate/F.softmax/F.silu are patched
    # too, so a module that calls them (nn.ReLU -> F.relu) is counted by its hook AND by the patch.
    if n.family == "conv":
        macs = _tconv_macs(n, xs, y) if _is_tconv(n) else _conv_macs(n, xs, y)
        return macs + (_numel(y) if _bias(n) else 0)
    if n.op == "linear":  # the F.linear patch is disabled in ptflops
        return xs[0][-1] * y[0] + (y[0] if _bias(n) else 0)
    if n.op in ("batchnorm", "instancenorm", "groupnorm"):  # bn_flops_counter_hook
        return _numel(xs[0]) * (2 if n.attrs["affine"] else 1)
    # ghost_batchnorm: a custom _BatchNorm subclass; hooks are looked up by exact type, so it counts 0
    if n.op == "layernorm":  # nn.LayerNorm has no `affine` attribute: never doubled
        return _numel(xs[0])
    if n.op in ("relu", "elu", "gelu"):  # module hook + functional patch
        return 2 * _numel(y)
    if n.op == "leaky_relu":  # module hook only (F.leaky_relu is not patched)
        return _numel(y)
    if n.op in ("silu", "softmax"):  # functional patch only (no module hook)
        return _numel(y)
    if n.family == "pool":  # pool_flops_counter_hook (input numel) + the F.*pool* patch (input numel)
        return 2 * _numel(xs[0])
    if n.op == "upsample":  # upsample hook (output numel) + F.interpolate patch (output numel)
        return 2 * _numel(y)
    return 0


def _rule_resdsl(n, xs, y):
    macs = _core(n, xs, y)
    if n.family in ("conv", "linear"):
        return macs + (_numel(y) if _bias(n) else 0)
    if n.family in ("norm", "act", "scale"):
        return _numel(y)
    if n.op == "add":
        return (len(xs) - 1) * _numel(y)
    if n.op in ("maxpool", "avgpool"):
        return _numel(y) * math.prod(n.attrs["kernel_size"])
    if n.op in ("adaptive_avgpool", "adaptive_maxpool", "global_avgpool", "global_maxpool"):
        return _numel(xs[0])
    if n.op == "upsample":
        return _numel(y) * (1 if n.attrs["mode"] == "nearest" else 4)
    return 0


RULES: dict[str, Rule] = {"torchvision": _rule_torchvision, "torch": _rule_torch, "fvcore": _rule_fvcore,
                          "torchinfo": _rule_torchinfo, "thop": _rule_thop, "ptflops": _rule_ptflops,
                          "resdsl": _rule_resdsl}

# ops whose input / output autograd keeps for backward (see the module docstring)
SAVES_INPUT = {"conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d", "linear", "batchnorm", "ghost_batchnorm", "layernorm", "groupnorm", "instancenorm",
               "scalar_scale", "gelu", "silu", "elu", "leaky_relu", "maxpool", "adaptive_maxpool", "global_maxpool"}
SAVES_OUTPUT = {"relu", "sigmoid", "tanh", "softmax"}
SAVES_NOTHING = {"input", "add", "concat", "scale", "scalar_bias", "avgpool", "adaptive_avgpool", "global_avgpool",
                 "flatten", "identity", "crop", "zeropad", "dropout", "drop_path", "upsample"}


# ---------------------------------------------------------------- receptive fields


@dataclass(frozen=True)
class Field:
    """Receptive field per spatial dim of the network input: size (pixels) and jump (stride)."""

    size: tuple[int, ...]
    jump: tuple[Fraction, ...]


def _rf(n: Node, xs: list[Shape], y: Shape, ins: list[Field | None]) -> Field | None:
    live = [f for f in ins if f is not None]
    if not live:
        return None
    if n.family == "merge":
        return Field(tuple(max(s) for s in zip(*(f.size for f in live))),
                     tuple(max(j) for j in zip(*(f.jump for f in live))))
    f = live[0]
    a = n.attrs
    if n.family == "conv" and not _is_tconv(n) or n.op in ("maxpool", "avgpool"):
        k, s = a["kernel_size"], a["stride"]
        d = a.get("dilation", (1,) * len(k))
        return Field(tuple(r + (ki - 1) * di * j for r, ki, di, j in zip(f.size, k, d, f.jump)),
                     tuple(j * si for j, si in zip(f.jump, s)))
    if _is_tconv(n):
        k, s, d = a["kernel_size"], a["stride"], a["dilation"]
        # an output position sees at most floor((k-1)*d/s) + 1 input positions
        return Field(tuple(r + ((ki - 1) * di // si) * j for r, ki, si, di, j in zip(f.size, k, s, d, f.jump)),
                     tuple(j / si for j, si in zip(f.jump, s)))
    if n.op in ("global_avgpool", "global_maxpool", "flatten") and len(xs[0]) > 1:
        return Field(tuple(r + (L - 1) * j for r, L, j in zip(f.size, xs[0][1:], f.jump)), f.jump)
    if n.op in ("adaptive_avgpool", "adaptive_maxpool"):
        size, jump = [], []
        for r, L, o, j in zip(f.size, xs[0][1:], y[1:], f.jump):
            win = max(-(-((i + 1) * L) // o) - (i * L) // o for i in range(o))  # torch's adaptive windows
            size.append(r + (win - 1) * j)
            jump.append(j * Fraction(L, o))
        return Field(tuple(size), tuple(jump))
    if n.op == "upsample":
        extra = 0 if a["mode"] == "nearest" else 1  # bilinear reads two neighbours
        return Field(tuple(r + extra * j for r, j in zip(f.size, f.jump)),
                     tuple(j * Fraction(L, M) for j, L, M in zip(f.jump, xs[0][1:], y[1:])))
    if n.op == "zeropad":
        return Field(f.size, tuple(j * s for j, s in zip(f.jump, a["stride"])))
    return f  # pointwise ops, norms (per-position), linear on features, crop


# ---------------------------------------------------------------- report


@dataclass
class LayerCost:
    id: int
    name: str
    op: str
    cls: str
    macs: int
    params: int
    out_elems: int
    saved: bool  # output kept for backward in training
    rf_size: tuple[int, ...] | None
    rf_jump: tuple[float, ...] | None


@dataclass
class CostReport:
    convention: str
    layers: list[LayerCost]
    params: int
    buffers: int
    buffer_bytes: int
    by_class: dict[str, int] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        return UNITS.get(self.convention, "MACs")

    @property
    def total(self) -> int:
        return sum(l.macs for l in self.layers)

    @property
    def activation_elems(self) -> int:
        return sum(l.out_elems for l in self.layers)

    @property
    def saved_elems(self) -> int:
        return sum(l.out_elems for l in self.layers if l.saved)

    def param_bytes(self, dtype: str = "fp32") -> int:
        return self.params * DTYPE_BYTES[dtype]

    def to_json(self) -> dict:
        return {"convention": self.convention, "unit": self.unit, "total": self.total, "by_class": self.by_class,
                "params": self.params,
                "param_bytes": {d: self.param_bytes(d) for d in DTYPE_BYTES},
                "buffer_bytes": self.buffer_bytes,
                "activation_elems_per_sample": self.activation_elems,
                "saved_for_backward_elems_per_sample": self.saved_elems,
                "activation_bytes_per_sample": {d: self.activation_elems * b for d, b in DTYPE_BYTES.items()},
                "layers": [{"name": l.name, "op": l.op, "class": l.cls, "macs": l.macs, "out_elems": l.out_elems,
                            "saved_for_backward": l.saved,
                            "receptive_field": None if l.rf_size is None else list(l.rf_size),
                            "rf_stride": None if l.rf_jump is None else list(l.rf_jump)} for l in self.layers]}


def analyze(graph: Graph, convention: str = "torchvision") -> CostReport:
    """MACs per node under `convention`, memory figures and receptive fields."""
    if convention not in RULES:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    rule = RULES[convention]
    nodes = graph.nodes
    saved = [False] * len(nodes)
    fields_: list[Field | None] = [None] * len(nodes)
    for n in nodes:
        if n.op in SAVES_INPUT:
            for i in n.inputs:
                saved[i] = True
        elif n.op in SAVES_OUTPUT:
            saved[n.id] = True
        elif n.op not in SAVES_NOTHING:
            raise CostError(f"internal error in the cost pass: no saved-tensor rule for op {n.op!r}")
    layers: list[LayerCost] = []
    by_class: dict[str, int] = {}
    buffer_bytes = 0
    for n in nodes:
        xs = [nodes[i].shape for i in n.inputs]
        if n.op not in ("input",) and n.family not in CLASSES:
            raise CostError(f"internal error in the cost pass: no class for op {n.op!r}")
        macs = 0 if n.op == "input" else rule(n, xs, n.shape)
        if n.op == "input":
            fields_[n.id] = Field((1,) * (len(n.shape) - 1), (Fraction(1),) * (len(n.shape) - 1)) if len(n.shape) > 1 else None
        else:
            fields_[n.id] = _rf(n, xs, n.shape, [fields_[i] for i in n.inputs])
        f = fields_[n.id]
        cls = CLASSES[n.family]
        by_class[cls] = by_class.get(cls, 0) + macs
        if n.buffers:  # BN: running mean and var in fp32, num_batches_tracked int64
            buffer_bytes += (n.buffers - 1) * 4 + 8
        layers.append(LayerCost(n.id, n.name, n.op, cls, macs, n.params, _numel(n.shape), saved[n.id],
                                None if f is None else tuple(int(r) if r == int(r) else float(r) for r in f.size),
                                None if f is None else tuple(float(j) for j in f.jump)))
    return CostReport(convention, layers, graph.param_count, graph.buffer_count, buffer_bytes, by_class)

"""Text and colour for diagram nodes: "3×3 conv, 64, /2", "36.9k params", "64×56×56".

Reads IR `Node`s (op, attrs, shape, params) and the op table's families;
writes nothing.  `describe` dispatches on the op name through `RULES`; an op
without a rule is an internal error naming this pass, so a new op in
`ops.OPS` cannot silently render as something else.
"""
from __future__ import annotations

from typing import Callable, Mapping

from .. import ops
from ..ir import Node

# One colour per op family (fill colours, readable in print and for most colour-blind readers:
# blue / orange / green / purple / red differ in lightness as well as hue).
FAMILIES: dict[str, str] = {  # display family -> fill colour
    "conv": "#9ecae1",
    "norm": "#fdd49e",
    "activation": "#c7e9c0",
    "pool": "#dadaeb",
    "linear": "#fcae91",
    "merge": "#ffffff",
    "other": "#e5e5e5",
    "io": "#f7f7f7",
}
# ops.OPS families -> display families
_FAMILY_OF: dict[str, str] = {
    "input": "io", "conv": "conv", "linear": "linear", "norm": "norm", "act": "activation", "pool": "pool",
    "merge": "merge", "reshape": "other", "reg": "other", "scale": "other", "shortcut": "other",
}


def family(op: str) -> str:
    """The display family (legend entry) of an op."""
    fam = ops.OPS[op].family
    if fam not in _FAMILY_OF:
        raise RuntimeError(f"internal error in render: op family {fam!r} of op {op!r} has no colour")
    return _FAMILY_OF[fam]


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape)


def fmt_count(n: int) -> str:
    """36864 -> '36.9k', 2359296 -> '2.36M', 512 -> '512'."""
    if n < 1000:
        return str(n)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            text = f"{v:.3g}" if v < 1000 else f"{v:.0f}"
            return text + suffix
    return str(n)  # unreachable


def fmt_params(n: int) -> str:
    return f"{fmt_count(n)} params" if n else ""


def _kernel(k) -> str:
    k = tuple(k) if isinstance(k, (tuple, list)) else (k,)
    return "×".join(str(v) for v in k)


def _uniform(v) -> object:
    """(2, 2) -> 2; (1, 2) stays."""
    if isinstance(v, (tuple, list)) and v and all(x == v[0] for x in v):
        return v[0]
    return v


def _stride_suffix(a: Mapping[str, object], key: str = "stride", sign: str = "/") -> str:
    s = _uniform(a.get(key, 1))
    if s in (1, None):
        return ""
    return f", {sign}{_kernel(s) if isinstance(s, tuple) else s}"


def _conv(n: Node) -> str:
    a = n.attrs
    text = f"{_kernel(a['kernel_size'])} conv, {a['out_channels']}{_stride_suffix(a)}"
    if a.get("groups", 1) != 1:
        text += f", g={a['groups']}"
    d = _uniform(a.get("dilation", 1))
    if d != 1:
        text += f", d={d}"
    return text


def _tconv(n: Node) -> str:
    a = n.attrs
    return f"{_kernel(a['kernel_size'])} up-conv, {a['out_channels']}{_stride_suffix(a, sign='×')}"


def _pool(kind: str) -> Callable[[Node], str]:
    def rule(n: Node) -> str:
        a = n.attrs
        stride = a.get("stride") or a["kernel_size"]
        return f"{_kernel(a['kernel_size'])} {kind} pool{_stride_suffix({'stride': stride})}"
    return rule


def _adaptive(kind: str) -> Callable[[Node], str]:
    def rule(n: Node) -> str:
        return f"adaptive {kind} pool → {_kernel(n.shape[1:]) or '1'}"
    return rule


def _upsample(n: Node) -> str:
    a = n.attrs
    if a.get("scale_factor") is not None:
        f = _uniform(a["scale_factor"])
        how = f"×{int(f) if isinstance(f, float) and f.is_integer() else f}"
    else:
        how = f"→ {fmt_shape(n.shape[1:])}"
    return f"upsample {how} ({a.get('mode', 'nearest')})"


def _const(text: str) -> Callable[[Node], str]:
    return lambda n: text


def _fmt_num(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


RULES: dict[str, Callable[[Node], str]] = {
    "input": _const("input"),
    "linear": lambda n: f"fc, {n.attrs['out_features']}",
    "maxpool": _pool("max"),
    "avgpool": _pool("avg"),
    "adaptive_avgpool": _adaptive("avg"),
    "adaptive_maxpool": _adaptive("max"),
    "global_avgpool": _const("global avg pool"),
    "global_maxpool": _const("global max pool"),
    "upsample": _upsample,
    "flatten": _const("flatten"),
    "identity": _const("identity"),
    "dropout": lambda n: f"dropout {_fmt_num(n.attrs.get('p', 0.5))}",
    "drop_path": lambda n: f"drop path {_fmt_num(n.attrs.get('p', 0.0))}",
    "relu": _const("ReLU"),
    "gelu": _const("GELU"),
    "silu": _const("SiLU"),
    "sigmoid": _const("sigmoid"),
    "tanh": _const("tanh"),
    "leaky_relu": lambda n: f"leaky ReLU {_fmt_num(n.attrs.get('negative_slope', 0.01))}",
    "elu": _const("ELU"),
    "softmax": _const("softmax"),
    "batchnorm": _const("BN"),
    "ghost_batchnorm": _const("ghost BN"),
    "layernorm": _const("LN"),
    "groupnorm": lambda n: f"GN, {n.attrs['num_groups']} groups",
    "instancenorm": _const("IN"),
    "scale": lambda n: f"× {_fmt_num(n.attrs['value'])}",
    "scalar_scale": _const("× α (learned)"),
    "scalar_bias": _const("+ b (learned)"),
    "add": _const("+"),
    "concat": _const("C"),
    "crop": lambda n: f"crop → {fmt_shape(n.shape[1:])}",
    "zeropad": lambda n: f"zero-pad, {n.attrs['out_channels']}{_stride_suffix(n.attrs)}",
}
for _name in ("conv", "conv1d", "conv2d", "conv3d"):
    RULES[_name] = _conv
for _name in ("conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
    RULES[_name] = _tconv


def describe(n: Node) -> str:
    """Short paper-style text for one op, e.g. '3×3 conv, 128, /2'."""
    rule = RULES.get(n.op)
    if rule is None:
        raise RuntimeError(f"internal error in render: no label rule for op {n.op!r}")
    return rule(n)


def html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")

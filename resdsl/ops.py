"""The op table: every operation the IR may contain, in one registry.

For each op kind it says which arguments it takes (names and order as in
torch's keyword arguments), how to validate them, the output shape for given
input shapes (without the batch dimension), and how many parameters and
buffers the layer owns -- exactly as the matching `torch.nn` module would.

Shape rules raise `ShapeProblem`; the elaborator turns it into a located
diagnostic (pointing at the offending argument when `arg` is set).
Later passes (costs, lowering, rendering) dispatch on `OpSpec.name` and must
raise an internal error for an op they have no rule for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

Shape = tuple[int, ...]
REQUIRED = object()


class ShapeProblem(Exception):
    def __init__(self, code: str, message: str, hint: str | None = None, arg: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint, self.arg = code, message, hint, arg


class ArgProblem(ShapeProblem):
    def __init__(self, message: str, hint: str | None = None, arg: str | None = None):
        super().__init__("E014", message, hint, arg)


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # int, posint, nonneg, float, prob, bool, ints, padding, size, choice, tensor, str
    default: object = REQUIRED
    choices: tuple = ()
    positional: bool = True


@dataclass(frozen=True)
class OpSpec:
    name: str
    family: str  # input conv linear norm act pool merge reshape reg scale shortcut
    params: tuple[Param, ...]
    infer: Callable[[dict, list[Shape]], Shape]
    count: Callable[[dict, list[Shape], Shape], tuple[int, int]] = lambda a, xs, y: (0, 0)
    arity: tuple[int, int] = (1, 1)  # min, max tensor inputs (max -1: any)
    doc: str = ""
    user: bool = True  # callable from .res files by this name
    weighted: bool = False  # conv/linear: counts as a "layer" in path lengths


OPS: dict[str, OpSpec] = {}
ALIASES: dict[str, str] = {}


def register(spec: OpSpec, *aliases: str) -> OpSpec:
    assert spec.name not in OPS, spec.name
    OPS[spec.name] = spec
    for a in aliases:
        ALIASES[a] = spec.name
    return spec


def lookup(name: str) -> OpSpec | None:
    return OPS.get(ALIASES.get(name, name))


# ----------------------------------------------------------------- helpers

INIT_WEIGHTS = ("default", "he", "kaiming", "xavier", "glorot", "zeros", "ones", "normal")
INIT_NORM = ("ones", "zeros")


def _spatial(x: Shape, op: str, rank: int | None = None, min_rank: int = 2) -> int:
    """Number of spatial dims of a channels-first feature shape."""
    if rank is not None and len(x) != rank:
        raise ShapeProblem("E033", f"{op} expects an input of rank {rank} ([C{', L' * (rank - 1)}...]), got {list(x)}",
                           hint=f"use the {len(x) - 1}d variant or reshape first" if len(x) >= 2 else "add `unflatten` or use a linear layer")
    if len(x) < min_rank or len(x) > 4:
        raise ShapeProblem("E033", f"{op} expects a [C, L], [C, H, W] or [C, D, H, W] input, got {list(x)}",
                           hint="convolutions and pooling need a channel and at least one spatial dimension")
    return len(x) - 1


def _tuple(v, n: int, name: str) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ArgProblem(f"`{name}` has {len(v)} entries but the input has {n} spatial dimensions", arg=name,
                             hint=f"give one value or {n} values")
        return tuple(v)
    return (v,) * n


def _conv_len(L: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    eff = d * (k - 1) + 1
    num = L + 2 * p - eff
    if num < 0:
        return 0
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= L + p:  # last window must start inside the input (torch rule)
        out -= 1
    return out


def _resolve_padding(a: dict, n: int, k: tuple, d: tuple, s: tuple, op: str) -> tuple[int, ...] | str:
    p = a["padding"]
    if p == "valid":
        return (0,) * n
    if p == "same":
        if any(v != 1 for v in s):
            raise ArgProblem("padding=\"same\" is not supported for strided convolutions (as in torch)",
                             arg="padding", hint="give the padding explicitly, e.g. padding=kernel_size // 2")
        return "same"
    return _tuple(p, n, "padding")


def _check_spatial(op: str, x: Shape, out: tuple[int, ...], k, arg: str = "kernel_size") -> None:
    for i, o in enumerate(out):
        if o <= 0:
            raise ShapeProblem("E034", f"{op}: kernel {list(k)} does not fit the input {list(x)} "
                               f"(spatial dim {i + 1} would have size {o})",
                               hint="use a smaller kernel or stride, add padding, or feed a larger input", arg=arg)


# ----------------------------------------------------------------- input

register(OpSpec("input", "input", (), infer=lambda a, xs: a["shape"], arity=(0, 0), user=False,
                doc="a network input"))

# ----------------------------------------------------------------- conv

_CONV_PARAMS = (
    Param("out_channels", "posint"),
    Param("kernel_size", "ints"),
    Param("stride", "ints", 1),
    Param("padding", "padding", 0),
    Param("dilation", "ints", 1),
    Param("groups", "posint", 1),
    Param("bias", "bool", True),
    Param("init", "choice", "default", INIT_WEIGHTS, positional=False),
    Param("init_gain", "float", 1.0, positional=False),
)


def _check_positive(a: dict, fields: tuple[str, ...], minimum: int = 1) -> None:
    for f in fields:
        if any(not isinstance(i, int) or i < minimum for i in a[f]):
            what = "positive" if minimum == 1 else "non-negative"
            raise ArgProblem(f"`{f}` must be {what}, got {list(a[f])}", arg=f)


def _check_groups(name: str, x: Shape, a: dict) -> None:
    g = a["groups"]
    for what, c in (("input", x[0]), ("output", a["out_channels"])):
        if c % g:
            raise ShapeProblem("E035", f"{name}: {what} channels {c} are not divisible by groups={g}", arg="groups",
                               hint=f"choose groups dividing both {x[0]} and {a['out_channels']}")


def _conv_infer(rank: int | None, name: str):
    def infer(a: dict, xs: list[Shape]) -> Shape:
        (x,) = xs
        n = _spatial(x, name, rank)
        k, s, d = (_tuple(a[f], n, f) for f in ("kernel_size", "stride", "dilation"))
        a["kernel_size"], a["stride"], a["dilation"] = k, s, d
        _check_positive(a, ("kernel_size", "stride", "dilation"))
        p = _resolve_padding(a, n, k, d, s, name)
        a["padding"] = p
        _check_groups(name, x, a)
        if p == "same":
            return (a["out_channels"],) + x[1:]
        if any(i < 0 for i in p):
            raise ArgProblem(f"`padding` must be non-negative, got {list(p)}", arg="padding")
        out = tuple(_conv_len(L, *kk) for L, kk in zip(x[1:], zip(k, s, p, d)))
        _check_spatial(name, x, out, k)
        return (a["out_channels"],) + out

    return infer


def _conv_count(a: dict, xs: list[Shape], y: Shape) -> tuple[int, int]:
    w = a["out_channels"] * (xs[0][0] // a["groups"]) * math.prod(a["kernel_size"])
    return w + (a["out_channels"] if a["bias"] else 0), 0


register(OpSpec("conv", "conv", _CONV_PARAMS, _conv_infer(None, "conv"), _conv_count, weighted=True,
                doc="convolution; 1d/2d/3d follows the input's rank"))
for _r in (1, 2, 3):
    register(OpSpec(f"conv{_r}d", "conv", _CONV_PARAMS, _conv_infer(_r + 1, f"conv{_r}d"), _conv_count,
                    weighted=True, doc=f"{_r}d convolution"))

_TCONV_PARAMS = (
    Param("out_channels", "posint"),
    Param("kernel_size", "ints"),
    Param("stride", "ints", 1),
    Param("padding", "ints", 0),
    Param("output_padding", "ints", 0),
    Param("groups", "posint", 1),
    Param("bias", "bool", True),
    Param("dilation", "ints", 1),
    Param("init", "choice", "default", INIT_WEIGHTS, positional=False),
    Param("init_gain", "float", 1.0, positional=False),
)


def _tconv_infer(rank: int | None, name: str):
    def infer(a: dict, xs: list[Shape]) -> Shape:
        (x,) = xs
        n = _spatial(x, name, rank)
        for f in ("kernel_size", "stride", "padding", "output_padding", "dilation"):
            a[f] = _tuple(a[f], n, f)
        k, s, p, op, d = (a[f] for f in ("kernel_size", "stride", "padding", "output_padding", "dilation"))
        _check_positive(a, ("kernel_size", "stride", "dilation"))
        _check_positive(a, ("padding", "output_padding"), minimum=0)
        if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
            raise ArgProblem("`output_padding` must be smaller than stride or dilation (as in torch)", arg="output_padding")
        _check_groups(name, x, a)
        out = tuple((L - 1) * si - 2 * pi + di * (ki - 1) + oi + 1 for L, ki, si, pi, oi, di in zip(x[1:], k, s, p, op, d))
        _check_spatial(name, x, out, k, "padding")
        return (a["out_channels"],) + out

    return infer


def _tconv_count(a: dict, xs: list[Shape], y: Shape) -> tuple[int, int]:
    w = xs[0][0] * (a["out_channels"] // a["groups"]) * math.prod(a["kernel_size"])
    return w + (a["out_channels"] if a["bias"] else 0), 0


register(OpSpec("conv_transpose", "conv", _TCONV_PARAMS, _tconv_infer(None, "conv_transpose"), _tconv_count,
                weighted=True, doc="transposed convolution"))
for _r in (1, 2, 3):
    register(OpSpec(f"conv_transpose{_r}d", "conv", _TCONV_PARAMS, _tconv_infer(_r + 1, f"conv_transpose{_r}d"),
                    _tconv_count, weighted=True, doc=f"{_r}d transposed convolution"))

# ----------------------------------------------------------------- linear


def _linear_infer(a: dict, xs: list[Shape]) -> Shape:
    (x,) = xs
    if len(x) == 0:
        raise ShapeProblem("E033", "linear needs at least one feature dimension")
    if len(x) > 1:
        raise ShapeProblem("E033", f"linear expects a flat [features] input, got {list(x)}",
                           hint="add `flatten` or `global_avgpool` before the linear layer")
    return (a["out_features"],)


register(OpSpec(
    "linear", "linear",
    (Param("out_features", "posint"), Param("bias", "bool", True),
     Param("init", "choice", "default", INIT_WEIGHTS, positional=False),
     Param("init_gain", "float", 1.0, positional=False)),
    _linear_infer,
    lambda a, xs, y: (xs[0][-1] * a["out_features"] + (a["out_features"] if a["bias"] else 0), 0),
    weighted=True, doc="fully connected layer on a [features] input"))

# ----------------------------------------------------------------- pooling


def _pool_infer(kind: str):
    def infer(a: dict, xs: list[Shape]) -> Shape:
        (x,) = xs
        n = _spatial(x, kind)
        a["kernel_size"] = k = _tuple(a["kernel_size"], n, "kernel_size")
        a["stride"] = s = _tuple(k if a["stride"] is None else a["stride"], n, "stride")
        a["padding"] = p = _tuple(a["padding"], n, "padding")
        d = _tuple(a.get("dilation", 1), n, "dilation")
        if "dilation" in a:
            a["dilation"] = d
        for f, v in (("kernel_size", k), ("stride", s)):
            if any(i < 1 for i in v):
                raise ArgProblem(f"`{f}` must be positive, got {list(v)}", arg=f)
        for pi, ki, di in zip(p, k, d):
            if pi < 0 or pi > (di * (ki - 1) + 1) // 2:
                raise ArgProblem(f"`padding` must be between 0 and half the kernel size, got {list(p)} (as in torch)",
                                 arg="padding")
        out = tuple(_conv_len(L, ki, si, pi, di, a["ceil_mode"]) for L, ki, si, pi, di in zip(x[1:], k, s, p, d))
        _check_spatial(kind, x, out, k)
        return (x[0],) + out

    return infer


register(OpSpec("maxpool", "pool",
                (Param("kernel_size", "ints"), Param("stride", "ints", None), Param("padding", "ints", 0),
                 Param("dilation", "ints", 1), Param("ceil_mode", "bool", False)),
                _pool_infer("maxpool"), doc="max pooling"))
register(OpSpec("avgpool", "pool",
                (Param("kernel_size", "ints"), Param("stride", "ints", None), Param("padding", "ints", 0),
                 Param("ceil_mode", "bool", False), Param("count_include_pad", "bool", True)),
                _pool_infer("avgpool"), doc="average pooling"))


def _adaptive_infer(a: dict, xs: list[Shape]) -> Shape:
    (x,) = xs
    n = _spatial(x, "adaptive pooling")
    size = a["output_size"]
    size = _tuple(size, n, "output_size")
    out = tuple(L if s is None else s for L, s in zip(x[1:], size))
    if any(o < 1 for o in out):
        raise ArgProblem(f"`output_size` must be positive, got {list(size)}", arg="output_size")
    a["output_size"] = size
    return (x[0],) + out


for _name in ("adaptive_avgpool", "adaptive_maxpool"):
    register(OpSpec(_name, "pool", (Param("output_size", "size"),), _adaptive_infer, doc="adaptive pooling"))


def _global_infer(a: dict, xs: list[Shape]) -> Shape:
    (x,) = xs
    _spatial(x, "global pooling")
    return (x[0],)


register(OpSpec("global_avgpool", "pool", (), _global_infer, doc="mean over all spatial positions -> [C]"))
register(OpSpec("global_maxpool", "pool", (), _global_infer, doc="max over all spatial positions -> [C]"))


def _upsample_infer(a: dict, xs: list[Shape]) -> Shape:
    (x,) = xs
    n = _spatial(x, "upsample")
    if (a["scale_factor"] is None) == (a["size"] is None):
        raise ArgProblem("upsample needs exactly one of `scale_factor` and `size`",
                         hint="e.g. upsample(scale_factor=2) or upsample(size=[56, 56])")
    if a["mode"] == "bilinear" and n != 2:
        raise ArgProblem(f"mode=\"bilinear\" needs a [C, H, W] input, got {list(x)}", arg="mode")
    if a["size"] is not None:
        out = _tuple(a["size"], n, "size")
        a["size"] = out
    else:
        sf = _tuple(a["scale_factor"], n, "scale_factor")
        if any(f <= 0 for f in sf):
            raise ArgProblem("`scale_factor` must be positive", arg="scale_factor")
        a["scale_factor"] = tuple(float(f) for f in sf)
        out = tuple(math.floor(L * f) for L, f in zip(x[1:], sf))  # floor of a float is an int
    if any(o < 1 for o in out):
        raise ShapeProblem("E036", f"upsample output would be {list(out)}", arg="size")
    return (x[0],) + out


register(OpSpec("upsample", "reshape",
                (Param("scale_factor", "float_or_list", None), Param("size", "size", None),
                 Param("mode", "choice", "nearest", ("nearest", "bilinear")),
                 Param("align_corners", "bool", None, positional=False)),
                _upsample_infer, doc="nearest or bilinear upsampling"))

# ----------------------------------------------------------------- reshape / regularisation / identity

register(OpSpec("flatten", "reshape", (), lambda a, xs: (math.prod(xs[0]),), doc="flatten all feature dims"))
register(OpSpec("identity", "reshape", (), lambda a, xs: xs[0], doc="no-op"))


def _dropout_infer(a: dict, xs: list[Shape]) -> Shape:
    if not 0 <= a["p"] <= 1:
        raise ArgProblem(f"dropout probability must be in [0, 1], got {a['p']}", arg="p")
    return xs[0]


register(OpSpec("dropout", "reg", (Param("p", "float", 0.5),), _dropout_infer, doc="dropout"))


def _drop_path_infer(a: dict, xs: list[Shape]) -> Shape:
    if not 0 <= a["p"] < 1:
        raise ArgProblem(f"drop-path probability must be in [0, 1), got {a['p']}", arg="p")
    return xs[0]


register(OpSpec("drop_path", "reg", (Param("p", "float"),), _drop_path_infer,
                doc="stochastic depth: drop the whole branch per sample with probability p"))

# ----------------------------------------------------------------- activations

_ACTS = {
    "relu": (), "gelu": (), "silu": (), "sigmoid": (), "tanh": (),
    "leaky_relu": (Param("negative_slope", "float", 0.01),),
    "elu": (Param("alpha", "float", 1.0),),
    "softmax": (Param("dim", "int", 0),),
}
for _name, _params in _ACTS.items():
    register(OpSpec(_name, "act", _params, lambda a, xs: xs[0], doc=f"{_name} activation"))
ACTIVATIONS = tuple(_ACTS)

# ----------------------------------------------------------------- norms


def _channels(x: Shape, op: str) -> int:
    if not x:
        raise ShapeProblem("E033", f"{op} needs a channel dimension")
    return x[0]


def _bn_infer(a: dict, xs: list[Shape]) -> Shape:
    (x,) = xs
    if len(x) > 4:
        raise ShapeProblem("E033", f"batchnorm supports [C], [C, L], [C, H, W] and [C, D, H, W], got {list(x)}")
    if "virtual_batch_size" in a and a["virtual_batch_size"] < 1:
        raise ArgProblem("`virtual_batch_size` must be positive", arg="virtual_batch_size")
    _channels(x, "batchnorm")
    return x


def _bn_count(a: dict, xs: list[Shape], y: Shape) -> tuple[int, int]:
    c = xs[0][0]
    return (2 * c if a["affine"] else 0), (2 * c + 1 if a["track_running_stats"] else 0)


_BN = (Param("eps", "float", 1e-5), Param("momentum", "float", 0.1), Param("affine", "bool", True),
       Param("track_running_stats", "bool", True), Param("init", "choice", "ones", INIT_NORM, positional=False))
register(OpSpec("batchnorm", "norm", _BN, _bn_infer, _bn_count, doc="batch normalization"))
register(OpSpec("ghost_batchnorm", "norm", (Param("virtual_batch_size", "posint"),) + _BN, _bn_infer, _bn_count,
                doc="ghost batch normalization: statistics over virtual batches of the given size"))


def _ln_infer(a: dict, xs: list[Shape]) -> Shape:
    (x,) = xs
    dims = len(x) if a["dims"] is None else a["dims"]
    if not 1 <= dims <= len(x):
        raise ArgProblem(f"`dims` must be between 1 and {len(x)} for input {list(x)}", arg="dims")
    a["normalized_shape"] = tuple(x[len(x) - dims:])
    return x


register(OpSpec("layernorm", "norm",
                (Param("dims", "posint", None), Param("eps", "float", 1e-5),
                 Param("elementwise_affine", "bool", True), Param("bias", "bool", True),
                 Param("init", "choice", "ones", INIT_NORM, positional=False)),
                _ln_infer,
                lambda a, xs, y: ((1 + a["bias"]) * math.prod(a["normalized_shape"]) if a["elementwise_affine"] else 0, 0),
                doc="layer normalization over the last `dims` feature dims (default: all)"))


def _gn_infer(a: dict, xs: list[Shape]) -> Shape:
    (x,) = xs
    c = _channels(x, "groupnorm")
    if c % a["num_groups"]:
        raise ShapeProblem("E035", f"groupnorm: {c} channels are not divisible by num_groups={a['num_groups']}",
                           arg="num_groups", hint=f"choose num_groups dividing {c}")
    return x


register(OpSpec("groupnorm", "norm",
                (Param("num_groups", "posint"), Param("eps", "float", 1e-5), Param("affine", "bool", True),
                 Param("init", "choice", "ones", INIT_NORM, positional=False)),
                _gn_infer, lambda a, xs, y: (2 * xs[0][0] if a["affine"] else 0, 0), doc="group normalization"))


def _in_infer(a: dict, xs: list[Shape]) -> Shape:
    (x,) = xs
    if not 2 <= len(x) <= 4:
        raise ShapeProblem("E033", f"instancenorm needs [C, L], [C, H, W] or [C, D, H, W], got {list(x)}")
    return x


register(OpSpec("instancenorm", "norm",
                (Param("eps", "float", 1e-5), Param("momentum", "float", 0.1), Param("affine", "bool", False),
                 Param("track_running_stats", "bool", False),
                 Param("init", "choice", "ones", INIT_NORM, positional=False)),
                _in_infer,
                lambda a, xs, y: (2 * xs[0][0] if a["affine"] else 0, 2 * xs[0][0] + 1 if a["track_running_stats"] else 0),
                doc="instance normalization"))

NORMS = ("batchnorm", "ghost_batchnorm", "layernorm", "groupnorm", "instancenorm")

# ----------------------------------------------------------------- scalars (SkipInit, Fixup, scaled branches)

register(OpSpec("scale", "scale", (Param("value", "float"),), lambda a, xs: xs[0],
                doc="multiply by a constant (e.g. 1/sqrt(2))"))
register(OpSpec("scalar_scale", "scale", (Param("init", "float", 1.0),), lambda a, xs: xs[0],
                lambda a, xs, y: (1, 0), doc="multiply by one learnable scalar (SkipInit: init=0)"))
register(OpSpec("scalar_bias", "scale", (Param("init", "float", 0.0),), lambda a, xs: xs[0],
                lambda a, xs, y: (1, 0), doc="add one learnable scalar (Fixup's biases)"))

# ----------------------------------------------------------------- merges


def _add_infer(a: dict, xs: list[Shape]) -> Shape:
    first = xs[0]
    for other in xs[1:]:
        if other != first:
            raise ShapeProblem("E032", f"cannot add tensors of shapes {list(first)} and {list(other)}",
                               hint="resdsl never broadcasts: make the shapes equal (a projection, pooling or crop)")
    return first


def _crop_to(xs: list[Shape]) -> tuple[int, ...]:
    return tuple(min(x[i] for x in xs) for i in range(1, len(xs[0])))


def _concat_infer(a: dict, xs: list[Shape]) -> Shape:
    ranks = {len(x) for x in xs}
    if len(ranks) != 1:
        raise ShapeProblem("E031", f"cannot concatenate tensors of different ranks: {[list(x) for x in xs]}")
    spatial = _crop_to(xs) if a.get("crop") else xs[0][1:]
    if not a.get("crop"):
        for x in xs[1:]:
            if x[1:] != spatial:
                raise ShapeProblem("E031", f"cannot concatenate {list(xs[0])} and {list(x)} along channels: "
                                   f"spatial sizes differ", hint="use concat(..., crop=true) to center-crop to the smaller size")
    return (sum(x[0] for x in xs),) + tuple(spatial)


register(OpSpec("add", "merge", (Param("tensors", "tensors"),), _add_infer, arity=(2, -1),
                doc="elementwise sum of the current tensor and the named ones"))
register(OpSpec("concat", "merge", (Param("tensors", "tensors"), Param("crop", "bool", False, positional=False)),
                _concat_infer, arity=(2, -1), doc="concatenate along channels, optionally center-cropping"))


def _crop_infer(a: dict, xs: list[Shape]) -> Shape:
    (x,) = xs
    n = _spatial(x, "crop")
    size = _tuple(a["size"], n, "size")
    if any(s < 1 or s > L for s, L in zip(size, x[1:])):
        raise ArgProblem(f"crop size {list(size)} must be between 1 and the input's {list(x[1:])}", arg="size")
    a["size"] = size
    return (x[0],) + size


register(OpSpec("crop", "reshape", (Param("size", "ints"),), _crop_infer, doc="center crop to a spatial size"))


def _zeropad_infer(a: dict, xs: list[Shape]) -> Shape:
    (x,) = xs
    n = len(x) - 1
    s = a["stride"] = _tuple(a["stride"], n, "stride")
    if a["out_channels"] < x[0]:
        raise ArgProblem(f"zero-pad shortcut cannot reduce channels {x[0]} to {a['out_channels']}", arg="out_channels")
    return (a["out_channels"],) + tuple(-(-L // si) for L, si in zip(x[1:], s))


register(OpSpec("zeropad", "shortcut", (Param("out_channels", "posint"), Param("stride", "ints", 1)),
                _zeropad_infer, doc="option-A shortcut: subsample by stride, append zero channels"))

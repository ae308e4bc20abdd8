"""Convolutions: conv, conv1d/2d/3d and their transposed forms (torch.nn.Conv*d / ConvTranspose*d)."""
from __future__ import annotations

import math

from . import rounding
from .base import (ArgProblem, Family, Inferred, Module, Param, Saves, ShapeProblem, Spatial, OpDef, as_tuple,
                   costs, kernel_text, nonneg, numel, pos, register, spatial, stride_suffix, uniform)

INIT_WEIGHTS = ("default", "he", "kaiming", "xavier", "glorot", "zeros", "ones", "normal")
INIT_PARAMS = (Param("init", "choice", "default", INIT_WEIGHTS, positional=False),
               Param("init_gain", "float", 1.0, positional=False))


def conv_len(L: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    """Output length of a conv/pooling window along one dim, exactly as torch's pooling_output_shape
    (floor division; in ceil mode a window may overhang the input, but must start inside it)."""
    out = (L + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= L + p:
        out -= 1
    return out


def check_fits(op: str, x, out, k, arg: str = "kernel_size",
               hint: str = "use a smaller kernel or stride, add padding, or feed a larger input") -> None:
    for i, o in enumerate(out):
        if o <= 0:
            raise ShapeProblem("E034", f"{op}: kernel {list(k)} does not fit the input {list(x)} "
                               f"(spatial dim {i + 1} would have size {o})", hint=hint, arg=arg)


def _check_groups(name: str, x, a) -> None:
    g = a["groups"]
    for what, c in (("input", x[0]), ("output", a["out_channels"])):
        if c % g:
            raise ShapeProblem("E035", f"{name}: {what} channels {c} are not divisible by groups={g}", arg="groups",
                               hint=f"choose groups dividing both {x[0]} and {a['out_channels']}")


def weight_init(a, keeps_default: bool = False) -> dict:
    """The init facet of a conv/linear lowering.  init_weight replaces the weight and zeroes the bias, except
    where `keeps_default` (linear's "default" init is torch's own): then the module's default init must run."""
    return dict(init="init_weight({m}, {how}, {gain})",
                init_args=(("how", str(a["init"])), ("gain", float(a["init_gain"]))),
                complete=not (keeps_default and a["init"] == "default"))


# ----------------------------------------------------------------- conv

CONV_PARAMS = (
    pos("out_channels", "posint"),
    pos("kernel_size"),
    pos("stride", default=1),
    Param("padding", "padding", 0, lo=0),
    pos("dilation", default=1),
    pos("groups", "posint", 1),
    Param("bias", "bool", True),
) + INIT_PARAMS


def _conv_infer(rank: int | None, name: str):
    def infer(a, xs) -> Inferred:
        (x,) = xs
        n = spatial(x, name, rank)
        k, s, d = as_tuple(a["kernel_size"], n, "kernel_size"), as_tuple(a["stride"], n, "stride"), \
            as_tuple(a["dilation"], n, "dilation")
        p = a["padding"]
        if p == "valid":
            p = (0,) * n
        elif p == "same":
            if any(v != 1 for v in s):
                raise ArgProblem("padding=\"same\" is not supported for strided convolutions (as in torch)",
                                 arg="padding", hint="give the padding explicitly, e.g. padding=kernel_size // 2")
        else:
            p = as_tuple(p, n, "padding")
        _check_groups(name, x, a)
        derived = {"kernel_size": k, "stride": s, "dilation": d, "padding": p}
        if p == "same":
            return Inferred((a["out_channels"],) + x[1:], derived)
        out = tuple([conv_len(L, kk, ss, pp, dd) for L, kk, ss, pp, dd in zip(x[1:], k, s, p, d)])
        check_fits(name, x, out, k)
        return Inferred((a["out_channels"],) + out, derived)

    return infer


def _conv_count(a, xs, y) -> tuple[int, int]:
    w = a["out_channels"] * (xs[0][0] // a["groups"]) * math.prod(a["kernel_size"])
    return w + (a["out_channels"] if a["bias"] else 0), 0


def _conv_macs(a, xs, y, p) -> int:
    """out positions x C_out x C_in/groups x kernel, bias excluded."""
    return numel(y[1:]) * y[0] * (xs[0][0] // a["groups"]) * math.prod(a["kernel_size"])


def _tconv_macs(a, xs, y, p) -> int:
    """Transposed conv as torch counts it: input positions x C_in x C_out/groups x kernel."""
    return numel(xs[0][1:]) * xs[0][0] * (y[0] // a["groups"]) * math.prod(a["kernel_size"])


def _plus_bias(core):
    return lambda a, xs, y, p: core(a, xs, y, p) + (numel(y) if a["bias"] else 0)


def _conv_costs(core):
    return costs(
        core, fvcore=core,
        torchinfo=lambda a, xs, y, p: p * numel(y[1:]),  # "Conv" modules: params x output positions
        # thop calculate_conv2d_flops: output numel x C_in/groups x kernel, for transposed convs too
        thop=lambda a, xs, y, p: numel(y) * (xs[0][0] // a["groups"]) * math.prod(a["kernel_size"]),
        ptflops=_plus_bias(core), resdsl=_plus_bias(core))


def _conv_lower(a, xs, y) -> Module:
    x = xs[0]
    pad = "same" if a["padding"] == "same" else tuple(a["padding"])
    return Module(f"nn.Conv{len(x) - 1}d", (x[0], a["out_channels"]),
                  (("kernel_size", tuple(a["kernel_size"])), ("stride", tuple(a["stride"])), ("padding", pad),
                   ("dilation", tuple(a["dilation"])), ("groups", a["groups"]), ("bias", a["bias"])),
                  **weight_init(a))


def _conv_label(a, y) -> str:
    text = f"{kernel_text(a['kernel_size'])} conv, {a['out_channels']}{stride_suffix(a)}"
    if a.get("groups", 1) != 1:
        text += f", g={a['groups']}"
    d = uniform(a.get("dilation", 1))
    if d != 1:
        text += f", d={d}"
    return text


def _conv(name: str, rank: int | None, doc: str) -> OpDef:
    return OpDef(name, Family.CONV, CONV_PARAMS, _conv_infer(rank, name), _conv_count, _conv_costs(_conv_macs),
                 Saves.INPUT, Spatial.WINDOW, _conv_lower, _conv_label, doc,
                 derived=("kernel_size", "stride", "dilation", "padding"), weighted=True, fresh_output=True,
                 rounding=rounding.window)


register(_conv("conv", None, "convolution; 1d/2d/3d follows the input's rank"))
for _r in (1, 2, 3):
    register(_conv(f"conv{_r}d", _r + 1, f"{_r}d convolution"))

# ----------------------------------------------------------------- transposed conv

TCONV_PARAMS = (
    pos("out_channels", "posint"),
    pos("kernel_size"),
    pos("stride", default=1),
    nonneg("padding", default=0),
    nonneg("output_padding", default=0),
    pos("groups", "posint", 1),
    Param("bias", "bool", True),
    pos("dilation", default=1),
) + INIT_PARAMS

_TCONV_FIELDS = ("kernel_size", "stride", "padding", "output_padding", "dilation")


def _tconv_infer(rank: int | None, name: str):
    def infer(a, xs) -> Inferred:
        (x,) = xs
        n = spatial(x, name, rank)
        k, s, p, op, d = (as_tuple(a[f], n, f) for f in _TCONV_FIELDS)
        if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
            raise ArgProblem("`output_padding` must be smaller than stride or dilation (as in torch)", arg="output_padding")
        _check_groups(name, x, a)
        out = tuple((L - 1) * si - 2 * pi + di * (ki - 1) + oi + 1 for L, ki, si, pi, oi, di in zip(x[1:], k, s, p, op, d))
        # for a transposed conv, padding *shrinks* the output
        check_fits(name, x, out, k, "padding", hint="use less padding, a larger kernel or stride, or a larger input")
        return Inferred((a["out_channels"],) + out, dict(zip(_TCONV_FIELDS, (k, s, p, op, d))))

    return infer


def _tconv_count(a, xs, y) -> tuple[int, int]:
    w = xs[0][0] * (a["out_channels"] // a["groups"]) * math.prod(a["kernel_size"])
    return w + (a["out_channels"] if a["bias"] else 0), 0


def _tconv_lower(a, xs, y) -> Module:
    x = xs[0]
    return Module(f"nn.ConvTranspose{len(x) - 1}d", (x[0], a["out_channels"]),
                  (("kernel_size", tuple(a["kernel_size"])), ("stride", tuple(a["stride"])),
                   ("padding", tuple(a["padding"])), ("output_padding", tuple(a["output_padding"])),
                   ("groups", a["groups"]), ("bias", a["bias"]), ("dilation", tuple(a["dilation"]))),
                  **weight_init(a))


def _tconv_label(a, y) -> str:
    return f"{kernel_text(a['kernel_size'])} up-conv, {a['out_channels']}{stride_suffix(a, sign='×')}"


def _tconv(name: str, rank: int | None, doc: str) -> OpDef:
    return OpDef(name, Family.CONV, TCONV_PARAMS, _tconv_infer(rank, name), _tconv_count, _conv_costs(_tconv_macs),
                 Saves.INPUT, Spatial.TRANSPOSED, _tconv_lower, _tconv_label, doc, derived=_TCONV_FIELDS,
                 weighted=True, transposed=True, fresh_output=True)


register(_tconv("conv_transpose", None, "transposed convolution"))
for _r in (1, 2, 3):
    register(_tconv(f"conv_transpose{_r}d", _r + 1, f"{_r}d transposed convolution"))

__all__ = ["INIT_WEIGHTS", "INIT_PARAMS", "conv_len", "check_fits", "weight_init"]

"""Pooling and resampling: max/avg pooling, adaptive and global pooling, upsampling."""
from __future__ import annotations

import math
from fractions import Fraction

from . import rounding

from .base import (Module, ArgProblem, Expr, Family, Inferred, Param, Saves, ShapeProblem, Spatial, OpDef, as_tuple, const_label,
                   costs, fmt_shape, in_numel, kernel_text, no_params, nonneg, numel, out_numel, pos, register,
                   spatial, stride_suffix, times, uniform, zero)
from .conv import check_fits, conv_len

_TWICE_IN = times(2, in_numel)  # ptflops: pool_flops_counter_hook (input numel) + the F.*pool* patch (input numel)


def _pool_infer(kind: str, has_dilation: bool):
    def infer(a, xs) -> Inferred:
        (x,) = xs
        n = spatial(x, kind)
        k = as_tuple(a["kernel_size"], n, "kernel_size")
        s = as_tuple(k if a["stride"] is None else a["stride"], n, "stride")
        p = as_tuple(a["padding"], n, "padding")
        d = as_tuple(a["dilation"], n, "dilation") if has_dilation else (1,) * n
        for pi, ki in zip(p, k):
            if pi > ki // 2:  # torch: "pad should be at most half of kernel size" (the kernel, not the dilated one)
                raise ArgProblem(f"`padding` must be between 0 and half the kernel size, got {list(p)} (as in torch)",
                                 arg="padding", hint=f"padding at most {[ki // 2 for ki in k]} for kernel {list(k)}")
        out = tuple(conv_len(L, ki, si, pi, di, a["ceil_mode"]) for L, ki, si, pi, di in zip(x[1:], k, s, p, d))
        check_fits(kind, x, out, k)
        derived = {"kernel_size": k, "stride": s, "padding": p}
        if has_dilation:
            derived["dilation"] = d
        return Inferred((x[0],) + out, derived)

    return infer


def _pool_label(kind: str):
    def label(a, y) -> str:
        stride = a.get("stride") or a["kernel_size"]
        return f"{kernel_text(a['kernel_size'])} {kind} pool{stride_suffix({'stride': stride})}"
    return label


def _window(a, xs, y, p) -> int:
    return numel(y) * math.prod(a["kernel_size"])


register(OpDef(
    "maxpool", Family.POOL,
    (pos("kernel_size"), pos("stride", default=None), nonneg("padding", default=0), pos("dilation", default=1),
     Param("ceil_mode", "bool", False)),
    _pool_infer("maxpool", True), no_params, costs(ptflops=_TWICE_IN, resdsl=_window), Saves.INPUT, Spatial.WINDOW,
    lambda a, xs, y: Module(f"nn.MaxPool{len(xs[0]) - 1}d", (), (
        ("kernel_size", tuple(a["kernel_size"])), ("stride", tuple(a["stride"])), ("padding", tuple(a["padding"])),
        ("dilation", tuple(a["dilation"])), ("ceil_mode", a["ceil_mode"]))),
    _pool_label("max"), "max pooling", derived=("kernel_size", "stride", "padding", "dilation"),
    rounding=rounding.window))
register(OpDef(
    "avgpool", Family.POOL,
    (pos("kernel_size"), pos("stride", default=None), nonneg("padding", default=0), Param("ceil_mode", "bool", False),
     Param("count_include_pad", "bool", True)),
    _pool_infer("avgpool", False), no_params, costs(thop=out_numel, ptflops=_TWICE_IN, resdsl=_window),
    Saves.NOTHING, Spatial.WINDOW,
    lambda a, xs, y: Module(f"nn.AvgPool{len(xs[0]) - 1}d", (), (
        ("kernel_size", tuple(a["kernel_size"])), ("stride", tuple(a["stride"])), ("padding", tuple(a["padding"])),
        ("ceil_mode", a["ceil_mode"]), ("count_include_pad", a["count_include_pad"]))),
    _pool_label("avg"), "average pooling", derived=("kernel_size", "stride", "padding"), rounding=rounding.window))

# ----------------------------------------------------------------- adaptive / global


def _adaptive_infer(a, xs) -> Inferred:
    (x,) = xs
    n = spatial(x, "adaptive pooling")
    size = as_tuple(a["output_size"], n, "output_size")
    out = tuple(L if s is None else s for L, s in zip(x[1:], size))
    return Inferred((x[0],) + out, {"output_size": size})


def _thop_adaptive(global_: bool):
    def rule(a, xs, y, p) -> int:  # (in/out window + 1) x output numel
        out = (1,) * (len(xs[0]) - 1) if global_ else y[1:]
        window = Fraction(numel(xs[0][1:]), numel(out))
        return int((window + 1) * y[0] * numel(out))
    return rule


def _fvcore_avg(a, xs, y, p) -> int:  # aten::adaptive_avg_pool2d: elementwise_flop_counter(1, 0); 2d only
    return numel(xs[0]) if len(xs[0]) == 3 else 0


def _resolved(size, x) -> tuple:
    """`none` entries (keep that size) as the input's sizes: torch's 1d adaptive pooling takes no None."""
    size = tuple(size) if isinstance(size, (tuple, list)) else (size,) * (len(x) - 1)
    if len(size) != len(x) - 1:
        return size  # (the shape rule refuses this; kept as written so torch judges it the same)
    return tuple(L if s is None else s for L, s in zip(x[1:], size))


_OUTPUT_SIZE = Param("output_size", "size", lo=1, torch_exact=False,
                     why="torch would return an empty tensor; give sizes of at least 1 (none keeps the input's)")
for _kind, _saves, _fv, _th in (("avg", Saves.NOTHING, _fvcore_avg, _thop_adaptive(False)),
                                ("max", Saves.INPUT, zero, zero)):
    register(OpDef(
        f"adaptive_{_kind}pool", Family.POOL, (_OUTPUT_SIZE,), _adaptive_infer, no_params,
        costs(fvcore=_fv, thop=_th, ptflops=_TWICE_IN, resdsl=in_numel), _saves, Spatial.ADAPTIVE,
        (lambda k: lambda a, xs, y: Module(f"nn.Adaptive{k.capitalize()}Pool{len(xs[0]) - 1}d",
                                           (_resolved(a["output_size"], xs[0]),)))(_kind),
        (lambda k: lambda a, y: f"adaptive {k} pool → {kernel_text(y[1:]) or '1'}")(_kind),
        "adaptive pooling", derived=("output_size",), rounding=rounding.adaptive))


def _global_infer(a, xs):
    (x,) = xs
    spatial(x, "global pooling")
    return (x[0],)


for _kind, _method, _saves, _fv, _th in (("avg", "mean", Saves.NOTHING, _fvcore_avg, _thop_adaptive(True)),
                                         ("max", "amax", Saves.INPUT, zero, zero)):
    register(OpDef(
        f"global_{_kind}pool", Family.POOL, (), _global_infer, no_params,
        costs(fvcore=_fv, thop=_th, ptflops=_TWICE_IN, resdsl=in_numel), _saves, Spatial.GLOBAL,
        (lambda m: lambda a, xs, y: Expr(f"{{x}}.{m}({{dims}})", (("dims", tuple(range(2, len(xs[0]) + 1))),)))(_method),
        const_label(f"global {_kind} pool"), f"{'mean' if _kind == 'avg' else 'max'} over all spatial positions -> [C]"))

# ----------------------------------------------------------------- upsampling


def _upsample_infer(a, xs) -> Inferred:
    (x,) = xs
    n = spatial(x, "upsample")
    if (a["scale_factor"] is None) == (a["size"] is None):
        raise ArgProblem("upsample needs exactly one of `scale_factor` and `size`",
                         hint="e.g. upsample(scale_factor=2) or upsample(size=[56, 56])")
    if a["mode"] == "bilinear" and n != 2:
        raise ArgProblem(f"mode=\"bilinear\" needs a [C, H, W] input, got {list(x)}", arg="mode")
    if a["mode"] == "nearest" and a["align_corners"] is not None:
        raise ArgProblem("align_corners can only be given with mode=\"bilinear\" (as in torch)", arg="align_corners",
                         hint="drop align_corners, or use mode=\"bilinear\"")
    if a["size"] is not None:
        out = as_tuple(a["size"], n, "size")
        derived = {"size": out}
    else:
        sf = tuple(float(f) for f in as_tuple(a["scale_factor"], n, "scale_factor"))
        out = tuple(math.floor(L * f) for L, f in zip(x[1:], sf))  # floor of a float is an int; sizes may be symbolic
        derived = {"scale_factor": sf}
    if any(o < 1 for o in out):
        raise ShapeProblem("E036", f"upsample output would be {list(out)}", arg="size" if a["size"] is not None
                           else "scale_factor", hint="every output size must be at least 1")
    return Inferred((x[0],) + out, derived)


def _upsample_lower(a, xs, y) -> Expr:
    tpl, vals = "F.interpolate({x}", [("mode", str(a["mode"]))]
    if a["size"] is not None:  # (the shape rule gives exactly one of size and scale_factor, as torch wants)
        tpl += ", size={size}"
        vals.append(("size", tuple(a["size"])))
    if a["scale_factor"] is not None:
        tpl += ", scale_factor={sf}"
        vals.append(("sf", tuple(float(f) for f in a["scale_factor"])))
    tpl += ", mode={mode}"
    if a.get("align_corners") is not None:  # (the shape rule refuses it with mode="nearest", as torch does)
        tpl += ", align_corners={ac}"
        vals.append(("ac", bool(a["align_corners"])))
    return Expr(tpl + ")", tuple(vals))


def _upsample_label(a, y) -> str:
    if a.get("scale_factor") is not None:
        f = uniform(a["scale_factor"])
        how = f"×{int(f) if isinstance(f, float) and f.is_integer() else f}"
    else:
        how = f"→ {fmt_shape(y[1:])}"
    return f"upsample {how} ({a.get('mode', 'nearest')})"


def _per_mode(nearest: int, bilinear: int, only_2d: bool = False):
    return lambda a, xs, y, p: (0 if only_2d and len(xs[0]) != 3 else
                                numel(y) * (nearest if a["mode"] == "nearest" else bilinear))


register(OpDef(
    "upsample", Family.RESHAPE,
    (Param("scale_factor", "float_or_list", None, lo=0, lo_open=True), Param("size", "ints", None, lo=1),
     Param("mode", "choice", "nearest", ("nearest", "bilinear")),
     Param("align_corners", "bool", None, positional=False)),
    _upsample_infer, no_params,
    costs(fvcore=_per_mode(1, 4, only_2d=True), thop=_per_mode(1, 11),
          ptflops=times(2, out_numel),  # upsample hook (output numel) + F.interpolate patch (output numel)
          resdsl=_per_mode(1, 4)),
    Saves.NOTHING, Spatial.RESAMPLE, _upsample_lower, _upsample_label, "nearest or bilinear upsampling",
    derived=("size", "scale_factor"), rounding=rounding.resample))

"""Shape ops: network inputs, identity, flatten/unflatten/reshape, permute/transpose, channel slices, crops
and the option-A zero-pad shortcut."""
from __future__ import annotations

import math

from . import rounding
from .base import (center_slice, ArgProblem, Expr, Family, Inferred, Module, Param, Saves, ShapeProblem, Spatial, OpDef, as_tuple,
                   const_label, costs, fmt_shape, no_params, nonneg, pos, register, same, spatial, stride_suffix, tdim)

register(OpDef("input", Family.INPUT, (), lambda a, xs: a["shape"], no_params, costs(), Saves.NOTHING, Spatial.POINT,
               None, const_label("input"), "a network input", arity=(0, 0), user=False))
register(OpDef("identity", Family.RESHAPE, (), same, no_params, costs(), Saves.NOTHING, Spatial.POINT,
               lambda a, xs, y: Expr("{x}"), const_label("identity"), "no-op", pass_through=True))


def _dim(a, x, name: str = "dim", extra: int = 0) -> int:
    """A feature dim index (0 = channels; negative counts from the end) as a non-negative index."""
    r = len(x) + extra
    d = a[name]
    if not -r <= d < r:
        raise ArgProblem(f"`{name}` must be a feature dim in [{-r}, {r - 1}] for input {list(x)}, got {d}", arg=name,
                         hint="dims count the features only (0 = channels), not the batch")
    return d % r


def _flatten_infer(a, xs):
    (x,) = xs
    s = _dim(a, x, "start_dim")
    return x[:s] + (math.prod(x[s:]),)


register(OpDef(
    "flatten", Family.RESHAPE, (Param("start_dim", "int", 0),), _flatten_infer, no_params, costs(), Saves.NOTHING,
    Spatial.GLOBAL,
    lambda a, xs, y: Expr("torch.flatten({x}, {s})", (("s", tdim(a["start_dim"] % len(xs[0]))),)),
    const_label("flatten"), "flatten the feature dims from `start_dim` on (default: all, giving [features])"))


def _unflatten_infer(a, xs):
    (x,) = xs
    d = _dim(a, x)
    sizes = a["sizes"] if isinstance(a["sizes"], tuple) else (a["sizes"],)
    if math.prod(sizes) != x[d]:
        raise ShapeProblem("E036", f"unflatten: sizes {list(sizes)} have {math.prod(sizes)} elements, but dim {a['dim']} "
                           f"of {list(x)} has {x[d]}", arg="sizes", hint=f"give sizes whose product is {x[d]}")
    return Inferred(x[:d] + sizes + x[d + 1:], {"sizes": sizes})


register(OpDef(
    "unflatten", Family.RESHAPE, (Param("dim", "int"), pos("sizes")), _unflatten_infer, no_params, costs(),
    Saves.NOTHING, Spatial.POINT,
    lambda a, xs, y: Expr("{x}.unflatten({d}, {sizes})", (("d", tdim(a["dim"] % len(xs[0]))),
                                                         ("sizes", tuple(a["sizes"])))),
    lambda a, y: f"unflatten → {fmt_shape(y)}", "split feature dim `dim` into `sizes` (as torch.unflatten)",
    derived=("sizes",)))


def _reshape_infer(a, xs) -> Inferred:
    (x,) = xs
    want = a["shape"] if isinstance(a["shape"], tuple) else (a["shape"],)
    total = math.prod(x)
    free = [i for i, d in enumerate(want) if d == -1]
    if len(free) > 1 or any(d < 1 and d != -1 for d in want):
        raise ArgProblem(f"reshape: `shape` must be positive sizes with at most one -1, got {list(want)}", arg="shape")
    known = math.prod(d for d in want if d != -1)
    if free:
        if total % known:
            raise ShapeProblem("E036", f"reshape: {list(x)} ({total} elements) cannot be viewed as {list(want)}",
                               arg="shape", hint=f"the known sizes must divide {total}")
        want = tuple(total // known if d == -1 else d for d in want)
    if math.prod(want) != total:
        raise ShapeProblem("E036", f"reshape: {list(x)} has {total} elements, {list(want)} has {math.prod(want)}",
                           arg="shape", hint=f"give sizes whose product is {total} (or one -1)")
    return Inferred(want, {"shape": want})


register(OpDef(
    "reshape", Family.RESHAPE, (Param("shape", "ints", lo=-1),), _reshape_infer, no_params, costs(), Saves.NOTHING,
    Spatial.GLOBAL, lambda a, xs, y: Expr("{x}.reshape({x}.shape[0], *{s})", (("s", tuple(y)),)),
    lambda a, y: f"reshape → {fmt_shape(y)}", "view the features as another shape (one size may be -1)",
    derived=("shape",)))


def _permute_infer(a, xs) -> Inferred:
    (x,) = xs
    dims = a["dims"] if isinstance(a["dims"], tuple) else (a["dims"],)
    r = len(x)
    norm = tuple(d % r if -r <= d < r else None for d in dims)
    if len(dims) != r or None in norm or sorted(norm) != list(range(r)):
        raise ArgProblem(f"permute: `dims` must order all {r} feature dims of {list(x)}, got {list(dims)}", arg="dims",
                         hint=f"e.g. permute({list(range(1, r)) + [0]}) puts the channels last")
    return Inferred(tuple(x[d] for d in norm), {"dims": norm})


register(OpDef(
    "permute", Family.RESHAPE, (Param("dims", "ints"),), _permute_infer, no_params, costs(), Saves.NOTHING,
    Spatial.POINT, lambda a, xs, y: Expr("{x}.permute({d})", (("d", (0,) + tuple(d + 1 for d in a["dims"])),)),
    lambda a, y: f"permute {list(a['dims'])}", "reorder the feature dims (0 = channels), as torch.permute",
    derived=("dims",)))


def _transpose_infer(a, xs):
    (x,) = xs
    i, j = _dim(a, x, "dim0"), _dim(a, x, "dim1")
    out = list(x)
    out[i], out[j] = out[j], out[i]
    return tuple(out)


register(OpDef(
    "transpose", Family.RESHAPE, (Param("dim0", "int"), Param("dim1", "int")), _transpose_infer, no_params, costs(),
    Saves.NOTHING, Spatial.POINT,
    lambda a, xs, y: Expr("{x}.transpose({i}, {j})", (("i", tdim(a["dim0"] % len(xs[0]))),
                                                       ("j", tdim(a["dim1"] % len(xs[0]))))),
    lambda a, y: f"transpose {a['dim0']}, {a['dim1']}", "swap two feature dims, as torch.transpose"))


def _slice_infer(a, xs):
    (x,) = xs
    d = _dim(a, x)
    n = x[d]
    if not 0 <= a["start"] < a["stop"] <= n:
        raise ArgProblem(f"slice: need 0 <= start < stop <= {n} along dim {a['dim']} of {list(x)}, got "
                         f"start={a['start']}, stop={a['stop']}", arg="stop" if a["stop"] > n else "start",
                         hint=f"channels are numbered 0 .. {n - 1}; stop is exclusive")
    return x[:d] + (a["stop"] - a["start"],) + x[d + 1:]


register(OpDef(
    "slice", Family.RESHAPE, (nonneg("start", "int"), nonneg("stop", "int"), Param("dim", "int", 0, positional=False)),
    _slice_infer, no_params, costs(), Saves.NOTHING, Spatial.POINT,
    lambda a, xs, y: Expr("{x}.narrow({d}, {s}, {n})", (("d", tdim(a["dim"] % len(xs[0]))), ("s", a["start"]),
                                                         ("n", a["stop"] - a["start"]))),
    lambda a, y: f"[{a['start']}:{a['stop']}]",
    "channels start .. stop - 1 (dim=d: along another feature dim), a view without copies",
    piece=lambda a, xs: (a["dim"] % len(xs[0]), a["start"], a["stop"])))


def _crop_infer(a, xs) -> Inferred:
    (x,) = xs
    n = spatial(x, "crop")
    size = as_tuple(a["size"], n, "size")
    if any(s < 1 or s > L for s, L in zip(size, x[1:])):
        raise ArgProblem(f"crop size {list(size)} must be between 1 and the input's {list(x[1:])}", arg="size")
    return Inferred((x[0],) + size, {"size": size})


register(OpDef(
    "crop", Family.RESHAPE, (Param("size", "ints"),), _crop_infer, no_params, costs(), Saves.NOTHING, Spatial.CROP,
    lambda a, xs, y: Expr("{x}" + center_slice(xs[0], a["size"])),
    lambda a, y: f"crop → {fmt_shape(y[1:])}", "center crop to a spatial size", derived=("size",),
    rounding=rounding.centered))


def _zeropad_infer(a, xs) -> Inferred:
    (x,) = xs
    n = spatial(x, "zeropad", min_rank=1)
    s = as_tuple(a["stride"], n, "stride")
    if a["out_channels"] < x[0]:
        raise ArgProblem(f"zero-pad shortcut cannot reduce channels {x[0]} to {a['out_channels']}", arg="out_channels")
    return Inferred((a["out_channels"],) + tuple(-(-L // si) for L, si in zip(x[1:], s)), {"stride": s})


register(OpDef(
    "zeropad", Family.SHORTCUT, (pos("out_channels", "posint"), pos("stride", default=1)), _zeropad_infer, no_params,
    costs(), Saves.NOTHING, Spatial.SUBSAMPLE,
    lambda a, xs, y: Module("ZeroPad", (xs[0][0], a["out_channels"], tuple(a["stride"]))),
    lambda a, y: f"zero-pad, {a['out_channels']}{stride_suffix(a)}",
    "option-A shortcut: subsample by stride, append zero channels", derived=("stride",),
    rounding=rounding.subsample))

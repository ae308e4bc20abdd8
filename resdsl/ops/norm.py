"""Normalizations: batch, ghost batch, layer (over trailing dims or over channels), group and instance norm."""
from __future__ import annotations

import math

from .base import (Family, Inferred, Module, Param, Saves, ShapeProblem, Spatial, OpDef, ArgProblem, channels,
                   const_label, costs, in_numel, numel, out_numel, own_params, pos, register)

INIT_NORM = ("ones", "zeros")
_INIT = Param("init", "choice", "ones", INIT_NORM, positional=False)
# eps: batch norm in training needs eps > 0 (torch raises otherwise); for the others torch accepts a negative
# eps but then takes the square root of a negative variance (nan), so resdsl asks for eps >= 0.
_EPS_BN = Param("eps", "float", 1e-5, lo=0, lo_open=True, why="batch norm divides by sqrt(var + eps)")
_EPS = Param("eps", "float", 1e-5, lo=0, torch_exact=False,
             why="torch accepts a negative eps, but sqrt(var + eps) is then nan")


def norm_init(a) -> dict:
    # init_norm sets gamma and beta and resets the running statistics: the whole module (complete)
    return dict(init="init_norm({m}, {how})", init_args=(("how", str(a["init"])),), complete=True)


def _affine(a) -> bool:
    return bool(a["elementwise_affine"] if "elementwise_affine" in a else a["affine"])


def _norm_costs(fvcore_affine: int, fvcore_plain: int, thop: bool, ptflops: str):
    """fvcore: elements x (affine ? a : b); thop count_normalization: 2 x elements x (affine ? 2 : 1) where
    thop has a hook; ptflops bn_flops_counter_hook: elements x (affine ? 2 : 1) ("affine"), elements ("plain")
    or nothing ("none": no hook for the exact module type)."""
    pt = {"affine": lambda a, xs, y, p: numel(xs[0]) * (2 if _affine(a) else 1), "plain": in_numel,
          "none": lambda a, xs, y, p: 0}[ptflops]
    return costs(fvcore=lambda a, xs, y, p: numel(xs[0]) * (fvcore_affine if _affine(a) else fvcore_plain),
                 torchinfo=own_params,
                 thop=(lambda a, xs, y, p: 2 * numel(xs[0]) * (2 if _affine(a) else 1)) if thop else (lambda a, xs, y, p: 0),
                 ptflops=pt, resdsl=out_numel)


# ----------------------------------------------------------------- batch norm


def _bn_infer(a, xs):
    (x,) = xs
    if len(x) > 4:
        raise ShapeProblem("E033", f"batchnorm supports [C], [C, L], [C, H, W] and [C, D, H, W], got {list(x)}")
    channels(x, "batchnorm")
    if "virtual_batch_size" in a and a["virtual_batch_size"] * numel(x[1:]) < 2:
        # torch: "Expected more than 1 value per channel when training" for every virtual batch
        raise ArgProblem(f"ghost_batchnorm: a virtual batch of {a['virtual_batch_size']} sample(s) of {list(x)} has "
                         "one value per channel, so training statistics are undefined (as in torch)",
                         arg="virtual_batch_size", hint="use virtual_batch_size >= 2")
    return x


def _bn_count(a, xs, y):
    c = xs[0][0]
    return (2 * c if a["affine"] else 0), (2 * c + 1 if a["track_running_stats"] else 0)


def _bn_kwargs(a) -> tuple:
    m = a["momentum"]
    return (("eps", float(a["eps"])), ("momentum", m if m is None else float(m)), ("affine", a["affine"]),
            ("track_running_stats", a["track_running_stats"]))


_BN = (_EPS_BN, Param("momentum", "float", 0.1), Param("affine", "bool", True),
       Param("track_running_stats", "bool", True), _INIT)

register(OpDef(
    "batchnorm", Family.NORM, _BN, _bn_infer, _bn_count, _norm_costs(2, 1, True, "affine"), Saves.INPUT, Spatial.POINT,
    lambda a, xs, y: Module(f"nn.BatchNorm{1 if len(xs[0]) <= 2 else len(xs[0]) - 1}d", (xs[0][0],), _bn_kwargs(a),
                            **norm_init(a)),
    const_label("BN"), "batch normalization", fresh_output=True))
# ghost batch norm: a custom _BatchNorm subclass; thop and ptflops look hooks up by exact type, so they count 0
register(OpDef(
    "ghost_batchnorm", Family.NORM, (pos("virtual_batch_size", "posint"),) + _BN, _bn_infer, _bn_count,
    _norm_costs(2, 1, False, "none"), Saves.INPUT, Spatial.POINT,
    lambda a, xs, y: Module("GhostBatchNorm", (xs[0][0], a["virtual_batch_size"]), _bn_kwargs(a), **norm_init(a)),
    const_label("ghost BN"), "ghost batch normalization: statistics over virtual batches of the given size"))

# ----------------------------------------------------------------- layer norm


def _ln_infer(a, xs) -> Inferred:
    (x,) = xs
    dims = len(x) if a["dims"] is None else a["dims"]
    if not 1 <= dims <= len(x):
        raise ArgProblem(f"`dims` must be between 1 and {len(x)} for input {list(x)}", arg="dims")
    return Inferred(x, {"normalized_shape": tuple(x[len(x) - dims:])})


def _ln_count(a, xs, y):
    shape = a["normalized_shape"] if "normalized_shape" in a else xs[0][:1]
    return ((1 + a["bias"]) * math.prod(shape) if a["elementwise_affine"] else 0), 0


_LN_TAIL = (_EPS, Param("elementwise_affine", "bool", True), Param("bias", "bool", True), _INIT)

register(OpDef(
    "layernorm", Family.NORM, (pos("dims", "posint", None),) + _LN_TAIL, _ln_infer, _ln_count,
    _norm_costs(5, 4, True, "plain"),  # ptflops: nn.LayerNorm has no `affine` attribute, never doubled
    Saves.INPUT, Spatial.POINT,
    lambda a, xs, y: Module("nn.LayerNorm", (tuple(a["normalized_shape"]),),
                            (("eps", float(a["eps"])), ("elementwise_affine", a["elementwise_affine"]),
                             ("bias", a["bias"])), **norm_init(a)),
    const_label("LN"), "layer normalization over the last `dims` feature dims (default: all)",
    derived=("normalized_shape",), fresh_output=True))


def _ln2d_infer(a, xs):
    (x,) = xs
    if len(x) < 2:
        raise ShapeProblem("E033", f"layernorm2d normalizes the channels of a [C, H, W] map, got {list(x)}",
                           hint="for a flat [features] input use layernorm()")
    return x


# torchvision's convnext LayerNorm2d: nn.LayerNorm(C) applied over channels at every position (aten::layer_norm
# for fvcore; thop and ptflops have no hook for the subclass)
register(OpDef(
    "layernorm2d", Family.NORM, _LN_TAIL, _ln2d_infer, _ln_count, _norm_costs(5, 4, False, "none"),
    Saves.INPUT, Spatial.POINT,
    lambda a, xs, y: Module("LayerNorm2d", (xs[0][0],), (("eps", float(a["eps"])),
                                                        ("elementwise_affine", a["elementwise_affine"]),
                                                        ("bias", a["bias"])), **norm_init(a)),
    const_label("LN2d"), "layer normalization over the channels at every position (ConvNeXt's LayerNorm2d)"))

# ----------------------------------------------------------------- group / instance norm


def _gn_infer(a, xs):
    (x,) = xs
    c = channels(x, "groupnorm")
    if c % a["num_groups"]:
        raise ShapeProblem("E035", f"groupnorm: {c} channels are not divisible by num_groups={a['num_groups']}",
                           arg="num_groups", hint=f"choose num_groups dividing {c}")
    return x


register(OpDef(
    "groupnorm", Family.NORM, (pos("num_groups", "posint"), _EPS, Param("affine", "bool", True), _INIT),
    _gn_infer, lambda a, xs, y: (2 * xs[0][0] if a["affine"] else 0, 0),
    _norm_costs(5, 4, False, "affine"),  # thop: GroupNorm has no hook
    Saves.INPUT, Spatial.POINT,
    lambda a, xs, y: Module("nn.GroupNorm", (a["num_groups"], xs[0][0]),
                            (("eps", float(a["eps"])), ("affine", a["affine"])), **norm_init(a)),
    lambda a, y: f"GN, {a['num_groups']} groups", "group normalization", fresh_output=True))


def _in_infer(a, xs):
    (x,) = xs
    if not 2 <= len(x) <= 4:
        raise ShapeProblem("E033", f"instancenorm needs [C, L], [C, H, W] or [C, D, H, W], got {list(x)}")
    if numel(x[1:]) < 2:
        raise ShapeProblem("E033", f"instancenorm needs more than one spatial position, got {list(x)} (as in torch)",
                           hint="instance statistics of a single position are undefined; normalize before the "
                                "spatial size shrinks to 1, or use batchnorm/groupnorm")
    return x


register(OpDef(
    "instancenorm", Family.NORM,
    (_EPS, Param("momentum", "float", 0.1), Param("affine", "bool", False), Param("track_running_stats", "bool", False),
     _INIT),
    _in_infer,
    lambda a, xs, y: (2 * xs[0][0] if a["affine"] else 0, 2 * xs[0][0] + 1 if a["track_running_stats"] else 0),
    _norm_costs(5, 4, True, "affine"), Saves.INPUT, Spatial.POINT,
    lambda a, xs, y: Module(f"nn.InstanceNorm{len(xs[0]) - 1}d", (xs[0][0],), _bn_kwargs(a), **norm_init(a)),
    const_label("IN"), "instance normalization"))


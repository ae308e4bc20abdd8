"""Fully connected layers (torch.nn.Linear)."""
from __future__ import annotations

from .base import Family, Module, Param, Saves, ShapeProblem, Spatial, OpDef, costs, numel, pos, register
from .conv import INIT_PARAMS, weight_init


def _infer(a, xs):
    (x,) = xs
    if len(x) == 0:
        raise ShapeProblem("E033", "linear needs at least one feature dimension")
    if len(x) > 1 and not a["pointwise"]:
        raise ShapeProblem("E033", f"linear expects a flat [features] input, got {list(x)}",
                           hint="add `flatten` or `global_avgpool` before the linear layer, or give pointwise=true "
                                "to apply it to the last dim at every position (as nn.Linear does)")
    return x[:-1] + (a["out_features"],)


def _count(a, xs, y):
    # tie="LAYER": the weight is that layer's (counted there, once, as torch's parameters() does)
    own = 0 if a.get("tie") else xs[0][-1] * a["out_features"]
    return own + (a["out_features"] if a["bias"] else 0), 0


def _core(a, xs, y, p) -> int:
    return numel(y) * xs[0][-1]


register(OpDef(
    "linear", Family.LINEAR,
    (pos("out_features", "posint"), Param("bias", "bool", True)) + INIT_PARAMS
    + (Param("pointwise", "bool", False, positional=False), Param("tie", "str", None, positional=False)),
    _infer, _count,
    costs(_core, fvcore=_core,
          # torchinfo: output_size[0] (the batch) x the module's parameters (a tied weight included)
          torchinfo=lambda a, xs, y, p: xs[0][-1] * a["out_features"] + (a["out_features"] if a["bias"] else 0),
          thop=_core,  # count_linear: in_features x output numel
          # linear_flops_counter_hook: (in x out + out if bias) per position
          ptflops=lambda a, xs, y, p: _core(a, xs, y, p) + (numel(y) if a["bias"] else 0),
          resdsl=lambda a, xs, y, p: _core(a, xs, y, p) + (numel(y) if a["bias"] else 0)),
    Saves.INPUT, Spatial.POINT,
    lambda a, xs, y: Module("nn.Linear", (xs[0][-1], a["out_features"]), (("bias", a["bias"]),),
                              **weight_init(a, keeps_default=True)),
    lambda a, y: f"fc, {a['out_features']}" + (f" (tied to {a['tie']})" if a.get("tie") else ""),
    "fully connected layer on a [features] input (pointwise=true: on the last dim of any shape, e.g. per token "
    "of [N, D]; tie=\"LAYER\": share that layer's weight, e.g. GPT-2's lm_head and token embedding)",
    # on [features] torch's addmm makes a new tensor; on [N, ..., D] F.linear returns a view of it, and a write
    # into that view would cost autograd a copy of the whole output in backward (CopySlices)
    weighted=True, fresh_output=lambda xs: len(xs[0]) == 1, weight=lambda a, xs: (a["out_features"], xs[0][-1])))

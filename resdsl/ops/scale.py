"""Scalings: a constant factor, one learnable scalar (SkipInit) or bias (Fixup), and a per-channel layer scale."""
from __future__ import annotations

from .base import (Parameter, Expr, Family, Module, Param, Saves, ShapeProblem, Spatial, OpDef, const_label, costs, fmt_num,
                   no_params, out_numel, own_params, register, same)

register(OpDef(
    "scale", Family.SCALE, (Param("value", "float"),), same, no_params, costs(resdsl=out_numel), Saves.NOTHING,
    Spatial.POINT, lambda a, xs, y: Expr("{x} * {c}", (("c", float(a["value"])),)),
    lambda a, y: f"× {fmt_num(a['value'])}", "multiply by a constant (e.g. 1/sqrt(2))", fresh_output=True))

_RESET = "{m}.reset_parameters()"
# torchinfo counts these: leaf modules with a `weight` / `bias` parameter
register(OpDef(
    "scalar_scale", Family.SCALE, (Param("init", "float", 1.0),), same, lambda a, xs, y: (1, 0),
    costs(torchinfo=own_params, resdsl=out_numel), Saves.INPUT, Spatial.POINT,
    lambda a, xs, y: Module("ScalarScale", (float(a["init"]),), init=_RESET),
    const_label("× α (learned)"), "multiply by one learnable scalar (SkipInit: init=0)"))
register(OpDef(
    "scalar_bias", Family.SCALE, (Param("init", "float", 0.0),), same, lambda a, xs, y: (1, 0),
    costs(torchinfo=own_params, resdsl=out_numel), Saves.NOTHING, Spatial.POINT,
    lambda a, xs, y: Module("ScalarBias", (float(a["init"]),), init=_RESET),
    const_label("+ b (learned)"), "add one learnable scalar (Fixup's biases)"))


def _ls_infer(a, xs):
    (x,) = xs
    if not x:
        raise ShapeProblem("E033", "layer_scale needs a channel dimension")
    return x


def _ls_lower(a, xs) -> Parameter:
    """x * gamma: [C, 1, .., 1] (torchvision's `layer_scale`) or [C] (timm's `gamma`, broadcast over the map)."""
    c, dims = xs[0][0], len(xs[0]) - 1
    if a["keepdims"]:
        return Parameter((c,) + (1,) * dims, "{x} * {p}", "nn.init.constant_({p}, {v})", (("v", float(a["init"])),))
    spread = "[:" + ", None" * dims + "]" if dims else ""  # fixed text: one `None` per spatial dim
    return Parameter((c,), "{x} * {p}" + spread, "nn.init.constant_({p}, {v})", (("v", float(a["init"])),))


# torchvision's ConvNeXt keeps it as a bare nn.Parameter `layer_scale` [C, 1, 1] on the block (multiplied with `*`,
# which no counter sees); timm's as `gamma` [C].  The module saves its parameter under its own name, no `.weight`.
register(OpDef(
    "layer_scale", Family.SCALE, (Param("init", "float", 1e-6), Param("keepdims", "bool", True, positional=False)),
    _ls_infer, lambda a, xs, y: (xs[0][0], 0), costs(resdsl=out_numel), Saves.INPUT, Spatial.POINT,
    lambda a, xs, y: _ls_lower(a, xs),
    lambda a, y: f"× γ (learned, {fmt_num(a['init'])})",
    "multiply by a learnable per-channel scale γ (init 1e-6, ConvNeXt); its state_dict key is the label itself, "
    "shape [C, 1, 1] (keepdims=false: [C])", fresh_output=True))  # x * gamma: its backward reads x and gamma

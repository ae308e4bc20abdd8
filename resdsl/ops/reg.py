"""Regularizers: dropout and stochastic depth (drop path)."""
from __future__ import annotations

from .base import Family, Module, Param, Saves, Spatial, OpDef, costs, fmt_num, no_params, register, same

register(OpDef(
    "dropout", Family.REG, (Param("p", "float", 0.5, lo=0, hi=1),), same, no_params, costs(), Saves.NOTHING,
    Spatial.POINT, lambda a, xs, y: Module("nn.Dropout", (float(a["p"]),)),
    lambda a, y: f"dropout {fmt_num(a.get('p', 0.5))}", "dropout", pass_through=True))
# torchvision.ops.StochasticDepth(p, mode): the same draws (one Bernoulli(1 - p) per sample for "row", one per
# batch for "batch", kept values scaled by 1 / (1 - p)) from the same generator, so outputs agree bit for bit
register(OpDef(
    "drop_path", Family.REG,
    (Param("p", "float", lo=0, hi=1), Param("mode", "choice", "row", ("row", "batch"), positional=False)),
    same, no_params, costs(), Saves.NOTHING, Spatial.POINT,
    lambda a, xs, y: Module("DropPath", (float(a["p"]),) + ((str(a["mode"]),) if a["mode"] != "row" else ())),
    lambda a, y: f"drop path {fmt_num(a.get('p', 0.0))}",
    "stochastic depth: drop the whole branch per sample (mode=\"batch\": for the whole batch) with probability p",
    pass_through=True),
    "stochastic_depth")

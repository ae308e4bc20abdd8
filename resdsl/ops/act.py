"""Activations and elementwise functions (torch.nn activations; their functional forms in the generated code)."""
from __future__ import annotations

from .base import (ArgProblem, Expr, Family, Param, Saves, Spatial, OpDef, const_label, costs, fmt_num, no_params,
                   numel, out_numel, register, same, tdim, times)


def _act(name: str, template: str, label: str, saves: Saves, ptflops: int, doc: str, params: tuple = (),
         values=lambda a, xs: (), lbl=None, infer=same, thop=None) -> OpDef:
    """ptflops: 0, 1 or 2 x output elements (a module hook and/or a patched functional, see cost.py)."""
    return OpDef(name, Family.ACT, params, infer, no_params,
                 costs(ptflops=times(ptflops, out_numel), resdsl=out_numel,
                       **({"thop": thop} if thop else {})),
                 saves, Spatial.POINT,
                 lambda a, xs, y: Expr(template(a) if callable(template) else template, values(a, xs)),
                 lbl or const_label(label), doc)


def _softmax_infer(a, xs):
    r = len(xs[0])
    if not -r <= a["dim"] < r:
        raise ArgProblem(f"softmax: `dim` must be a feature dim in [{-r}, {r - 1}] for input {list(xs[0])}, "
                         f"got {a['dim']}", arg="dim", hint="dims count the features only (0 = channels), not the batch")
    return xs[0]


def _softmax_thop(a, xs, y, p) -> int:
    f = xs[0][a["dim"]]
    return numel(xs[0]) // f * (3 * f - 1)


for _op in (
    # the C function torch.relu: F.relu adds a Python wrapper per call
    _act("relu", "torch.relu({x})", "ReLU", Saves.OUTPUT, 2, "relu activation"),
    _act("gelu", lambda a: "F.gelu({x})" if a["approximate"] == "none" else "F.gelu({x}, approximate={ap})", "GELU", Saves.INPUT, 2, "gelu activation (approximate=\"tanh\": the tanh form)",
         (Param("approximate", "choice", "none", ("none", "tanh"), positional=False),),
         lambda a, xs: (("ap", str(a["approximate"])),),
         lbl=lambda a, y: "GELU" if a.get("approximate", "none") == "none" else "GELU (tanh)"),
    _act("silu", "F.silu({x})", "SiLU", Saves.INPUT, 1, "silu (swish) activation"),
    _act("sigmoid", "torch.sigmoid({x})", "sigmoid", Saves.OUTPUT, 0, "sigmoid activation"),
    _act("tanh", "torch.tanh({x})", "tanh", Saves.OUTPUT, 0, "tanh activation"),
    _act("leaky_relu", "F.leaky_relu({x}, {s})", "", Saves.INPUT, 1, "leaky_relu activation",
         (Param("negative_slope", "float", 0.01),), lambda a, xs: (("s", float(a["negative_slope"])),),
         lambda a, y: f"leaky ReLU {fmt_num(a.get('negative_slope', 0.01))}"),
    _act("elu", "F.elu({x}, {al})", "ELU", Saves.INPUT, 2, "elu activation", (Param("alpha", "float", 1.0),),
         lambda a, xs: (("al", float(a["alpha"])),)),
    _act("softmax", "torch.softmax({x}, {dim})", "softmax", Saves.OUTPUT, 1,
         "softmax over feature dim `dim` (0 = channels)", (Param("dim", "int", 0),),
         lambda a, xs: (("dim", tdim(int(a["dim"]))),), infer=_softmax_infer, thop=_softmax_thop),
    # nn.ReLU6 has a ptflops module hook (its forward calls F.hardtanh, which is not patched)
    _act("relu6", "F.relu6({x})", "ReLU6", Saves.INPUT, 1, "min(max(x, 0), 6) (MobileNetV2)"),
    _act("hardswish", "F.hardswish({x})", "h-swish", Saves.INPUT, 0, "x * relu6(x + 3) / 6 (MobileNetV3)"),
    _act("hardsigmoid", "F.hardsigmoid({x})", "h-sigmoid", Saves.INPUT, 0, "relu6(x + 3) / 6 (MobileNetV3 gates)"),
    _act("mish", "F.mish({x})", "Mish", Saves.INPUT, 0, "x * tanh(softplus(x))"),
    _act("exp", "torch.exp({x})", "exp", Saves.OUTPUT, 0, "elementwise exponential"),
):
    register(_op)
